import pytest

from headstart.errors import ConfigError
from headstart.training.strategies import FINETUNE_LR_FACTOR, Phase, plan_phases

from .helpers import tiny_model


@pytest.fixture(scope="module")
def spec():
    return tiny_model()[1]


def plan(strategy, spec, *, epochs=4, head_epochs=3, unfreeze_stages=1, lr=0.01):
    return plan_phases(
        strategy, spec, epochs=epochs, head_epochs=head_epochs, unfreeze_stages=unfreeze_stages,
        lr=lr,
    )  # fmt: skip


def test_feature_extract(spec):
    assert plan("feature-extract", spec) == [Phase("head", 4, 0, 0.01)]


def test_partial(spec):
    assert plan("partial", spec, unfreeze_stages=2) == [Phase("partial", 4, 2, 0.01)]
    with pytest.raises(ConfigError, match=f"use 0..{spec.num_stages}"):
        plan("partial", spec, unfreeze_stages=spec.num_stages + 1)


def test_full(spec):
    assert plan("full", spec, epochs=3, lr=1e-3) == [Phase("full", 3, None, 1e-3)]


def test_two_phase(spec):
    head, full = plan("two-phase", spec, epochs=5, head_epochs=2)
    assert head == Phase("head", 2, 0, 0.01)
    assert full == Phase("full", 3, None, pytest.approx(0.01 * FINETUNE_LR_FACTOR))
    assert sum(p.epochs for p in (head, full)) == 5
    only_full = plan("two-phase", spec, epochs=5, head_epochs=0)
    assert [p.name for p in only_full] == ["full"]
