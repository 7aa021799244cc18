import numpy as np
import pytest
import torch

from headstart.evaluation.metrics import (
    accuracy,
    confusion_matrix,
    macro_f1,
    per_class_accuracy,
    precision_recall_f1,
    summarize,
    top_k_accuracy,
)

TARGETS = [0, 0, 1, 1, 2, 2]
PREDS = [0, 1, 1, 1, 0, 2]


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
    np.testing.assert_allclose(per_class_accuracy(PREDS, TARGETS, 4), recall)


def test_macro_f1_skips_classes_absent_everywhere():
    # class 3 is neither a target nor predicted: left out, like sklearn's default labels
    assert macro_f1(PREDS, TARGETS, 4) == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    # class 1 predicted but never a target: F1 0 counts (sklearn zero_division=0 gives 1/3)
    assert macro_f1([0, 1], [0, 0], 2) == pytest.approx(1 / 3)
    assert macro_f1([], [], 3) == 0.0


def test_macro_f1_matches_sklearn_when_installed():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    t, p = rng.integers(0, 5, 50), rng.integers(0, 4, 50)
    expected = metrics.f1_score(t, p, average="macro", zero_division=0)
    assert macro_f1(p, t, 5) == pytest.approx(expected)


def test_top_k_accuracy():
    logits = torch.tensor([[3.0, 2.0, 1.0], [1.0, 2.0, 3.0]])
    assert top_k_accuracy(logits, [1, 0], k=1) == 0.0
    assert top_k_accuracy(logits, [1, 0], k=2) == 0.5
    assert top_k_accuracy(logits, [1, 0], k=5) == 1.0


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
