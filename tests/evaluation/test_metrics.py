"""Metrics: hand-computed cases, calibration, confused pairs, and scikit-learn where it has them."""

from __future__ import annotations

import warnings
from types import ModuleType

import numpy as np
import pytest
import torch

from headstart.evaluation.metrics import (
    accuracy,
    balanced_accuracy,
    calibration_bins,
    confusion_matrix,
    expected_calibration_error,
    macro_f1,
    normalize_rows,
    precision_recall_f1,
    summarize,
    top_confused_pairs,
    top_k_accuracy,
    weighted_f1,
)

TARGETS = [0, 0, 1, 1, 2, 2]
PREDS = [0, 1, 1, 1, 0, 2]


@pytest.fixture(scope="module")
def sk() -> ModuleType:
    return pytest.importorskip(
        "sklearn.metrics", reason="scikit-learn is not installed: no comparison with it"
    )


def _random_labels(seed: int, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Targets that miss the last class and predictions that miss another: zero divisions."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, num_classes - 1, 60), rng.integers(1, num_classes, 60)


def test_accuracy_and_confusion_matrix():
    assert accuracy(torch.tensor(PREDS), torch.tensor(TARGETS)) == pytest.approx(4 / 6)
    cm = confusion_matrix(PREDS, TARGETS, 4)
    expected = [[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]]
    np.testing.assert_array_equal(cm, expected)  # rows: true, columns: predicted


def test_precision_recall_f1_hand_computed():
    precision, recall, f1, support = precision_recall_f1(PREDS, TARGETS, 4)
    np.testing.assert_allclose(precision, [0.5, 2 / 3, 1.0, 0.0])
    np.testing.assert_allclose(recall, [0.5, 1.0, 0.5, 0.0])
    np.testing.assert_allclose(f1, [0.5, 0.8, 2 / 3, 0.0])
    np.testing.assert_array_equal(support, [2, 2, 2, 0])


def test_macro_f1_skips_classes_absent_everywhere():
    # class 3 is neither a target nor predicted: left out, like sklearn's default labels
    assert macro_f1(PREDS, TARGETS, 4) == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    # class 1 predicted but never a target: F1 0 counts (sklearn zero_division=0 gives 1/3)
    assert macro_f1([0, 1], [0, 0], 2) == pytest.approx(1 / 3)
    assert macro_f1([], [], 3) == 0.0


def test_weighted_f1_and_balanced_accuracy_hand_computed():
    assert weighted_f1(PREDS, TARGETS, 4) == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert balanced_accuracy(PREDS, TARGETS, 4) == pytest.approx((0.5 + 1.0 + 0.5) / 3)
    # support weights: class 0 has 3 images (F1 0.8), class 1 one (F1 0)
    assert weighted_f1([0, 0, 0, 0], [0, 0, 0, 1], 2) == pytest.approx(3 / 4 * 6 / 7)
    assert balanced_accuracy([0, 1], [0, 0], 3) == pytest.approx(0.5)  # classes 1, 2: no targets
    assert weighted_f1([], [], 2) == 0.0 and balanced_accuracy([], [], 2) == 0.0


@pytest.mark.parametrize("seed", [0, 1])
def test_per_class_metrics_match_sklearn(sk: ModuleType, seed: int):
    t, p = _random_labels(seed, 5)
    expected = sk.precision_recall_fscore_support(t, p, labels=range(5), zero_division=0)
    for ours, theirs in zip(precision_recall_f1(p, t, 5), expected):
        np.testing.assert_allclose(ours, theirs)
    expected_cm = sk.confusion_matrix(t, p, labels=range(5))
    np.testing.assert_array_equal(confusion_matrix(p, t, 5), expected_cm)
    assert accuracy(p, t) == pytest.approx(sk.accuracy_score(t, p))


@pytest.mark.parametrize("seed", [0, 1])
def test_averaged_metrics_match_sklearn(sk: ModuleType, seed: int):
    t, p = _random_labels(seed, 5)
    assert macro_f1(p, t, 5) == pytest.approx(sk.f1_score(t, p, average="macro", zero_division=0))
    expected = sk.f1_score(t, p, average="weighted", zero_division=0)
    assert weighted_f1(p, t, 5) == pytest.approx(expected)
    with warnings.catch_warnings():  # "y_pred contains classes not in y_true"
        warnings.simplefilter("ignore", UserWarning)
        expected = sk.balanced_accuracy_score(t, p)
    assert balanced_accuracy(p, t, 5) == pytest.approx(expected)


def test_top_k_accuracy():
    logits = torch.tensor([[3.0, 2.0, 1.0], [1.0, 2.0, 3.0]])
    assert top_k_accuracy(logits, [1, 0], k=1) == 0.0
    assert top_k_accuracy(logits, [1, 0], k=2) == 0.5
    assert top_k_accuracy(logits, [1, 0], k=5) == 1.0


def test_top_k_accuracy_matches_sklearn(sk: ModuleType):
    rng = np.random.default_rng(0)
    logits, t = rng.normal(size=(40, 7)), rng.integers(0, 7, 40)
    expected = sk.top_k_accuracy_score(t, logits, k=5, labels=range(7))
    assert top_k_accuracy(logits, t, 5) == pytest.approx(expected)


def test_normalize_rows_keeps_empty_rows_zero() -> None:
    cm = np.array([[3, 1], [0, 0]])
    np.testing.assert_allclose(normalize_rows(cm), [[0.75, 0.25], [0.0, 0.0]])


def test_normalize_rows_matches_sklearn(sk: ModuleType) -> None:
    t, p = _random_labels(0, 5)
    expected = sk.confusion_matrix(t, p, labels=range(5), normalize="true")
    np.testing.assert_allclose(normalize_rows(confusion_matrix(p, t, 5)), np.nan_to_num(expected))


def test_top_confused_pairs() -> None:
    cm = np.array([[5, 2, 0], [4, 5, 1], [0, 0, 9]])
    assert top_confused_pairs(cm, ["a", "b", "c"], k=2) == [("b", "a", 4), ("a", "b", 2)]
    assert top_confused_pairs(np.eye(3, dtype=int), ["a", "b", "c"]) == []


def test_top_confused_pairs_ties_keep_matrix_order() -> None:
    cm = np.array([[0, 1, 1], [1, 0, 0], [0, 0, 0]])
    assert top_confused_pairs(cm, ["a", "b", "c"]) == [("a", "b", 1), ("a", "c", 1), ("b", "a", 1)]


def test_ece_is_zero_for_perfect_calibration() -> None:
    conf = [0.8] * 10 + [0.3] * 10
    correct = [True] * 8 + [False] * 2 + [True] * 3 + [False] * 7
    assert expected_calibration_error(conf, correct) == pytest.approx(0.0, abs=1e-12)


def test_ece_of_constant_overconfidence() -> None:
    conf = np.full(10, 0.9)
    correct = np.array([True] * 6 + [False] * 4)
    assert expected_calibration_error(conf, correct) == pytest.approx(0.3)


def test_ece_weights_bins_by_count() -> None:
    # bin of 0.95: 3 images, accuracy 1/3 (gap 0.6167); bin of 0.5: 1 image, correct (gap 0.5)
    conf = [0.95, 0.95, 0.95, 0.5]
    correct = [True, False, False, True]
    expected = 3 / 4 * abs(1 / 3 - 0.95) + 1 / 4 * abs(1 - 0.5)
    assert expected_calibration_error(conf, correct) == pytest.approx(expected)


def test_calibration_bins_edges() -> None:
    cal = calibration_bins([0.0, 1.0, 1 / 15 + 1e-9], [True, True, False], n_bins=15)
    assert len(cal.edges) == 16 and cal.counts.sum() == 3
    assert cal.counts[0] == 1 and cal.counts[1] == 1 and cal.counts[14] == 1
    with pytest.raises(ValueError):
        calibration_bins([0.5], [True, False])


def test_calibration_of_no_predictions() -> None:
    cal = calibration_bins([], [])
    assert cal.ece == 0.0 and cal.counts.sum() == 0 and not cal.accuracy.any()


def test_summarize_structure():
    logits = torch.nn.functional.one_hot(torch.tensor(PREDS), 4).float()
    result = summarize(logits, TARGETS, ["a", "b", "c", "d"])
    assert result["acc"] == pytest.approx(4 / 6)
    assert "top5" not in result
    assert result["per_class"]["d"] == {
        "accuracy": 0.0,
        "precision": 0.0,
        "recall": 0.0,
        "f1": 0.0,
        "support": 0,
    }
    assert result["confusion_matrix"][2] == [1, 0, 1, 0]
    names = [str(i) for i in range(7)]
    assert "top5" in summarize(torch.randn(10, 7), torch.arange(10) % 7, names)


def test_summarize_rejects_wrong_class_count():
    with pytest.raises(ValueError, match="3 classes"):
        summarize(torch.randn(4, 2), [0, 1, 0, 1], ["a", "b", "c"])
