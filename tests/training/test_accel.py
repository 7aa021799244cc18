"""Speed settings trial: valid settings, cached per host and model, model left unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from headstart.errors import ConfigError
from headstart.training import accel
from headstart.training.accel import SpeedSettings, candidate_settings, tune_speed
from tests.training.helpers import tiny_model


def test_trial_returns_valid_settings_and_caches(tmp_path: Path, monkeypatch) -> None:
    model, _ = tiny_model()
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(2, 3, 32, 32)
    cache = tmp_path / "tuning.json"
    settings = tune_speed(model, x, key="tiny", steps=1, cache_file=cache)
    assert settings in candidate_settings("cpu")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # BN stats too
    assert model.training and all(p.grad is None for p in model.parameters())
    assert next(iter(json.loads(cache.read_text()).values()))["timings"]

    def fail(*args, **kwargs):
        raise AssertionError("the cached choice should be used")

    monkeypatch.setattr(accel, "time_settings", fail)
    assert tune_speed(model, x, key="tiny", steps=1, cache_file=cache) == settings


def test_inference_trial_and_autocast() -> None:
    model, _ = tiny_model()
    s = SpeedSettings(channels_last=True, autocast="bfloat16")
    assert accel.time_settings(model, torch.randn(2, 3, 32, 32), s, mode="infer", steps=1) > 0
    with pytest.raises(ConfigError, match="bfloat16"):
        SpeedSettings(autocast="int8")
