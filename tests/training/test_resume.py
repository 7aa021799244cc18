import errno
import logging
import os
import signal

import pytest
import torch
from torch.utils.data import Dataset

from headstart.config import TrainConfig
from headstart.errors import CheckpointError
from headstart.files import previous_path
from headstart.training import checkpoint as ckpt
from headstart.training.callbacks import Callback
from headstart.training.checkpoint import load_checkpoint
from headstart.training.signals import TrainingInterrupted

from .helpers import bright_dark, run_engine, tiny_model

STEPS_PER_EPOCH = 4  # 32 images, batch 8


class Augmented(Dataset):
    """bright_dark images with noise and flips drawn from the global torch RNG (like v2)."""

    def __init__(self, n: int, seed: int = 0) -> None:
        self.base = bright_dark(n, seed=seed)

    def __len__(self) -> int:
        return len(self.base)

    @property
    def targets(self) -> torch.Tensor:
        return self.base.tensors[1]

    def __getitem__(self, index: int):
        image, label = self.base[index]
        if torch.rand(()) < 0.5:
            image = image.flip(-1)
        return image + 0.1 * torch.randn_like(image), label


class Crash(Exception):
    """Stands in for a kill: raised after a step, before that step's checkpoint is written."""


def config(strategy: str, **changes) -> TrainConfig:
    return TrainConfig(
        strategy=strategy, epochs=3, head_epochs=1, lr=0.01, batch_size=8, warmup_epochs=0.5,
        accelerator="cpu", patience=5, **changes,
    )  # fmt: skip


class Steps(Callback):
    """Counts steps, calls ``on_batch(step)`` and raises Crash at step ``crash_at``."""

    def __init__(self, crash_at=None, on_batch=None) -> None:
        self.count, self.crash_at, self.on_batch = 0, crash_at, on_batch

    def on_batch_end(self, batch) -> None:
        self.count += 1
        if self.on_batch is not None:
            self.on_batch(self.count)
        if self.count == self.crash_at:
            raise Crash


def train(cfg, run_dir, *, every=0, crash_at=None, on_batch=None, resume=False):
    return run_engine(
        run_dir, tiny_model(), Augmented(32), bright_dark(8, seed=1), strategy=cfg.strategy.value,
        epochs=cfg.epochs, head_epochs=cfg.head_epochs, lr=cfg.lr, batch_size=cfg.batch_size,
        callbacks=Steps(crash_at, on_batch), resume=resume, run_config=cfg.to_dict(),
        checkpoint_every_steps=every,
    )  # fmt: skip


_REFERENCE: dict[str, tuple] = {}


def reference(strategy, tmp_path_factory):
    """Final weights, last.pt weights and history of an uninterrupted run (computed once)."""
    if strategy not in _REFERENCE:
        run_dir = tmp_path_factory.mktemp(f"ref-{strategy}")
        result = train(config(strategy), run_dir)
        last = load_checkpoint(run_dir / "checkpoints" / "last.pt")["model"]
        _REFERENCE[strategy] = (result.model.state_dict(), last, result.history)
    return _REFERENCE[strategy]


def assert_same_run(result, run_dir, expected):
    best, last, history = expected
    got_last = load_checkpoint(run_dir / "checkpoints" / "last.pt")["model"]
    for want, got in ((best, result.model.state_dict()), (last, got_last)):
        assert want.keys() == got.keys()
        for name in want:
            assert torch.equal(want[name], got[name]), name
    timing = ("seconds", "images_per_s")
    strip = [{k: v for k, v in row.items() if k not in timing} for row in history]
    assert [{k: v for k, v in r.items() if k not in timing} for r in result.history] == strip


