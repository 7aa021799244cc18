"""The one device check: what runs here is accepted, anything else is a one-line ConfigError."""

from __future__ import annotations

import pytest
import torch

from headstart.errors import ConfigError
from headstart.inference.device import available_devices, resolve_device

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")


@pytest.mark.parametrize("device", ["cpu", " cpu ", "cpu:0", torch.device("cpu")])
def test_cpu_is_always_there(device: str | torch.device) -> None:
    assert resolve_device(device) == torch.device("cpu")
    assert available_devices()[0] == "cpu"


@no_cuda
@pytest.mark.parametrize("device", ["cuda", "cuda:1", torch.device("cuda")])
def test_missing_cuda_says_what_is_available(device: str | torch.device) -> None:
    expected = r"not available: no usable CUDA GPU; use one of: auto, cpu"
    with pytest.raises(ConfigError, match=expected):
        resolve_device(device)


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="this machine has MPS")
def test_missing_mps_is_refused() -> None:
    with pytest.raises(ConfigError, match="'mps' is not available"):
        resolve_device("mps")


@pytest.mark.parametrize(
    ("device", "problem"),
    [
        ("meta", "cannot run a model"),
        ("xpu", "cannot run a model"),
        ("gpu", "is not a device name"),
        ("", "is not a device name"),
        ("cuda:x", "is not a device name"),
    ],
)
def test_odd_values_are_refused_in_one_line(device: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem) as info:
        resolve_device(device)
    assert "use one of: auto, cpu" in str(info.value) and "\n" not in str(info.value)


def test_cuda_devices_are_resolved_when_present(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two GPUs (faked: only the availability checks are patched, nothing runs on them)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    assert resolve_device("cuda") == torch.device("cuda", 0)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert available_devices()[:3] == ("cpu", "cuda:0", "cuda:1")
    expected = r"'cuda:2' is not available; use one of: auto, cpu, cuda:0"
    with pytest.raises(ConfigError, match=expected):
        resolve_device("cuda:2")


def test_best_device_prefers_cuda_then_mps_then_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    from headstart.inference.device import best_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert best_device() == torch.device("cpu")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert best_device() == torch.device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    assert best_device() == torch.device("cuda", 1)
