"""fit_run / resume_run: two-phase with the head phase on cached features, and exact resume."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from headstart.config import TrainConfig
from headstart.fitting import fit_run, resume_run
from headstart.training import load_checkpoint
from tests.e2e_helpers import TINY_MODEL, tiny_weights


class Crash(Exception):
    """Stands in for a kill during the full phase."""


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
    result = fit_run(_config(folder, weights, tmp_path / "run"), {"out": "cli"})
    assert [row["phase"] for row in result.history] == ["head", "full", "full"]
    assert any("head phase trains on un-augmented features" in n for n in result.notes)
    assert any(n.startswith("speed: full phase") for n in result.notes)
    assert (tmp_path / "run" / "metrics.csv").read_text().count("\n") == 1 + 3
    last = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert last["epoch"] == 3 and [r["phase"] for r in last["history"]] == ["head", "full", "full"]
    # the same run through the image loop (no caches) trains the same phases
    plain = fit_run(
        _config(folder, weights, tmp_path / "plain", feature_cache=False), {"out": "cli"}
    )
    assert [row["phase"] for row in plain.history] == ["head", "full", "full"]
    assert not any("feature cache" in n for n in plain.notes)


def test_killed_in_the_full_phase_resumes_bitwise(data, tmp_path: Path) -> None:
    folder, weights = data
    reference = fit_run(_config(folder, weights, tmp_path / "ref"), {"out": "cli"})

    def crash(info: dict) -> None:
        raise Crash  # at the first step of the full phase: only the phase-start checkpoint exists

    with pytest.raises(Crash):
        fit_run(_config(folder, weights, tmp_path / "run"), {"out": "cli"}, on_batch=crash)
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert (state["phase_index"], state["epoch_in_phase"], state["epoch"]) == (1, 0, 1)
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
    from headstart.training import runner
    from headstart.training.accel import SpeedSettings

    folder, weights = data
    bf16 = SpeedSettings("cpu", channels_last=True, autocast="bfloat16")
    monkeypatch.setattr(runner, "tune_speed", lambda *args, **kwargs: bf16)

    def crash(info: dict) -> None:
        raise Crash

    for name in ("run", "again"):
        with pytest.raises(Crash):
            fit_run(_config(folder, weights, tmp_path / name), {"out": "cli"}, on_batch=crash)
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["speed"] == bf16.to_dict()
    monkeypatch.setattr(runner, "tune_speed", lambda *args, **kwargs: SpeedSettings("cpu"))
    fp32 = resume_run(tmp_path / "run", {"precision": "32-true"})
    assert fp32.notes[-1].startswith("speed: full phase fp32")  # chosen again, not bf16
    kept = resume_run(tmp_path / "again")
    assert kept.notes[-1].startswith("speed: full phase bf16")  # from the checkpoint
