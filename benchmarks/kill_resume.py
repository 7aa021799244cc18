"""Kill -9 a tiny training at random moments, resume it, and check the weights come out identical.

Usage: uv run python benchmarks/kill_resume.py [--runs 10] [--kills 3] [--seed 0]

A reference run trains uninterrupted in a subprocess. Each of ``--runs`` runs then starts the same
training in a subprocess, SIGKILLs it ``--kills`` times (every other kill lands right after a
checkpoint write has begun: the worker then sleeps inside every atomic write, before and after the
rename, to widen the write window) and resumes it
each time from its run folder, then lets it finish. Prints, per run, whether the final weights are
bitwise identical to the reference, and after every kill whether ``last.pt`` (or, failing that,
``last.prev.pt``) could be loaded.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WRITE_DELAY = "0.2"
"""Seconds each checkpoint write sleeps before and after its rename in the "during write" kills."""
DELAY_ENV = "KILL_RESUME_WRITE_DELAY"
"""Set by this benchmark for its worker processes only."""


def worker(run_dir: Path) -> None:
    """Train (or resume) the tiny run in ``run_dir`` and save the final weights to final.pt."""
    import timm
    import torch
    from lightning_fabric import Fabric
    from torch.utils.data import Dataset

    from headstart import files
    from headstart.config import BnStats, TrainConfig
    from headstart.preprocessing import PreprocessSpec
    from headstart.run_folder import RunFolder
    from headstart.surgery import replace_head
    from headstart.training.batches import ImageBatches
    from headstart.training.checkpoint import save_checkpoint
    from headstart.training.engine import EngineSettings, train_phases
    from headstart.training.phase import OptimSettings
    from headstart.training.strategies import plan_phases
    from headstart.zoo.spec import BackboneSpec

    if os.environ.get(DELAY_ENV):  # widen the window in which a kill lands mid-write
        delay = float(os.environ[DELAY_ENV])
        files._before_rename = lambda path: time.sleep(delay)  # type: ignore[assignment]

    class Augmented(Dataset):
        """Synthetic bright/dark images with flips and noise from the global torch RNG."""

        def __init__(self, n: int, seed: int) -> None:
            g = torch.Generator().manual_seed(seed)
            self.labels = torch.arange(n) % 2
            self.images = torch.randn(n, 3, 32, 32, generator=g) * 0.3
            self.images += (self.labels.float() * 2 - 1)[:, None, None, None]

        def __len__(self) -> int:
            return len(self.labels)

        def __getitem__(self, i: int):
            image = self.images[i].flip(-1) if torch.rand(()) < 0.5 else self.images[i]
            return image + 0.1 * torch.randn_like(image), self.labels[i]

    torch.manual_seed(0)
    model = timm.create_model("test_resnet", pretrained=False)
    stages = tuple(
        tuple(f"{name}.{p}" for p, _ in child.named_parameters())
        for name, child in model.named_children()
        if name != "fc" and any(True for _ in child.parameters())
    )
    spec = BackboneSpec(
        name="timm:test_resnet", source="timm", arch="test_resnet",
        preprocessing=PreprocessSpec(input_size=32), num_features=model.num_features,
        classifier="fc", stages=stages, pretrained=False,
    )  # fmt: skip
    model = replace_head(model, spec, 2)
    cfg = TrainConfig(
        strategy="two-phase", epochs=4, head_epochs=1, lr=0.01, batch_size=8, warmup_epochs=0.5,
        accelerator="cpu", checkpoint_every_steps=2,
    )  # fmt: skip
    fabric = Fabric(accelerator="cpu", devices=1)
    batches = ImageBatches.create(
        fabric, Augmented(48, 0), Augmented(16, 1), batch_size=8, num_workers=0, seed=cfg.seed
    )
    phases = plan_phases(cfg.strategy, spec, epochs=4, head_epochs=1, unfreeze_stages=1, lr=0.01)
    settings = EngineSettings(
        optim=OptimSettings(warmup_epochs=0.5), bn=BnStats.ADAPT, checkpoint_every_steps=2
    )
    folder = RunFolder(run_dir)
    (run_dir / "started").touch()
    result = train_phases(
        fabric, model, spec, phases, lambda phase: batches, settings, folder=folder,
        run_config=cfg.to_dict(), resume=folder.has_checkpoint(),
    )  # fmt: skip
    save_checkpoint(run_dir / "final.pt", {"best": result.model.state_dict()})


def _start(run_dir: Path, delay: bool) -> subprocess.Popen:
    env = dict(os.environ)
    env.pop(DELAY_ENV, None)
    if delay:
        env[DELAY_ENV] = WRITE_DELAY
    (run_dir / "started").unlink(missing_ok=True)
    return subprocess.Popen(
        [sys.executable, __file__, "--worker", str(run_dir)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _wait_started(proc: subprocess.Popen, run_dir: Path) -> bool:
    while not (run_dir / "started").exists():
        if proc.poll() is not None:
            return False
        time.sleep(0.02)
    return True


def _kill_during_write(proc: subprocess.Popen, run_dir: Path, rng: random.Random) -> bool:
    """Let a random number of checkpoint writes pass, then kill within the next write window."""
    folder, seen, target = run_dir / "checkpoints", set(), rng.randint(1, 6)
    while proc.poll() is None:
        if folder.is_dir():
            seen.update(p.name for p in folder.glob(".*.tmp"))
        if len(seen) >= target:
            time.sleep(rng.uniform(0.0, 2 * float(WRITE_DELAY)))
            break
        time.sleep(0.005)
    return _kill(proc)


def _kill(proc: subprocess.Popen) -> bool:
    if proc.poll() is not None:
        return False
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return True


def _loadable(run_dir: Path) -> tuple[bool, bool]:
    """Whether last.pt loads, and whether a usable checkpoint (last or previous) exists.

    A kill before the first checkpoint counts as usable: nothing was lost that had been saved.
    """
    from headstart.errors import CheckpointError
    from headstart.training.checkpoint import load_checkpoint, load_latest_checkpoint

    last = run_dir / "checkpoints" / "last.pt"
    try:
        load_checkpoint(last)
        latest_ok = True
    except CheckpointError:
        latest_ok = False
    try:
        load_latest_checkpoint(last)
        return latest_ok, True
    except CheckpointError:
        return latest_ok, not last.parent.exists()  # killed before the first checkpoint


def _same(a: Path, b: Path) -> bool:
    import torch

    from headstart.training.checkpoint import load_checkpoint

    x, y = load_checkpoint(a)["best"], load_checkpoint(b)["best"]
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def one_run(run_dir: Path, kills: int, span: float, rng: random.Random) -> dict[str, int | bool]:
    """Kill and resume one run ``kills`` times, then let it finish."""
    stats = {"kills": 0, "in_write": 0, "last_ok": 0, "usable": 0}
    for k in range(kills):
        during_write = k % 2 == 1
        proc = _start(run_dir, delay=during_write)
        if not _wait_started(proc, run_dir):
            break
        if during_write:
            killed = _kill_during_write(proc, run_dir, rng)
        else:
            time.sleep(rng.uniform(0.0, 0.6 * span))  # resumed runs have less left to do
            killed = _kill(proc)
        if not killed:
            break  # it finished first
        stats["kills"] += 1
        stats["in_write"] += any((run_dir / "checkpoints").glob(".*.tmp"))
        latest_ok, usable = _loadable(run_dir)
        stats["last_ok"] += latest_ok
        stats["usable"] += usable
    proc = _start(run_dir, delay=False)
    return {**stats, "finished": proc.wait() == 0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker)
        return
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        ref = Path(tmp) / "reference"
        ref.mkdir()
        proc = _start(ref, delay=False)
        _wait_started(proc, ref)
        began = time.perf_counter()
        if proc.wait() != 0:
            raise SystemExit("the reference run failed")
        span = time.perf_counter() - began
        print(f"reference run: {span:.1f}s of training after start-up")
        identical = usable = kills = 0
        for i in range(args.runs):
            run_dir = Path(tmp) / f"run{i}"
            run_dir.mkdir()
            stats = one_run(run_dir, args.kills, span, rng)
            same = bool(stats["finished"]) and _same(ref / "final.pt", run_dir / "final.pt")
            identical += same
            usable += stats["usable"]
            kills += stats["kills"]
            print(
                f"run {i}: {stats['kills']} kills ({stats['in_write']} mid-write), last.pt "
                f"loadable after {stats['last_ok']}, some checkpoint usable after "
                f"{stats['usable']}; finished={stats['finished']} identical={same}"
            )
        print(
            f"{identical}/{args.runs} runs resumed to bitwise-identical weights; a usable "
            f"checkpoint was left after {usable}/{kills} kills"
        )


if __name__ == "__main__":
    main()
