"""Report analysis: per-sample arrays, rows, data and training summaries, metrics.json."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from headstart.data.folders import DataSplits, Sample
from headstart.evaluation.analysis import (
    analyse,
    misclassified_rows,
    per_class_rows,
    report_doc,
    summarize_data,
    training_summary,
)
from headstart.evaluation.metrics import summarize
from headstart.evaluation.result import EvalResult

CLASSES = ["a", "b", "c"]
LOGITS = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 0.5]])
TARGETS = torch.tensor([0, 1, 2, 1])


def _result(metrics: dict | None = None) -> EvalResult:
    if metrics is None:
        metrics = summarize(LOGITS, TARGETS, CLASSES)
    return EvalResult(metrics, LOGITS, TARGETS, ("p0", "p1", "p2", "p3"))


def test_analyse_confidence_loss_and_metrics() -> None:
    analysis = analyse(_result(), CLASSES)
    probs = torch.softmax(LOGITS.double(), dim=1)
    np.testing.assert_array_equal(analysis.preds, [0, 1, 1, 2])
    np.testing.assert_allclose(analysis.confidence, probs.max(dim=1).values.numpy())
    expected = torch.nn.functional.cross_entropy(LOGITS.double(), TARGETS, reduction="none")
    np.testing.assert_allclose(analysis.losses, expected.numpy())
    metrics = analysis.metrics
    assert metrics["loss"] == pytest.approx(float(expected.mean()))
    assert metrics["balanced_acc"] == pytest.approx((1 + 0.5 + 0) / 3)
    assert metrics["num_images"] == 4 and metrics["ece"] == analysis.calibration.ece
    assert analysis.pairs == [("b", "c", 1), ("c", "b", 1)]


def test_analyse_computes_a_missing_summary() -> None:
    bare, full = analyse(_result({}), CLASSES), analyse(_result(), CLASSES)
    assert bare.metrics == full.metrics
    kept = analyse(_result({**summarize(LOGITS, TARGETS, CLASSES), "loss": 9.0}), CLASSES)
    assert kept.metrics["loss"] == 9.0  # the evaluation's own loss is kept


def test_rows() -> None:
    analysis = analyse(_result(), CLASSES)
    assert [r["class"] for r in per_class_rows(analysis)] == CLASSES
    assert per_class_rows(analysis)[1]["recall"] == pytest.approx(0.5)
    wrong = misclassified_rows(analysis)
    assert [(r["path"], r["true"], r["predicted"]) for r in wrong] == [
        ("p2", "c", "b"),  # loss 3.1 first
        ("p3", "b", "c"),
    ]


def test_summarize_data_from_splits_and_dicts() -> None:
    splits = DataSplits(
        classes=("cat", "dog"),
        train=(Sample("a", 0), Sample("b", 1), Sample("c", 1)),
        val=(Sample("d", 0),),
        test=(),
        origin={},
    )
    assert summarize_data(splits, splits.classes) == {
        "train": {"cat": 1, "dog": 2}, "val": {"cat": 1, "dog": 0}, "test": {"cat": 0, "dog": 0},
    }  # fmt: skip
    assert summarize_data({"train": {"cat": 3}}, ["cat"]) == {"train": {"cat": 3}}
    assert summarize_data(None, ["cat"]) == {}


def test_training_summary_reads_the_last_epoch() -> None:
    rows = [
        {"epoch": "1", "train_loss": "1.0", "train_acc": "0.5", "val_loss": "0.9", "val_acc": "0.6",
         "val_f1": "0.55"},
        {"epoch": "2", "train_loss": "0.5", "train_acc": "0.8", "val_loss": "0.7", "val_acc": "0.7",
         "val_f1": "0.65"},
    ]  # fmt: skip
    summary = training_summary(rows)
    assert summary["train"] == {"epoch": 2.0, "loss": 0.5, "acc": 0.8}
    assert summary["val"] == {"epoch": 2.0, "loss": 0.7, "acc": 0.7, "f1": 0.65}
    assert training_summary([]) == {}


def test_report_doc_puts_extra_first() -> None:
    doc = report_doc(
        analyse(_result(), CLASSES), title="T", extra={"model": "m", "title": "ignored"},
        skipped=[("x.txt", "not an image"), "y.png"], data_summary={"train": [1, 2, 3]},
    )  # fmt: skip
    assert list(doc)[:3] == ["model", "title", "metrics"] and doc["title"] == "T"
    assert doc["skipped"] == [
        {"path": "x.txt", "reason": "not an image"}, {"path": "y.png", "reason": ""},
    ]  # fmt: skip
    assert doc["data"] == {"train": {"a": 1, "b": 2, "c": 3}}
    assert doc["num_misclassified"] == 2 and doc["config"] is None and doc["training"] == {}
    assert doc["top_confused_pairs"][0] == {"true": "b", "predicted": "c", "count": 1}
    assert doc["calibration"]["bins"] == 15 and sum(doc["calibration"]["counts"]) == 4
