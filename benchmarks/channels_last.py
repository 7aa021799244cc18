"""Training images/s of the bundled EfficientNet-Lite0 at 96 px, NCHW against channels-last.

Usage: uv run python benchmarks/channels_last.py
Head-only (frozen body) and full fine-tuning, batch 32, SGD, 3 timed steps after a warm-up step.
"""

from __future__ import annotations

import time

import torch

from headstart.surgery import replace_head, set_trainable_stages
from headstart.zoo import create_backbone


def images_per_s(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01)
    for step in range(4):
        if step == 1:
            start = time.perf_counter()
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return 3 * len(x) / (time.perf_counter() - start)


def main() -> None:
    torch.manual_seed(0)
    model, spec = create_backbone("bundled:efficientnet_lite0")
    model = replace_head(model, spec, 10).train()
    x, y = torch.randn(32, 3, 96, 96), torch.randint(0, 10, (32,))
    for stages, name in ((0, "head only"), (None, "full")):
        set_trainable_stages(model, spec, stages)
        nchw = images_per_s(model.to(memory_format=torch.contiguous_format), x, y)
        last = images_per_s(
            model.to(memory_format=torch.channels_last),
            x.contiguous(memory_format=torch.channels_last),
            y,
        )
        print(f"{name}: NCHW {nchw:.0f} img/s, channels-last {last:.0f} img/s ({last / nchw:.2f}x)")


if __name__ == "__main__":
    main()
