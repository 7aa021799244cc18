"""GPU check (issue 13): headstart's training and prediction speed against the bare loop.

Trains a full fine-tuning run with ``headstart train`` on the device and compares its training
images/s (the last epoch's, from metrics.csv) with a bare AMP training step of the same network
on random batches of the same shape; then predicts the validation images with the trained model
and compares with a bare forward pass; with two GPUs, also trains with ``--devices 2`` and reports
the scaling efficiency (images/s of two processes / twice one's). Targets: training >= 0.8x,
prediction >= 0.9x, scaling >= 0.9.

    uv run python benchmarks/gpu_check.py DATA [--device cuda] [--image-size 224] [--batch-size 64]

``--device cpu`` runs the same comparison on the CPU (a check that the script works; the targets
are about GPUs). Prints one line per figure and a JSON summary.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from headstart.run_folder import RunFolder
from headstart.surgery import replace_head
from headstart.zoo import create_backbone


def train_speed(data: str, out: Path, args: argparse.Namespace, devices: int) -> float:
    """The last epoch's training images/s of ``headstart train`` (all processes together)."""
    accelerator = "cuda" if args.device.startswith("cuda") else args.device
    command = [
        sys.executable, "-m", "headstart", "train", data, "--model", args.model, "--strategy",
        "full", "--epochs", str(args.epochs), "--image-size", str(args.image_size),
        "--batch-size", str(args.batch_size * devices), "--accelerator", accelerator,
        "--devices", str(devices), "--num-workers", str(args.workers), "--out", str(out),
    ]  # fmt: skip
    subprocess.run(command, check=True)
    with (out / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    return float(rows[-1]["images_per_s"])


def _autocast(device: torch.device) -> tuple[torch.dtype, bool]:
    """bf16 where supported (no scaler), else fp16 with a GradScaler (old GPUs)."""
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16, True
    return torch.bfloat16, False


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bare_train_speed(args: argparse.Namespace, num_classes: int, device: torch.device) -> float:
    """Images/s of the textbook AMP step (channels-last, AdamW) on random batches."""
    model, spec = create_backbone(args.model, pretrained=True)
    model = replace_head(model, spec, num_classes).to(device, memory_format=torch.channels_last)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    dtype, scaled = _autocast(device)
    scaler = torch.amp.GradScaler(enabled=scaled)
    images = torch.randn(args.batch_size, 3, args.image_size, args.image_size, device=device)
    images = images.contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, num_classes, (args.batch_size,), device=device)
    for step in range(args.steps + 3):  # three warm-up steps
        if step == 3:
            _sync(device)
            began = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=dtype):
            loss = torch.nn.functional.cross_entropy(model(images), labels)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    _sync(device)
    return args.steps * args.batch_size / (time.perf_counter() - began)


def predict_speed(run: Path, files: list[str], args: argparse.Namespace) -> float:
    """Images/s of headstart's prediction (decoding included) with the trained model."""
    from headstart.inference.load import load_model
    from headstart.inference.predict import predict_files

    loaded = load_model(run, device=args.device)
    predict_files(loaded, files[: args.batch_size], batch_size=args.batch_size)  # warm-up
    _sync(loaded.device)
    began = time.perf_counter()
    predict_files(loaded, files, batch_size=args.batch_size)
    _sync(loaded.device)
    return len(files) / (time.perf_counter() - began)


def bare_predict_speed(run: Path, args: argparse.Namespace) -> float:
    """Images/s of the bare forward pass of the trained model on random batches."""
    from headstart.inference.load import load_model

    loaded = load_model(run, device=args.device)
    model, device = loaded.model.eval(), loaded.device
    dtype, _ = _autocast(device)
    images = torch.randn(args.batch_size, 3, args.image_size, args.image_size, device=device)
    with torch.inference_mode(), torch.autocast(device.type, dtype=dtype):
        for step in range(args.steps + 3):
            if step == 3:
                _sync(device)
                began = time.perf_counter()
            model(images)
    _sync(device)
    return args.steps * args.batch_size / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help="an image folder with class sub-folders")
    parser.add_argument("--model", default="bundled:efficientnet_lite0")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=64, help="per process")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20, help="timed steps of the bare loops")
    parser.add_argument("--workers", type=int, default=4, help="DataLoader workers")
    args = parser.parse_args()
    device = torch.device(args.device)
    found: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        found["train_img_s"] = train_speed(args.data, run, args, devices=1)
        splits = RunFolder.open(run).read_splits()
        files = [sample.path for sample in splits.val]
        found["bare_train_img_s"] = bare_train_speed(args, len(splits.classes), device)
        found["predict_img_s"] = predict_speed(run, files, args)
        found["bare_predict_img_s"] = bare_predict_speed(run, args)
        if device.type == "cuda" and torch.cuda.device_count() >= 2:
            two = train_speed(args.data, Path(tmp) / "run2", args, devices=2)
            found["train_2gpu_img_s"] = two
            found["scaling_efficiency"] = two / (2 * found["train_img_s"])
    found["train_ratio"] = found["train_img_s"] / found["bare_train_img_s"]
    found["predict_ratio"] = found["predict_img_s"] / found["bare_predict_img_s"]
    for key, value in found.items():
        print(f"{key}: {value:.3f}")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(json.dumps({"device": name, **found}))


if __name__ == "__main__":
    main()
