import csv

import pytest
import torch

from headstart.training.callbacks import Callback
from headstart.training.checkpoint import load_checkpoint

from .helpers import bright_dark, run_engine, tiny_model


class Recorder(Callback):
    def __init__(self) -> None:
        self.rows, self.batches, self.phases, self.plans = [], [], [], []

    def on_plan(self, phases) -> None:
        self.plans.append([(p.name, p.epochs) for p in phases])

    def on_phase_start(self, phase, *, index, num_phases) -> None:
        self.phases.append((phase.name, index, num_phases))

    def on_batch_end(self, batch) -> None:
        self.batches.append(batch)

    def on_epoch_end(self, row) -> None:
        self.rows.append(dict(row))


def train(tmp_path, arch="test_resnet", **kwargs):
    return run_engine(
        tmp_path, tiny_model(arch), bright_dark(32), bright_dark(16, seed=1), **kwargs
    )


def test_feature_extract_learns_and_writes_run_folder(tmp_path):
    seen = Recorder()
    result = train(tmp_path, strategy="feature-extract", callbacks=seen)
    assert len(result.history) == 3 and seen.rows == result.history
    assert seen.phases == [("head", 0, 1)]
    assert seen.plans == [[("head", 3)]]  # told once, before the first phase, with every phase
    assert [r["epoch"] for r in result.history] == [1, 2, 3]
    assert result.history[-1]["train_acc"] >= 0.9
    assert result.best_metrics["val_acc"] >= 0.9
    assert len(seen.batches) == 3 * 4 and seen.batches[-1].num_batches == 4
    with open(tmp_path / "metrics.csv") as handle:
        table = list(csv.DictReader(handle))
    assert len(table) == 3 and set(table[0]) >= {"epoch", "phase", "val_f1", "lr", "images_per_s"}
    last = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert last["epoch"] == 3 and last["phase_index"] == 0 and len(last["history"]) == 3
    assert {"optimizer", "scheduler", "early_stopping", "best", "rng", "loader_generator"} <= set(
        last
    )
    best = load_checkpoint(tmp_path / "checkpoints" / "best.pt")
    assert best["epoch"] == result.best_epoch
    for name, tensor in result.model.state_dict().items():
        assert torch.equal(tensor, best["model"][name]), name
    assert not [p for p in tmp_path.rglob("*.tmp")]
    untrained = tiny_model()[0].state_dict()
    for name, tensor in result.model.state_dict().items():  # the frozen body did not move at all
        if not name.startswith("fc."):
            assert torch.equal(tensor, untrained[name]), name


def test_two_phase_switch_is_visible(tmp_path):
    result = train(tmp_path, arch="test_efficientnet", strategy="two-phase")
    assert [r["phase"] for r in result.history] == ["head", "full", "full"]
    assert [p.name for p in result.phases] == ["head", "full"]
    assert result.history[1]["lr"] < result.history[0]["lr"]
    assert all(p.requires_grad for p in result.model.parameters())
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["phase_index"] == 1


def test_a_later_phase_starts_from_the_best_weights_so_far(tmp_path):
    """Two-phase fine-tuning continues from the head phase's best epoch, not its last one."""
    seen = {}

    class AtFullPhase(Callback):
        def __init__(self, model) -> None:
            self.model = model

        def on_phase_start(self, phase, *, index, num_phases) -> None:
            if index == 1:
                seen["model"] = {k: v.clone() for k, v in self.model.state_dict().items()}
                seen["best"] = load_checkpoint(tmp_path / "checkpoints" / "best.pt")
                seen["last"] = load_checkpoint(tmp_path / "checkpoints" / "last.pt")

    model_and_spec = tiny_model()
    # lr 1e-9: the weights move a little every epoch, val accuracy does not, so epoch 1 stays best
    result = run_engine(
        tmp_path, model_and_spec, bright_dark(32), bright_dark(16, seed=1), strategy="two-phase",
        epochs=4, head_epochs=3, lr=1e-9, callbacks=AtFullPhase(model_and_spec[0]),
    )  # fmt: skip
    assert [r["phase"] for r in result.history] == ["head"] * 3 + ["full"]
    assert seen["best"]["epoch"] == 1 and seen["last"]["epoch"] == 3
    for name, tensor in seen["model"].items():
        assert torch.equal(tensor, seen["best"]["model"][name]), name
    assert not torch.equal(seen["model"]["fc.weight"], seen["last"]["model"]["fc.weight"])


