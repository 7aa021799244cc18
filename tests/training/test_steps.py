"""Gradient accumulation and clipping in one training epoch (``train_epoch`` options)."""

from __future__ import annotations

import pytest
import torch
from lightning_fabric import Fabric
from torch import nn

from headstart.speed.settings import SpeedSettings
from headstart.training.loop import StepOptions, train_epoch


class NormRecorder(torch.optim.SGD):
    """SGD that records the global gradient norm it steps with."""

    norms: list[float]

    def step(self, closure=None):
        grads = [p.grad for g in self.param_groups for p in g["params"] if p.grad is not None]
        self.norms.append(float(torch.linalg.vector_norm(torch.stack([
            torch.linalg.vector_norm(g) for g in grads]))))  # fmt: skip
        return super().step(closure)


def _data(n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 5, generator=g) * 3, torch.randint(0, 3, (n,), generator=g)


def _train(batches, *, accumulate=1, clip_grad=0.0, lr=0.1):
    """One epoch of a seeded linear model (no BatchNorm, no dropout); weights and step norms."""
    torch.manual_seed(0)
    model = nn.Linear(5, 3)
    fabric = Fabric(accelerator="cpu", devices=1)
    optimizer = NormRecorder(model.parameters(), lr=lr, momentum=0.9)
    optimizer.norms = []
    module, wrapped = fabric.setup(model, optimizer)
    scheduler = torch.optim.lr_scheduler.LambdaLR(wrapped, lambda s: 1.0 / (s + 1))
    calls = []
    train_epoch(
        fabric, module, batches, wrapped, scheduler, nn.CrossEntropyLoss(),
        speed=SpeedSettings("cpu"), on_step=lambda p, loss, s: calls.append((p.batches, p.steps)),
        options=StepOptions(accumulate=accumulate, clip_grad=clip_grad),
    )  # fmt: skip
    return model.state_dict(), optimizer.norms, scheduler.last_epoch, calls


def test_accumulating_two_batches_is_one_step_of_the_double_batch():
    x, y = _data(16)
    small = [(x[i : i + 4], y[i : i + 4]) for i in range(0, 16, 4)]
    large = [(x[i : i + 8], y[i : i + 8]) for i in range(0, 16, 8)]
    accumulated, norms, scheduled, calls = _train(small, accumulate=2)
    plain, plain_norms, plain_scheduled, _ = _train(large)
    for name in plain:
        torch.testing.assert_close(accumulated[name], plain[name], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(torch.tensor(norms), torch.tensor(plain_norms))
    assert scheduled == plain_scheduled == 2  # the schedule counts optimizer steps
    assert calls == [(2, 1), (4, 2)]  # the hook runs after each optimizer step


def test_a_last_short_group_is_averaged_over_its_own_batches():
    x, y = _data(12)
    small = [(x[i : i + 4], y[i : i + 4]) for i in range(0, 12, 4)]  # groups of 2 + 1
    grouped = [(x[:8], y[:8]), (x[8:], y[8:])]
    accumulated, _, scheduled, calls = _train(small, accumulate=2)
    plain, _, _, _ = _train(grouped)
    for name in plain:
        torch.testing.assert_close(accumulated[name], plain[name], rtol=1e-5, atol=1e-6)
    assert scheduled == 2 and calls == [(2, 1), (3, 2)]


def test_clipping_bounds_the_global_gradient_norm():
    x, y = _data(16)
    batches = [(x[i : i + 4] * 100, y[i : i + 4]) for i in range(0, 16, 4)]
    _, unclipped, _, _ = _train(batches, lr=1e-4)
    _, clipped, _, _ = _train(batches, lr=1e-4, clip_grad=0.5)
    assert min(unclipped) > 0.5
    assert max(clipped) <= 0.5 * (1 + 1e-5)
    assert clipped[0] == pytest.approx(0.5, rel=1e-5)
