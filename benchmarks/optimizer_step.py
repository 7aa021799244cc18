"""Adam(W) step time, foreach against fused, for EfficientNet-Lite0's parameter groups.

uv run python benchmarks/optimizer_step.py
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import textbook  # noqa: E402

from headstart.config import BnStats  # noqa: E402
from headstart.surgery import param_groups, set_trainable_stages  # noqa: E402


def main() -> None:
    torch.set_num_threads(2)
    model, spec = textbook.build_model(10)
    set_trainable_stages(model, spec, None, bn=BnStats.PRETRAINED)
    model.to(memory_format=torch.channels_last)
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    for fused in (False, True, False, True):
        groups = param_groups(model, spec, lr=1e-3, backbone_lr_factor=0.1, layer_decay=0.7,
                              weight_decay=0.01)  # fmt: skip
        optimizer = torch.optim.AdamW(groups, fused=fused or None)
        for _ in range(3):
            optimizer.step()
        times = []
        for _ in range(20):
            start = time.perf_counter()
            optimizer.step()
            times.append(time.perf_counter() - start)
        kind = "fused" if fused else "foreach"
        print(f"{kind}: {statistics.median(times) * 1000:.1f} ms per step ({len(groups)} groups)")


if __name__ == "__main__":
    main()