def test_early_stopping_ends_the_run(tmp_path):
    result = train(tmp_path, strategy="full", epochs=4, lr=1e-9, patience=1)
    assert result.stopped_early and len(result.history) == 2
    assert result.best_epoch == 1


@pytest.mark.parametrize("strategy", ["partial"])
def test_same_seed_same_weights(tmp_path, strategy):
    first = train(tmp_path / "a", strategy=strategy, epochs=2).model.state_dict()
    second = train(tmp_path / "b", strategy=strategy, epochs=2).model.state_dict()
    assert first.keys() == second.keys()
    for name in first:
        assert torch.equal(first[name], second[name]), name
    untrained = tiny_model()[0].state_dict()
    assert not torch.equal(first["fc.weight"], untrained["fc.weight"])
    assert not torch.equal(first["layer4.0.conv1.weight"], untrained["layer4.0.conv1.weight"])
    assert torch.equal(first["layer1.0.conv1.weight"], untrained["layer1.0.conv1.weight"])
    for buffer in ("running_mean", "running_var", "num_batches_tracked"):  # frozen BN stays put
        assert torch.equal(first[f"layer1.0.bn1.{buffer}"], untrained[f"layer1.0.bn1.{buffer}"])
        assert not torch.equal(first[f"layer4.0.bn1.{buffer}"], untrained[f"layer4.0.bn1.{buffer}"])


class Poisoned(torch.utils.data.Dataset):
    """bright_dark images that turn into NaN once ``poison`` is set (from the next batch on)."""

    def __init__(self, n: int) -> None:
        self.base, self.poison = bright_dark(n), False

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int):
        image, label = self.base[index]
        return (image * float("nan") if self.poison else image), label


def test_divergence_keeps_the_best_finite_epoch_and_says_so(tmp_path):
    train_ds = Poisoned(32)

    class PoisonAfterEpoch1(Callback):
        def on_epoch_end(self, row) -> None:
            train_ds.poison = True

    result = run_engine(
        tmp_path, tiny_model(), train_ds, bright_dark(16, seed=1), strategy="full",
        callbacks=PoisonAfterEpoch1(),
    )  # fmt: skip
    assert len(result.history) == 1 and result.best_epoch == 1 and result.stopped_early
    assert "diverged in epoch 2 (full phase, step 1: training loss nan)" in result.diverged
    assert "keeps epoch 1" in result.diverged and "--lr" in result.diverged
    assert all(torch.isfinite(t).all() for t in result.model.state_dict().values())
    best = load_checkpoint(tmp_path / "checkpoints" / "best.pt")
    assert best["epoch"] == 1


def test_divergence_in_the_first_epoch_is_a_clear_error(tmp_path):
    from headstart.training.divergence import Diverged

    with pytest.raises(Diverged, match="no model to keep; try a lower --lr"):
        train(tmp_path, strategy="full", lr=1e30)
    assert not (tmp_path / "checkpoints" / "best.pt").exists()


def test_a_deadline_ends_the_last_phase_after_the_epoch_that_reaches_it(tmp_path):
    import time

    seen = Recorder()
    notes = []

    class Notes(Callback):
        def on_note(self, message) -> None:
            notes.append(message)

    from headstart.training.callbacks import CallbackList

    result = train(
        tmp_path, strategy="two-phase", epochs=4, head_epochs=1,
        callbacks=CallbackList([seen, Notes()]), deadline=time.monotonic() + 0.001,
    )  # fmt: skip
    # the head phase is not cut; the last phase stops after its first epoch, keeping the best
    assert [r["phase"] for r in result.history] == ["head", "full"]
    assert result.stopped_early
    assert any("to keep to the time budget" in n for n in notes)
    far = train(tmp_path / "far", strategy="two-phase", epochs=4, head_epochs=1,
                deadline=time.monotonic() + 3600)  # fmt: skip
    assert len(far.history) == 4
