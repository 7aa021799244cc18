import pytest

from headstart.errors import ConfigError
from headstart.training.strategies import FINETUNE_LR_FACTOR, Phase, describe_split, plan_phases

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


@pytest.mark.parametrize(
    ("epochs", "head_epochs", "expected"),
    [
        (1, 3, [("head", 1)]),  # one epoch: the head only, not a fresh head's gradients in the body
        (2, 3, [("head", 1), ("full", 1)]),
        (3, 3, [("head", 2), ("full", 1)]),
        (4, 3, [("head", 3), ("full", 1)]),  # from here on, what --head-epochs asks
        (10, 3, [("head", 3), ("full", 7)]),  # the default run, as before
        (1, 0, [("full", 1)]),
    ],
)
def test_two_phase_takes_every_number_of_epochs(spec, epochs, head_epochs, expected):
    phases = plan("two-phase", spec, epochs=epochs, head_epochs=head_epochs)
    assert [(p.name, p.epochs) for p in phases] == expected
    assert sum(p.epochs for p in phases) == epochs


def test_describe_split_says_when_the_head_got_fewer_epochs():
    assert describe_split(10, 3) is None and describe_split(4, 3) is None
    assert describe_split(1, 3) == (
        "--epochs 1 trains the head only; the body fine-tunes from --epochs 2 on"
    )
    assert describe_split(3, 3) == (
        "--epochs 3 leaves 2 of the 3 --head-epochs, so that 1 epoch fine-tunes the body"
    )


def test_finetune_lr_factor_sets_the_second_phase_rate(spec):
    phases = plan_phases("two-phase", spec, epochs=4, head_epochs=1, unfreeze_stages=1, lr=0.02,
                         finetune_lr_factor=0.5)  # fmt: skip
    assert [p.lr for p in phases] == [0.02, pytest.approx(0.01)]
