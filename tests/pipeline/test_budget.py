"""The budget planner on simulated speeds: plans fit, use the time well, keep the user's choices."""

from __future__ import annotations

import pytest

from headstart.errors import ConfigError
from headstart.pipeline.budget import (
    BudgetPlan,
    Speeds,
    Workload,
    estimate_seconds,
    expected_score,
    plan_budget,
)


def speeds(scale: float = 1.0) -> Speeds:
    """About this machine's EfficientNet-Lite0: 135 img/s training at 96 px, rates ~ 1/pixels."""
    return Speeds(
        train=lambda s: scale * 135 * (96 / s) ** 1.6,
        infer=lambda s: scale * 650 * (96 / s) ** 1.7,
        decode=2000 * scale,
    )


SMALL = Workload(n_train=1000, n_val=1000, n_eval=1000)
FULL = Workload(n_train=54_000, n_val=6_000, n_eval=10_000)


@pytest.mark.parametrize(("work", "left"), [(SMALL, 45), (SMALL, 300), (FULL, 1700), (FULL, 7000)])
def test_the_plan_fits_and_uses_the_time(work: Workload, left: float) -> None:
    plan = plan_budget(left, work, speeds(), model_size=224, budget=left + 15)
    assert plan.total <= left
    assert plan.total >= 0.6 * left  # not a plan that leaves most of the time unused
    again = sum(estimate_seconds(work, speeds(), image_size=plan.image_size,
                                 head_epochs=plan.head_epochs,
                                 full_epochs=plan.epochs - plan.head_epochs).values())  # fmt: skip
    assert again == pytest.approx(plan.total)


def test_more_time_never_gives_a_worse_plan() -> None:
    scores = []
    for left in (40, 80, 160, 320, 640, 1280):
        plan = plan_budget(left, SMALL, speeds(), model_size=224)
        scores.append(expected_score(plan.image_size, plan.epochs - plan.head_epochs, 224))
    assert scores == sorted(scores) and scores[-1] > scores[0]


def test_a_faster_machine_gets_more_epochs_or_pixels() -> None:
    slow = plan_budget(300, SMALL, speeds(1.0), model_size=224)
    fast = plan_budget(300, SMALL, speeds(4.0), model_size=224)
    assert (fast.image_size, fast.epochs) > (slow.image_size, slow.epochs)


def test_the_users_settings_win() -> None:
    plan = plan_budget(300, SMALL, speeds(), model_size=224, fixed={"image_size": 64,
                                                                   "batch_size": 16})  # fmt: skip
    assert (plan.image_size, plan.batch_size) == (64, 16)
    plan = plan_budget(300, SMALL, speeds(), model_size=224, fixed={"epochs": 5})
    assert plan.epochs == 5 and plan.strategy == "two-phase"
    plan = plan_budget(300, SMALL, speeds(), model_size=224, fixed={"strategy": "full"})
    assert plan.strategy == "full" and plan.head_epochs == 0


def test_only_the_head_fits_then_feature_extract() -> None:
    plan = plan_budget(90, FULL, speeds(), model_size=224)
    assert plan.strategy == "feature-extract" and plan.epochs >= 1
    assert plan.total <= 90


def test_no_plan_fits_says_the_least_budget() -> None:
    with pytest.raises(ConfigError, match="give a budget of at least"):
        plan_budget(2, FULL, speeds(), model_size=224, budget=20)


def test_the_plan_reads_well() -> None:
    plan = plan_budget(300, SMALL, speeds(), model_size=224, budget=320)
    text = plan.describe()
    assert text.startswith("budget plan: two-phase,") and "of 320s" in text
    assert isinstance(plan, BudgetPlan) and set(plan.settings()) >= {"image_size", "epochs"}