@pytest.mark.parametrize(
    ("strategy", "every", "crash_at", "where"),
    [
        ("feature-extract", 0, 6, (1, None)),  # epoch-end checkpoint
        ("feature-extract", 2, 7, (1, 2)),  # mid-epoch: 2 steps into epoch 2
        ("two-phase", 0, 5, (1, None)),  # end of the head phase: resume across the boundary
        ("two-phase", 3, 8, (1, 3)),  # mid-epoch in the full phase
    ],
)
def test_resume_is_bitwise_identical(tmp_path, tmp_path_factory, strategy, every, crash_at, where):
    expected = reference(strategy, tmp_path_factory)
    with pytest.raises(Crash):
        train(config(strategy), tmp_path, every=every, crash_at=crash_at)
    state = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    within = state["within_epoch"]
    assert (state["epoch"], within and within["batches"]) == where
    stale = [tmp_path / "checkpoints" / ".last.pt.x1.tmp", tmp_path / ".metrics.csv.x2.tmp"]
    for path in stale:
        path.write_bytes(b"half a file")
    torch.manual_seed(1234)  # a new process would start from other RNG states
    result = train(config(strategy), tmp_path, every=every, resume=True)
    assert not any(path.exists() for path in stale)
    assert_same_run(result, tmp_path, expected)
    if strategy == "two-phase":
        assert all(p.requires_grad for p in result.model.parameters())


def test_corrupt_last_checkpoint_falls_back_to_previous(tmp_path, tmp_path_factory, caplog):
    expected = reference("feature-extract", tmp_path_factory)
    with pytest.raises(Crash):
        train(config("feature-extract"), tmp_path, every=2, crash_at=8)
    last = tmp_path / "checkpoints" / "last.pt"
    previous = load_checkpoint(previous_path(last))  # last.pt: 2 steps into epoch 2
    assert (previous["epoch"], previous["within_epoch"]) == (1, None)
    last.write_bytes(last.read_bytes()[:1000])  # torn / damaged file
    with caplog.at_level(logging.WARNING):
        result = train(config("feature-extract"), tmp_path, every=2, resume=True)
    assert "resuming from the previous checkpoint" in caplog.text
    assert_same_run(result, tmp_path, expected)


def test_no_usable_checkpoint_is_a_clear_error(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.pt").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="no usable checkpoint"):
        train(config("feature-extract"), tmp_path, resume=True)


def test_resume_with_other_settings_is_refused(tmp_path):
    with pytest.raises(Crash):
        train(config("feature-extract"), tmp_path, crash_at=5)
    with pytest.raises(CheckpointError, match="lr: 0.01 -> 0.02"):
        train(config("feature-extract").replace(lr=0.02), tmp_path, resume=True)


def test_disk_full_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    ckpt.save_checkpoint(path, {"epoch": 1}, keep_previous=True)

    def full(state, handle):
        handle.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ckpt, "_write_state", full)
    with pytest.raises(CheckpointError, match="disk full.*still holds the previous"):
        ckpt.save_checkpoint(path, {"epoch": 2}, keep_previous=True)
    assert load_checkpoint(path) == {"epoch": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_disk_full_during_training_stops_loudly(tmp_path, monkeypatch):
    real = ckpt._write_state

    def fills_up(state, handle):
        if "optimizer" in state and state["epoch"] == 2:  # last.pt at the end of epoch 2
            handle.write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        real(state, handle)

    monkeypatch.setattr(ckpt, "_write_state", fills_up)
    with pytest.raises(CheckpointError, match="disk full"):
        train(config("feature-extract"), tmp_path)
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["epoch"] == 1
    assert not list(tmp_path.rglob("*.tmp"))


def test_sigterm_stops_after_the_step_and_resumes_exactly(tmp_path, tmp_path_factory):
    expected = reference("two-phase", tmp_path_factory)
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)

    def send(step):
        if step == 6:
            os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(TrainingInterrupted, match="SIGTERM.*--resume") as info:
        train(config("two-phase"), tmp_path, on_batch=send)
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before
    state = load_checkpoint(info.value.checkpoint)
    assert (state["epoch"], state["within_epoch"]["batches"]) == (1, 2)
    result = train(config("two-phase"), tmp_path, resume=True)
    assert_same_run(result, tmp_path, expected)


