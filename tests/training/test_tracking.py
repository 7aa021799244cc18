import pytest

from headstart.errors import ConfigError
from headstart.training.tracking import BestTracker, EarlyStopping


def test_early_stopping_max_mode():
    stopper = EarlyStopping("val_acc", patience=2)
    assert stopper.mode == "max"
    assert [stopper.step(v) for v in (0.5, 0.6, 0.6, 0.55)] == [False, False, False, True]


def test_early_stopping_min_mode_with_delta_and_nan():
    stopper = EarlyStopping("val_loss", patience=2, min_delta=0.1)
    assert stopper.mode == "min"
    assert not stopper.step(1.0)
    assert not stopper.step(0.95)  # not better by min_delta
    assert stopper.step(float("nan"))


def test_early_stopping_disabled_and_reset():
    stopper = EarlyStopping("val_acc", patience=0)
    assert not any(stopper.step(0.1) for _ in range(10))
    stopper = EarlyStopping("val_acc", patience=1)
    stopper.step(0.9)
    stopper.reset()
    assert stopper.best is None and stopper.wait == 0
    assert not stopper.step(0.1)


def test_early_stopping_state_dict_round_trip():
    stopper = EarlyStopping("val_f1", patience=3)
    for value in (0.2, 0.4, 0.3):
        stopper.step(value)
    clone = EarlyStopping("val_acc", patience=1)
    clone.load_state_dict(stopper.state_dict())
    assert clone.state_dict() == stopper.state_dict()
    assert [clone.step(0.1), clone.step(0.1)] == [False, True]


def test_best_tracker():
    tracker = BestTracker("val_loss")
    assert tracker.update(1.0, 1) and tracker.update(0.5, 2)
    assert not tracker.update(0.5, 3) and not tracker.update(0.7, 4)
    assert (tracker.best, tracker.best_epoch) == (0.5, 2)
    clone = BestTracker("val_acc")
    clone.load_state_dict(tracker.state_dict())
    assert clone.state_dict() == tracker.state_dict()


def test_bad_mode():
    with pytest.raises(ConfigError, match="'min' or 'max'"):
        EarlyStopping("val_acc", mode="up")
