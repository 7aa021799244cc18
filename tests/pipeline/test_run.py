"""train_run / resume_run: two-phase with the head phase on cached features, and exact resume."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from headstart.config import TrainConfig
from headstart.pipeline import resume_run, train_run
from headstart.training.callbacks import Callback
from headstart.training.checkpoint import load_checkpoint
from tests.e2e_helpers import TINY_MODEL, tiny_weights


class Crash(Exception):
    """Stands in for a kill during the full phase."""


class CrashAt(Callback):
    """Raises Crash at step ``step`` of phase ``phase`` (before that step's checkpoint)."""

    def __init__(self, phase: int = 1, step: int = 1) -> None:
        self.phase, self.step, self.current, self.steps = phase, step, -1, 0

    def on_phase_start(self, phase, *, index, num_phases) -> None:
        self.current, self.steps = index, 0

    def on_batch_end(self, batch) -> None:
        self.steps += self.current == self.phase
        if self.current == self.phase and self.steps == self.step:
            raise Crash


def _config(data: Path, weights: Path, out: Path, **overrides) -> TrainConfig:
    settings = dict(
        data=str(data), model=TINY_MODEL, weights=str(weights), strategy="two-phase", epochs=3,
        head_epochs=1, image_size=32, batch_size=4, lr=0.01, accelerator="cpu", out=str(out),
        checkpoint_every_steps=0,
    )  # fmt: skip
    return TrainConfig(**{**settings, **overrides})


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from tests.conftest import make_image_folder

    root = tmp_path_factory.mktemp("fit")
    folder = make_image_folder(root / "data", ("a", "b"), n=8, layout="split", n_val=3)
    return folder, tiny_weights(root)


def test_two_phase_trains_its_head_phase_on_cached_features(data, tmp_path: Path) -> None:
    folder, weights = data
    result = train_run(_config(folder, weights, tmp_path / "run"), {"out": "cli"})
    assert [row["phase"] for row in result.history] == ["head", "full", "full"]
    assert any("head phase trains on un-augmented features" in n for n in result.notes)
    assert any(n.startswith("speed: full phase") for n in result.notes)
    recipe = next(n for n in result.notes if n.startswith("recipe: "))
    assert "head 1 epoch at lr 0.01, then full 2 epochs at lr 0.001" in recipe, recipe
    assert "32 px" in recipe and "augment light with flips" in recipe and "--no-hflip" in recipe
    assert (tmp_path / "run" / "metrics.csv").read_text().count("\n") == 1 + 3
    last = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert last["epoch"] == 3 and [r["phase"] for r in last["history"]] == ["head", "full", "full"]
    # complete: no optimizer state, no second copy; the weights kept are the saved (best) ones
    assert last["optimizer"] is None and last["best_model"] is None
    assert not (tmp_path / "run" / "checkpoints" / "last.prev.pt").exists()
    for name, value in result.model.state_dict().items():
        assert torch.equal(last["model"][name], value), name
    # the same run through the image loop (no caches) trains the same phases
    plain = train_run(
        _config(folder, weights, tmp_path / "plain", cache=False), {"out": "cli"}
    )
    assert [row["phase"] for row in plain.history] == ["head", "full", "full"]
    assert not any("feature cache" in n for n in plain.notes)


def test_killed_in_the_full_phase_resumes_bitwise(data, tmp_path: Path) -> None:
    folder, weights = data
    reference = train_run(_config(folder, weights, tmp_path / "ref"), {"out": "cli"})

    with pytest.raises(Crash):  # at the first step of the full phase: the head phase's checkpoint
        train_run(_config(folder, weights, tmp_path / "run"), {"out": "cli"}, callbacks=[CrashAt()])
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert (state["phase_index"], state["epoch_in_phase"], state["epoch"]) == (0, 1, 1)
    torch.manual_seed(1234)  # a new process starts from other RNG states
    resumed = resume_run(tmp_path / "run")
    want, got = reference.model.state_dict(), resumed.model.state_dict()
    assert want.keys() == got.keys()
    for name in want:
        assert torch.equal(want[name], got[name]), name
    timing = ("seconds", "images_per_s")
    strip = [{k: v for k, v in r.items() if k not in timing} for r in reference.history]
    assert [{k: v for k, v in r.items() if k not in timing} for r in resumed.history] == strip


def test_resume_keeps_the_speed_choice_unless_precision_changes(
    data, tmp_path: Path, monkeypatch
) -> None:
    from headstart.speed import SpeedSettings
    from headstart.training import phase

    folder, weights = data
    bf16 = SpeedSettings("cpu", channels_last=True, autocast="bfloat16")
    monkeypatch.setattr(phase, "tune_speed", lambda *args, **kwargs: bf16)
    for name in ("run", "again"):  # killed at step 2 of the full phase, after step 1's checkpoint
        with pytest.raises(Crash):
            train_run(
                _config(folder, weights, tmp_path / name, checkpoint_every_steps=1),
                {"out": "cli"}, callbacks=[CrashAt(step=2)],
            )  # fmt: skip
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["speed"] == bf16.to_dict()
    monkeypatch.setattr(phase, "tune_speed", lambda *args, **kwargs: SpeedSettings("cpu"))
    fp32 = resume_run(tmp_path / "run", {"precision": "32-true"})
    assert fp32.notes[-1].startswith("speed: full phase fp32")  # chosen again, not bf16
    kept = resume_run(tmp_path / "again")
    assert kept.notes[-1].startswith("speed: full phase bf16")  # from the checkpoint


def test_a_budget_plans_the_run_and_says_how_it_went(data, tmp_path: Path) -> None:
    import yaml

    folder, weights = data
    config = TrainConfig(
        data=str(folder), model=TINY_MODEL, weights=str(weights), accelerator="cpu",
        out=str(tmp_path / "run"), budget="2m",
    )  # fmt: skip
    result = train_run(config, {"out": "cli", "model": "cli", "weights": "cli", "budget": "cli"})
    plan = next(n for n in result.notes if n.startswith("budget plan:"))
    assert "expected" in plan and "of 120s" in plan
    assert result.notes[-1].startswith("budget 2m: the command took")
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert {saved["source"][k] for k in ("image_size", "epochs", "strategy")} == {"budget"}
    assert saved["settings"]["image_size"] in (64, 96, 128, 160, 192, 224)


def test_a_budget_keeps_the_users_image_size(data, tmp_path: Path) -> None:
    import yaml

    folder, weights = data
    config = _config(folder, weights, tmp_path / "run", budget="2m", epochs=3)
    origin = {"out": "cli", "image_size": "cli", "epochs": "cli", "budget": "cli"}
    train_run(config, origin)
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["settings"]["image_size"] == 32 and saved["settings"]["epochs"] == 3
    assert saved["source"]["image_size"] == "cli" and saved["source"]["batch_size"] == "budget"


def test_lr_auto_sweeps_the_first_phase_and_keeps_the_rate(data, tmp_path: Path) -> None:
    import yaml

    folder, weights = data
    config = _config(folder, weights, tmp_path / "run", lr="auto")
    result = train_run(config, {"out": "cli", "lr": "cli"})
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    lr = saved["settings"]["lr"]
    assert isinstance(lr, float) and 1e-7 <= lr <= 10 and saved["source"]["lr"] == "auto"
    assert (tmp_path / "run" / "lr_find.png").is_file()
    assert any(n.startswith(f"learning rate {lr:g} for the head phase") for n in result.notes)
    assert result.history[0]["lr"] <= lr  # the head phase warms up to the rate found


def test_the_audit_decodes_each_file_once_for_training_and_testing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from headstart.artifact import LoadedModel
    from headstart.data.folders import load_splits
    from headstart.data.image_store import DecodedImageCache
    from headstart.files import cache_dir
    from headstart.inference.evaluate import evaluate_samples
    from tests.conftest import make_image_folder

    monkeypatch.setenv("HEADSTART_CACHE", str(tmp_path / "cache"))
    folder = make_image_folder(tmp_path / "d", ("a", "b"), n=6, layout="split", n_val=2, n_test=2)
    config = _config(folder, tiny_weights(tmp_path), tmp_path / "run", strategy="partial",
                     epochs=1)  # fmt: skip
    result = train_run(config, {"out": "cli"})
    (entry,) = (cache_dir() / "images").iterdir()  # one entry: train, val and test together
    store = DecodedImageCache(entry)
    assert len(store) == 20
    loaded = LoadedModel(result.model, result.classes, result.preprocessing, result.spec.name)
    samples = load_splits(folder, val_fraction=0.2, test_fraction=0.0, seed=0).test
    decoded = evaluate_samples(loaded, samples)
    stored = evaluate_samples(loaded, samples, images=store)
    assert torch.equal(decoded.logits, stored.logits)
    assert result.test_metrics["acc"] == decoded.metrics["acc"]


def test_data_over_the_cache_budget_is_decoded_as_it_is_read(
    data, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from headstart.files import cache_dir

    monkeypatch.setenv("HEADSTART_CACHE", str(tmp_path / "cache"))  # nothing cached yet
    folder, weights = data
    result = train_run(_config(folder, weights, tmp_path / "run", cache_budget="1KB"), {})
    assert [row["phase"] for row in result.history] == ["head", "full", "full"]
    told = [n for n in result.notes if "do not fit the cache budget (1KB)" in n]
    assert len(told) == 2 and "features" in told[0] and "decoded images" in told[1]
    assert not list((cache_dir() / "images").glob("*"))  # nothing written
    assert not list((cache_dir() / "features").glob("*"))


def test_a_resumed_run_reads_the_store_its_audit_filled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from headstart.files import cache_dir
    from tests.conftest import make_image_folder

    monkeypatch.setenv("HEADSTART_CACHE", str(tmp_path / "cache"))
    folder = make_image_folder(tmp_path / "d", ("a", "b"), n=8, layout="split", n_val=3)
    (folder / "train" / "a" / "a_003.png").write_bytes(b"<html>")  # skipped by the audit
    weights = tiny_weights(tmp_path)
    with pytest.raises(Crash):
        train_run(_config(folder, weights, tmp_path / "run"), {"out": "cli"}, callbacks=[CrashAt()])
    (entry,) = (cache_dir() / "images").iterdir()
    resume_run(tmp_path / "run")
    assert list((cache_dir() / "images").iterdir()) == [entry]  # found again, not decoded again