def test_a_two_phase_run_shorter_than_its_head_epochs_resumes_bitwise(tmp_path):
    """--epochs 2 with --head-epochs 3: one head epoch, one fine-tuning epoch; killed in the
    fine-tuning epoch and resumed, it ends where an uninterrupted run ends."""
    cfg = config("two-phase").replace(epochs=2, head_epochs=3)
    reference_dir, crashed_dir = tmp_path / "reference", tmp_path / "crashed"
    result = train(cfg, reference_dir)
    assert [row["phase"] for row in result.history] == ["head", "full"]
    last = load_checkpoint(reference_dir / "checkpoints" / "last.pt")["model"]
    with pytest.raises(Crash):
        train(cfg, crashed_dir, every=1, crash_at=STEPS_PER_EPOCH + 2)
    resumed = train(cfg, crashed_dir, resume=True)
    assert_same_run(resumed, crashed_dir, (result.model.state_dict(), last, result.history))


def test_second_ctrl_c_quits_at_once(tmp_path):
    def send(step):
        if step == 2:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)

    before = signal.getsignal(signal.SIGINT)  # SIG_IGN when the suite runs in the background
    with pytest.raises(KeyboardInterrupt):
        train(config("feature-extract"), tmp_path, on_batch=send)
    assert signal.getsignal(signal.SIGINT) is before  # the handler in place before is back


RECIPE = {  # every recipe setting of the engine on at once
    "ema": True, "ema_decay": 0.9, "mixup": 0.4, "cutmix": 1.0, "accumulate": 2,
    "clip_grad": 1.0, "class_weights": "balanced",
}  # fmt: skip


def train_recipe(run_dir, *, every=0, crash_at=None, resume=False):
    from headstart.config import Schedule
    from headstart.training.phase import OptimSettings

    cfg = config("two-phase", ema=True, mixup=0.4, cutmix=1.0, accumulate=2, clip_grad=1.0,
                 class_weights="balanced", sampler="balanced", schedule="onecycle")  # fmt: skip
    return run_engine(
        run_dir, tiny_model(), Augmented(32), bright_dark(8, seed=1), strategy="two-phase",
        epochs=3, head_epochs=1, lr=0.01, batch_size=8, callbacks=Steps(crash_at),
        resume=resume, run_config=cfg.to_dict(), checkpoint_every_steps=every,
        sampler="balanced", optim=OptimSettings(warmup_epochs=0.5, schedule=Schedule.ONECYCLE),
        **RECIPE,
    )  # fmt: skip


def test_resume_with_the_whole_recipe_is_bitwise_identical(tmp_path):
    """EMA, mixing, accumulation, clipping, class weights, balanced draws, one-cycle: a run
    killed mid-epoch in the full phase and resumed ends where an uninterrupted run ends."""
    from headstart.run_folder import RunFolder

    reference_dir, crashed_dir = tmp_path / "reference", tmp_path / "crashed"
    result = train_recipe(reference_dir)
    expected_last = load_checkpoint(reference_dir / "checkpoints" / "last.pt")
    with pytest.raises(Crash):  # 2 optimizer steps per epoch: step 4 is epoch 2's second
        train_recipe(crashed_dir, every=1, crash_at=4)
    state = load_checkpoint(crashed_dir / "checkpoints" / "last.pt")
    assert (state["epoch"], state["within_epoch"]["batches"], state["within_epoch"]["steps"]) == (
        1, 2, 1)  # fmt: skip
    assert state["ema"]["steps"] == 1  # the full phase's average, one step in
    torch.manual_seed(1234)
    resumed = train_recipe(crashed_dir, every=1, resume=True)
    assert_same_run(resumed, crashed_dir, (result.model.state_dict(), expected_last["model"],
                                           result.history))  # fmt: skip
    got_last = load_checkpoint(crashed_dir / "checkpoints" / "last.pt")
    for name, tensor in expected_last["ema"]["weights"].items():
        assert torch.equal(got_last["ema"]["weights"][name], tensor), name
    assert resumed.ema_used == result.ema_used
    assert RunFolder(crashed_dir).read_lr_trace() == RunFolder(reference_dir).read_lr_trace()
    assert len(RunFolder(crashed_dir).read_lr_trace()) == 3 * 2
