"""headstart vs the textbook loop: feature-extract time, training and prediction speed, memory, CLI.

    uv run python benchmarks/make_fmnist_folders.py /tmp/hs_bench/fmnist --train 1000 --val 300
    uv run python benchmarks/run.py /tmp/hs_bench/fmnist

Each line prints headstart's figure, the textbook's, and their ratio. Use ``--textbook-epochs``
to time fewer textbook feature-extract epochs and extrapolate (every epoch does the same work).
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import textbook  # noqa: E402

from headstart.data.folders import load_splits  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FE_SECONDS: dict[int, tuple[float, float]] = {}
"""Size -> (headstart cold feature-extract seconds, textbook seconds per epoch)."""


def _line(name: str, ours: float, theirs: float, unit: str, target: str) -> None:
    print(f"| {name} | {ours:.3g} {unit} | {theirs:.3g} {unit} | {ours / theirs:.3g}x | {target} |",
          flush=True)  # fmt: skip


def headstart_fe(data: Path, size: int, epochs: int, cache: Path, settings, lr=1e-3) -> dict:
    """feature-extract as the pipeline runs it: splits, cached features, the head on the engine."""
    from lightning_fabric import Fabric

    from headstart.run_folder import RunFolder
    from headstart.training.batches import FeatureBatches
    from headstart.training.engine import EngineSettings, train_phases
    from headstart.training.features import extract_features
    from headstart.training.strategies import Phase

    start = time.perf_counter()
    splits = load_splits(data)
    model, spec = textbook.build_model(len(splits.classes))
    pre = spec.preprocessing.with_size(size)
    common = {"batch_size": 64, "settings": settings, "root": cache}
    sets = [extract_features(model, spec, s, pre, **common) for s in (splits.train, splits.val)]
    fabric = Fabric(accelerator="cpu", devices=1)
    batches = FeatureBatches.create(fabric, model, spec, *sets, batch_size=32, seed=0)
    with tempfile.TemporaryDirectory() as run_dir:
        result = train_phases(
            fabric, model, spec, [Phase("head", epochs, 0, lr)], lambda phase: batches,
            EngineSettings(), folder=RunFolder(Path(run_dir)), run_config={},
        )  # fmt: skip
    return {
        "seconds": time.perf_counter() - start,
        "val_acc": result.history[-1]["val_acc"],
        "extract_s": sum(s.seconds for s in sets),
    }


def tuned(size: int, mode: str, batch: int = 32):
    """The speed trial's choice for EfficientNet-Lite0 at ``size`` (cached in tuning.json)."""
    from headstart.speed import tune_speed

    model, _ = textbook.build_model(10)
    start = time.perf_counter()
    s = tune_speed(model, torch.randn(batch, 3, size, size), key=textbook.MODEL, mode=mode, steps=2)
    print(f"speed trial {mode} {size}px: {s.to_dict()} ({time.perf_counter() - start:.1f}s)")
    return s


def bench_feature_extract(data: Path, size: int, epochs: int, tb_epochs: int, cache: Path) -> None:

    settings = tuned(size, "infer", 64)
    # what `headstart train --strategy feature-extract` does: the default settings (fp32,
    # channels-last for conv nets); the trial's choice is compared below when it differs
    cold = headstart_fe(data, size, epochs, cache, None)
    warm = headstart_fe(data, size, epochs, cache, None, lr=3e-3)
    tb = textbook.feature_extract(data, size, tb_epochs)
    tb_seconds = tb["seconds"] * epochs / tb_epochs
    FE_SECONDS[size] = (cold["seconds"], tb["seconds"] / tb_epochs)
    note = (
        "" if tb_epochs == epochs else f" (textbook: {tb_epochs} epoch(s) x{epochs / tb_epochs:g})"
    )
    _line(f"FE {epochs} ep {size}px, cold cache{note}", cold["seconds"], tb_seconds, "s", "<=0.1x")
    _line(
        f"FE {epochs} ep {size}px, warm cache (lr 3e-3)", warm["seconds"], tb_seconds, "s", "<=0.1x"
    )
    print(
        f"  val acc: headstart {cold['val_acc']:.3f} (warm run {warm['val_acc']:.3f}), "
        f"textbook after {tb_epochs} ep {tb['val_acc']:.3f}; extraction {cold['extract_s']:.1f}s"
    )
    if settings.autocast:
        trial = headstart_fe(data, size, epochs, Path(tempfile.mkdtemp()), settings)
        print(
            f"  trial's choice {settings.to_dict()}: cold {trial['seconds']:.1f}s, val acc "
            f"{trial['val_acc']:.3f} (default fp32 channels-last: {cold['seconds']:.1f}s, "
            f"{cold['val_acc']:.3f})"
        )


def headstart_train_images_per_s(data: Path, size: int, batches: int) -> float:
    """Full fine-tuning images/s with the decoded cache + tuned settings, in a loop like the engine.

    Mirrors ``training.loop.train_epoch``: ``train_mode`` (pretrained BatchNorm statistics), AdamW
    over ``param_groups``, label smoothing 0.1, one optimizer step per batch of 32.
    """
    from torch import nn
    from torch.utils.data import DataLoader

    from headstart.config import BnStats
    from headstart.data.image_cache import CachedImageDataset, build_decoded_cache
    from headstart.surgery import param_groups, set_trainable_stages, train_mode

    settings = tuned(size, "train")
    splits = load_splits(data)
    model, spec = textbook.build_model(len(splits.classes))
    pre = spec.preprocessing.with_size(size)
    cache = build_decoded_cache(splits.train, pre)
    loader = DataLoader(CachedImageDataset(splits.train, pre, "light", cache), 32, shuffle=True)
    set_trainable_stages(model, spec, None)
    groups = param_groups(model, spec, lr=1e-3, backbone_lr_factor=0.1, layer_decay=0.7,
                          weight_decay=0.01)  # fmt: skip
    optimizer = torch.optim.AdamW(groups)
    run = settings.prepare_model(model)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    train_mode(model, bn=BnStats.PRETRAINED)
    seen, start = 0, 0.0
    for i, (images, labels) in enumerate(loader):
        if i == 1:
            seen, start = 0, time.perf_counter()  # batch 0 is the warm-up
        if i > batches:
            break
        optimizer.zero_grad(set_to_none=True)
        with settings.autocast_context():
            loss = loss_fn(run(settings.prepare_input(images)).float(), labels)
        loss.backward()
        optimizer.step()
        seen += len(labels)
    return seen / (time.perf_counter() - start)


