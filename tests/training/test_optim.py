import io
import math

import pytest
import torch

from headstart.config import Optimizer
from headstart.errors import ConfigError
from headstart.training.optim import build_optimizer, build_scheduler


def make_groups():
    w, b = torch.nn.Parameter(torch.zeros(2, 2)), torch.nn.Parameter(torch.zeros(2))
    return [
        {"name": "head", "params": [w], "lr": 1.0, "weight_decay": 0.1},
        {"name": "head/no_decay", "params": [b], "lr": 0.5, "weight_decay": 0.0},
    ]


@pytest.mark.parametrize(
    ("name", "cls"),
    [("sgd", torch.optim.SGD), (Optimizer.ADAM, torch.optim.Adam), ("adamw", torch.optim.AdamW)],
)
def test_build_optimizer_keeps_group_settings(name, cls):
    opt = build_optimizer(make_groups(), name, lr=9.0, momentum=0.9, weight_decay=0.3)
    assert isinstance(opt, cls)
    assert [g["lr"] for g in opt.param_groups] == [1.0, 0.5]
    assert [g["weight_decay"] for g in opt.param_groups] == [0.1, 0.0]
    assert [g["name"] for g in opt.param_groups] == ["head", "head/no_decay"]
    if cls is torch.optim.SGD:
        assert opt.param_groups[0]["nesterov"] and opt.param_groups[0]["momentum"] == 0.9
    else:  # float parameters on the CPU: one fused kernel
        assert all(g["fused"] for g in opt.param_groups)


def test_fused_adam_takes_the_same_steps_as_the_default():
    torch.manual_seed(0)
    results = []
    for fused in (True, False):
        groups = make_groups()
        if fused:
            opt = build_optimizer(groups, "adamw", lr=0.1, momentum=0.9, weight_decay=0.3)
        else:
            opt = torch.optim.AdamW(groups, lr=0.1, weight_decay=0.3)
        assert all(bool(g["fused"]) is fused for g in opt.param_groups)
        for step in range(3):
            for g in groups:
                for p in g["params"]:
                    p.grad = torch.full_like(p, 0.5 + step)
            opt.step()
        results.append([p.detach().clone() for g in groups for p in g["params"]])
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b)


def test_build_optimizer_unknown_name():
    with pytest.raises(ConfigError, match="use one of sgd, adam, adamw"):
        build_optimizer(make_groups(), "lion", lr=1.0, momentum=0.9, weight_decay=0.0)


def lrs(scheduler, steps):
    out = []
    for _ in range(steps):
        out.append(scheduler.optimizer.param_groups[0]["lr"])
        scheduler.optimizer.step()
        scheduler.step()
    return out


def test_scheduler_warmup_then_cosine():
    opt = build_optimizer(make_groups(), "sgd", lr=1.0, momentum=0.0, weight_decay=0.0)
    sched = build_scheduler(opt, total_steps=10, warmup_steps=2)
    values = lrs(sched, 10)
    expected = [1 / 3, 2 / 3] + [0.5 * (1 + math.cos(math.pi * s / 8)) for s in range(8)]
    assert values == pytest.approx(expected)
    assert values[2] == pytest.approx(1.0) and values[-1] < 0.05

    opt = build_optimizer(make_groups(), "sgd", lr=1.0, momentum=0.0, weight_decay=0.0)
    sched = build_scheduler(opt, total_steps=10, warmup_steps=2)
    lrs(sched, 5)  # every group follows the same factor, so discriminative ratios stay
    assert opt.param_groups[1]["lr"] == pytest.approx(opt.param_groups[0]["lr"] * 0.5)


def test_scheduler_caps_warmup_and_rejects_zero_steps():
    opt = build_optimizer(make_groups(), "sgd", lr=1.0, momentum=0.0, weight_decay=0.0)
    values = lrs(build_scheduler(opt, total_steps=4, warmup_steps=100), 4)
    assert values[2] == pytest.approx(1.0)  # warm-up capped at half the steps
    with pytest.raises(ConfigError):
        build_scheduler(opt, total_steps=0, warmup_steps=0)


def _curve(schedule, total=30, warmup=3):
    opt = build_optimizer(make_groups(), "sgd", lr=1.0, momentum=0.0, weight_decay=0.0)
    sched = build_scheduler(opt, total_steps=total, warmup_steps=warmup, schedule=schedule)
    return lrs(sched, total)


def test_every_schedule_starts_with_the_same_linear_warmup():
    for schedule in ("cosine", "step", "constant"):
        assert _curve(schedule)[:3] == pytest.approx([0.25, 0.5, 0.75]), schedule


def test_cosine_is_the_default_schedule():
    opt = build_optimizer(make_groups(), "sgd", lr=1.0, momentum=0.0, weight_decay=0.0)
    assert lrs(build_scheduler(opt, total_steps=30, warmup_steps=3), 30) == _curve("cosine")


def test_constant_schedule_holds_the_lr_after_warmup():
    assert _curve("constant")[3:] == [1.0] * 27


def test_step_schedule_drops_tenfold_after_each_third():
    values = _curve("step", total=33, warmup=3)  # 30 steps after the warm-up: thirds of 10
    assert values[3:13] == [1.0] * 10
    assert values[13:23] == pytest.approx([0.1] * 10)
    assert values[23:] == pytest.approx([0.01] * 10)


def test_onecycle_rises_from_a_25th_then_anneals_to_almost_nothing():
    values = _curve("onecycle", total=100, warmup=3)  # one-cycle's own rise: 30% of the steps
    peak = values.index(max(values))
    assert values[0] == pytest.approx(1 / 25) and peak == 30 and values[peak] == pytest.approx(1.0)
    assert all(a < b for a, b in zip(values[:peak], values[1 : peak + 1]))  # rising
    assert all(a >= b for a, b in zip(values[peak:], values[peak + 1 :]))  # then falling
    assert values[-1] == pytest.approx(1 / 25 / 1e4)
    longer = _curve("onecycle", total=100, warmup=45)  # a longer warm-up is the rise
    assert longer.index(max(longer)) == 45


def test_unknown_schedule_is_refused():
    opt = build_optimizer(make_groups(), "sgd", lr=1.0, momentum=0.0, weight_decay=0.0)
    with pytest.raises(ConfigError, match="use one of cosine, onecycle, step, constant"):
        build_scheduler(opt, total_steps=10, warmup_steps=0, schedule="linear")


@pytest.mark.parametrize("schedule", ["cosine", "onecycle", "step", "constant"])
def test_every_schedule_round_trips_through_a_weights_only_checkpoint(schedule):
    opt = build_optimizer(make_groups(), "adamw", lr=1.0, momentum=0.0, weight_decay=0.0)
    sched = build_scheduler(opt, total_steps=20, warmup_steps=4, schedule=schedule)
    lrs(sched, 7)
    buffer = io.BytesIO()
    torch.save({"opt": opt.state_dict(), "sched": sched.state_dict()}, buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    opt2 = build_optimizer(make_groups(), "adamw", lr=1.0, momentum=0.0, weight_decay=0.0)
    sched2 = build_scheduler(opt2, total_steps=20, warmup_steps=4, schedule=schedule)
    opt2.load_state_dict(state["opt"])
    sched2.load_state_dict(state["sched"])
    assert lrs(sched2, 13) == lrs(sched, 13)
