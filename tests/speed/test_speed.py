"""Speed settings trial: valid settings, cached per host and model, model left unchanged."""

from __future__ import annotations

import ctypes
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from headstart.errors import ConfigError
from headstart.speed import allocator, depthwise, settings, trial
from headstart.speed.settings import SpeedSettings
from headstart.speed.trial import candidate_settings, tune_speed
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

    monkeypatch.setattr(trial, "time_settings", fail)
    assert tune_speed(model, x, key="tiny", steps=1, cache_file=cache) == settings


def test_inference_trial_and_autocast() -> None:
    model, _ = tiny_model()
    s = SpeedSettings(channels_last=True, autocast="bfloat16")
    assert trial.time_settings(model, torch.randn(2, 3, 32, 32), s, mode="infer", steps=1) > 0
    with pytest.raises(ConfigError, match="bfloat16"):
        SpeedSettings(autocast="int8")


def _depthwise_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.Conv2d(8, 8, 3, padding=1, groups=8),  # depthwise
        nn.BatchNorm2d(8),
        nn.Conv2d(8, 4, 1),
    )


def test_float32_depthwise_swaps_only_depthwise_layers_and_undoes() -> None:
    model = _depthwise_net()
    keys = list(model.state_dict())
    x = torch.randn(2, 3, 8, 8)
    before = model(x)
    assert depthwise.set_float32_depthwise(model, True) == 1
    assert type(model[1]) is not nn.Conv2d and isinstance(model[1], nn.Conv2d)
    assert type(model[0]) is nn.Conv2d and type(model[3]) is nn.Conv2d
    assert list(model.state_dict()) == keys
    assert torch.equal(model(x), before)  # outside autocast: the same computation
    with torch.autocast("cpu", dtype=torch.bfloat16):
        seen = {}
        hook = model[1].register_forward_hook(lambda m, i, o: seen.update(dtype=o.dtype))
        out = model(x)
        hook.remove()
    assert seen["dtype"] == torch.float32 and out.dtype == torch.bfloat16
    assert depthwise.set_float32_depthwise(model, False) == 0
    assert all(type(m) in (nn.Conv2d, nn.BatchNorm2d) for m in model)


def test_prepare_model_sets_and_resets_layout_and_depthwise() -> None:
    model = _depthwise_net()
    fast = SpeedSettings(channels_last=True, autocast="bfloat16", float32_depthwise=True)
    fast.prepare_model(model)
    assert model[1].weight.is_contiguous(memory_format=torch.channels_last)
    assert type(model[1]) is not nn.Conv2d
    SpeedSettings().prepare_model(model)
    assert model[1].weight.is_contiguous() and type(model[1]) is nn.Conv2d
    assert settings.describe(fast) == "bf16 (depthwise convolutions fp32) + channels-last"


def test_training_candidates() -> None:
    cpu = trial.training_candidates("cpu", conv=True, depthwise=True)
    assert cpu[0] == SpeedSettings("cpu", channels_last=True)  # float32 first: the fallback
    assert {(s.autocast, s.float32_depthwise) for s in cpu} == {
        (None, False),
        ("bfloat16", False),
        ("bfloat16", True),
    }
    assert all(s.channels_last for s in cpu)
    cuda = trial.training_candidates("cuda", conv=True, bf16_supported=False)
    assert {s.channels_last for s in cuda} == {False, True} and not any(s.autocast for s in cuda)
    assert trial.training_candidates("mps", conv=False) == [SpeedSettings("mps")]


def test_interleaved_trial_keeps_the_model_and_rng(monkeypatch) -> None:
    model = _depthwise_net()
    model.train()
    model[2].eval()  # a frozen BatchNorm layer stays in eval mode
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(2, 3, 8, 8)
    rng = torch.get_rng_state()
    order: list[SpeedSettings] = []
    real_step = trial._step

    def step(run, x, settings, mode):
        order.append(settings)
        assert not model[2].training
        real_step(run, x, settings, mode)

    monkeypatch.setattr(trial, "_step", step)
    candidates = trial.training_candidates("cpu", conv=True, depthwise=True)
    timings = trial.time_candidates(model, x, candidates, mode="train", steps=2)
    assert [s for _, s in timings] == candidates
    assert order == candidates + candidates + candidates  # warm-ups, then rounds in turn
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert model.training and not model[2].training
    assert all(type(m) in (nn.Conv2d, nn.BatchNorm2d) for m in model)


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
                     "uordblks", "fordblks", "keepcost")
    ]  # fmt: skip


def _mmapped_bytes(libc) -> int:
    libc.mallinfo2.restype = _MallInfo2
    return libc.mallinfo2().hblkhd


def test_keep_freed_memory_serves_large_blocks_from_the_heap() -> None:
    libc = allocator._glibc()
    if libc is None or not hasattr(libc, "mallinfo2"):
        pytest.skip("needs glibc >= 2.33 (mallinfo2)")
    size = 64 * 1024 * 1024
    before = _mmapped_bytes(libc)
    block = torch.empty(size, dtype=torch.uint8)
    assert _mmapped_bytes(libc) >= before + size  # glibc's default: a fresh mmap
    del block
    with allocator.keep_freed_memory() as active, allocator.keep_freed_memory():  # re-entrant
        assert active
        before = _mmapped_bytes(libc)
        block = torch.empty(size, dtype=torch.uint8)
        assert _mmapped_bytes(libc) < before + size  # from the heap, kept for reuse
        del block
    block = torch.empty(size, dtype=torch.uint8)  # defaults again after leaving
    assert _mmapped_bytes(libc) >= before + size
    del block
