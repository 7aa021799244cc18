import pytest

from headstart.config import TrainConfig
from headstart.errors import ConfigError
from headstart.training.strategies import FINETUNE_LR_FACTOR, Phase, plan_phases

from .helpers import tiny_model


@pytest.fixture(scope="module")
def spec():
    return tiny_model()[1]


def test_feature_extract(spec):
    phases = plan_phases(TrainConfig(strategy="feature-extract", epochs=4, lr=0.01), spec)
    assert phases == [Phase("head", 4, 0, 0.01)]


def test_partial(spec):
    config = TrainConfig(strategy="partial", epochs=4, unfreeze_stages=2, lr=0.01)
    assert plan_phases(config, spec) == [Phase("partial", 4, 2, 0.01)]
    too_many = config.replace(unfreeze_stages=spec.num_stages + 1)
    with pytest.raises(ConfigError, match=f"use 0..{spec.num_stages}"):
        plan_phases(too_many, spec)


def test_full(spec):
    assert plan_phases(TrainConfig(strategy="full", epochs=3), spec) == [
        Phase("full", 3, None, 1e-3)
    ]


def test_two_phase(spec):
    config = TrainConfig(strategy="two-phase", epochs=5, head_epochs=2, lr=0.01)
    head, full = plan_phases(config, spec)
    assert head == Phase("head", 2, 0, 0.01)
    assert full == Phase("full", 3, None, pytest.approx(0.01 * FINETUNE_LR_FACTOR))
    assert sum(p.epochs for p in (head, full)) == config.epochs
    only_full = plan_phases(config.replace(head_epochs=0), spec)
    assert [p.name for p in only_full] == ["full"]