def bench_training(data: Path, size: int, batches: int) -> None:
    ours = headstart_train_images_per_s(data, size, batches)
    theirs = textbook.full_images_per_s(data, size, batches)
    _line(
        f"full fine-tune train images/s {size}px ({batches} batches)", ours, theirs, "img/s", ">=2x"
    )
    if size not in FE_SECONDS:
        return
    # two-phase 3 head + 7 full epochs of 1000 images: headstart's head phase is the cached
    # feature-extract run; the textbook's is 3 of its feature-extract epochs.
    n, head_ep, full_ep = 1000, 3, 7
    t_ours = FE_SECONDS[size][0] + full_ep * n / ours
    t_theirs = head_ep * FE_SECONDS[size][1] + full_ep * n / theirs
    _line(f"two-phase 3+7 ep images/s {size}px (estimated)", (head_ep + full_ep) * n / t_ours,
          (head_ep + full_ep) * n / t_theirs, "img/s", ">=2x")  # fmt: skip


def bench_predict(data: Path, size: int) -> None:
    from headstart.artifact import LoadedModel
    from headstart.data.images import image_to_tensor
    from headstart.inference.predict import predict_files

    model, spec = textbook.build_model(10)
    model.eval()
    pre = spec.preprocessing.with_size(size)
    paths = sorted(str(p) for p in (data / "val").rglob("*.png"))
    loaded = LoadedModel(model=model, classes=tuple(str(i) for i in range(10)),
                         preprocessing=pre, name=spec.name)  # fmt: skip
    from headstart.speed import keep_freed_memory

    with keep_freed_memory():  # as `headstart predict` runs it
        predict_files(loaded, paths[:32])  # warm-up
        start = time.perf_counter()
        predict_files(loaded, paths, batch_size=32)
        ours = len(paths) / (time.perf_counter() - start)
    tensors = torch.stack([image_to_tensor(p, pre) for p in paths])
    start = time.perf_counter()
    with torch.no_grad():
        for batch in tensors.split(32):
            model(batch)
    bare = len(paths) / (time.perf_counter() - start)
    _line(f"predict folder vs bare forward {size}px", ours, bare, "img/s", ">=0.9x")


def memory_child(data: Path) -> None:
    """Run feature-extract at 96 px on ``data`` with a fresh cache; print peak RSS in MB."""
    with tempfile.TemporaryDirectory() as cache:
        from headstart.speed import SpeedSettings

        headstart_fe(data, 96, 2, Path(cache), SpeedSettings())
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def bench_memory(n: int) -> None:
    peaks = []
    for count in (n, 10 * n):
        folder = Path(tempfile.gettempdir()) / "hs_bench" / f"mem_{count}"
        if not folder.exists():
            script = str(ROOT / "benchmarks/make_fmnist_folders.py")
            cmd = [sys.executable, script, str(folder), "--train", str(count), "--val", "50"]
            subprocess.run(cmd, check=True)
        out = subprocess.run([sys.executable, __file__, "--memory-child", str(folder)],
                             check=True, capture_output=True, text=True)  # fmt: skip
        peaks.append(float(out.stdout.split()[-1]))
    _line(f"peak RSS feature-extract {10 * n} vs {n} images", peaks[1], peaks[0], "MB", "<=1.2x")


def bench_help() -> None:
    exe = ROOT / ".venv" / "bin" / "headstart"
    times = []
    for _ in range(3):
        start = time.perf_counter()
        subprocess.run([str(exe), "--help"], check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    print(f"| headstart --help wall time (best of 3) | {min(times):.3f} s | | | <0.5 s |")


def main() -> None:
    parser = argparse.ArgumentParser(description="headstart vs textbook benchmarks")
    parser.add_argument("data", type=Path)
    parser.add_argument("--memory-child", action="store_true")
    parser.add_argument("--sizes", default="96,224")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--textbook-epochs", type=int, default=5)
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--memory-n", type=int, default=100)
    parser.add_argument("--only", default="fe,train,predict,memory,help")
    args = parser.parse_args()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    if args.memory_child:
        memory_child(args.data)
        return
    logging.basicConfig(level=logging.WARNING)
    only = set(args.only.split(","))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load {os.getloadavg()}")
    print("| comparison | headstart | textbook / bare | ratio | target |\n|---|---|---|---|---|")
    cache = Path(tempfile.mkdtemp(prefix="hs_features_"))
    sizes = [int(s) for s in args.sizes.split(",")]
    if "fe" in only:
        for size in sizes:
            bench_feature_extract(args.data, size, args.epochs, args.textbook_epochs, cache)
    if "train" in only:
        bench_training(args.data, sizes[-1], args.batches)
    if "predict" in only:
        bench_predict(args.data, sizes[-1])
    if "memory" in only:
        bench_memory(args.memory_n)
    if "help" in only:
        bench_help()
    print(f"load average at the end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
