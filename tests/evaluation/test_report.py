"""The evaluation report: files, contents, calibration, self-contained HTML (and a real browser)."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from headstart.data.folders import DataSplits, Sample
from headstart.evaluation.metrics import summarize
from headstart.evaluation.report import (
    calibration_bins,
    expected_calibration_error,
    summarize_data,
    top_confused_pairs,
    write_report,
)
from headstart.evaluation.result import EvalResult

ALWAYS = (
    "report.html", "report.md", "metrics.json", "per_class.csv", "confusion_matrix.csv",
    "confusion_matrix_normalized.csv", "misclassified.csv", "confusion_matrix.png",
    "confusion_matrix_normalized.png", "calibration.png",
)  # fmt: skip
HISTORY = "epoch,phase,train_loss,train_acc,val_loss,val_acc,val_f1,lr,seconds,images_per_s\n" + (
    "".join(
        f"{e},{'head' if e <= 2 else 'full'},{1 / e},{1 - 0.4 / e},{1.1 / e},{1 - 0.5 / e},"
        f"{1 - 0.55 / e},{0.001 if e <= 2 else 0.0001},1.5,40\n"
        for e in range(1, 6)
    )
)


def _result(logits: np.ndarray, targets: list[int], classes: list[str], paths=()) -> EvalResult:
    t, scores = torch.tensor(targets), torch.tensor(logits, dtype=torch.float32)
    return EvalResult(summarize(scores, t, classes), scores, t, tuple(paths))


def _image_paths(root: Path, classes: list[str], n: int, factory: Callable[..., Path]):
    factory(root, classes, n=n, size=(20, 16))
    return [str(root / c / f"{c}_{i:03d}.png") for c in classes for i in range(n)]


def _check_self_contained(text: str, num_images: int) -> None:
    assert "http://" not in text and "https://" not in text
    assert not re.search(r"""(src|href)\s*=\s*(?!["']?data:)""", text)
    assert "file:" not in text
    assert text.count('src="data:image/png;base64,') == num_images


# ----------------------------------------------------------------------------- calibration


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


# ----------------------------------------------------------------------------- helpers


def test_top_confused_pairs() -> None:
    cm = np.array([[5, 2, 0], [4, 5, 1], [0, 0, 9]])
    assert top_confused_pairs(cm, ["a", "b", "c"], k=2) == [("b", "a", 4), ("a", "b", 2)]
    assert top_confused_pairs(np.eye(3, dtype=int), ["a", "b", "c"]) == []


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


# ----------------------------------------------------------------------------- whole reports


@pytest.fixture(scope="module")
def hundred_class_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A report of 100 classes, one image each, about 70 % correct."""
    from tests.conftest import make_image_folder

    root = tmp_path_factory.mktemp("hundred")
    classes = [f"class_{i:03d}" for i in range(100)]
    paths = _image_paths(root / "data", classes, 1, make_image_folder)
    rng = np.random.default_rng(0)
    targets = list(range(100))
    logits = rng.normal(size=(100, 100)) + 2.5 * np.eye(100)
    write_report(root / "report", _result(logits, targets, classes, paths), classes,
                 data_summary={"train": [4] * 100, "val": [1] * 100})  # fmt: skip
    return root / "report"


def test_two_class_report(tmp_path: Path, image_folder_factory: Callable[..., Path]) -> None:
    classes = ["cat", "dog"]
    paths = _image_paths(tmp_path / "data", classes, 3, image_folder_factory)
    logits = np.array([[2.0, 0.0], [1.0, 0.0], [0.0, 3.0], [0.0, 1.0], [0.2, 0.0], [1.0, 1.5]])
    history = list(csv.DictReader(io.StringIO(HISTORY)))
    config = {"settings": {"model": "timm:test_vit", "epochs": 5}, "source": {"epochs": "cli"}}
    paths_out = write_report(
        tmp_path / "out", _result(logits, [0, 0, 0, 1, 1, 1], classes, paths), classes,
        history=history, config=config, data_summary={"train": [3, 3], "val": [1, 1]},
        skipped=[("data/cat/notes.txt", "not an image"), "data/dog/.DS_Store"], title="Pets",
        extra={"model": "runs/pets"},
    )  # fmt: skip
    out = tmp_path / "out"
    for name in (*ALWAYS, "curves.png", "predictions.png", "top_losses.png"):
        assert (out / name).is_file(), name
    assert "top_confusions" not in paths_out.images
    assert set(paths_out.images) == {p.stem for p in out.glob("*.png")}

    with (out / "misclassified.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["path"], r["true"], r["predicted"]) for r in rows] == [
        (paths[2], "cat", "dog"),  # loss 3.05 first
        (paths[4], "dog", "cat"),  # loss 0.80
    ]
    assert float(rows[0]["confidence"]) == pytest.approx(1 / (1 + np.exp(-3.0)), abs=1e-5)

    doc = json.loads((out / "metrics.json").read_text())
    metrics = doc["metrics"]
    assert metrics["acc"] == pytest.approx(4 / 6)
    assert metrics["balanced_acc"] == pytest.approx(4 / 6)
    assert "top5" not in metrics and 0 <= metrics["ece"] <= 1
    assert metrics["loss"] == pytest.approx(float(torch.nn.functional.cross_entropy(
        torch.tensor(logits), torch.tensor([0, 0, 0, 1, 1, 1]))), abs=1e-5)  # fmt: skip
    assert doc["config"] == config and len(doc["skipped"]) == 2
    assert doc["model"] == "runs/pets" and doc["title"] == "Pets"

    with (out / "per_class.csv").open(newline="") as f:
        per_class = list(csv.DictReader(f))
    assert [r["class"] for r in per_class] == classes
    assert set(per_class[0]) == {"class", "precision", "recall", "f1", "support", "accuracy"}
    assert (out / "confusion_matrix.csv").read_text().splitlines()[1:] == ["cat,2,1", "dog,1,2"]

    text = (out / "report.html").read_text()
    _check_self_contained(text, len(paths_out.images))
    for needle in ("Pets", "notes.txt", "not an image", "timm:test_vit", "weighted F1", "ECE"):
        assert needle in text or needle.lower() in text.lower(), needle
    markdown = (out / "report.md").read_text()
    assert "![Training curves](curves.png)" in markdown and "| cat | 3 | 1 |" in markdown


def test_hundred_class_report(hundred_class_report: Path) -> None:
    out = hundred_class_report
    for name in (*ALWAYS, "top_confusions.png", "predictions.png", "top_losses.png"):
        assert (out / name).is_file(), name
    assert not (out / "curves.png").exists()  # no history given
    doc = json.loads((out / "metrics.json").read_text())
    assert {"top5", "macro_f1", "weighted_f1", "balanced_acc", "loss", "ece"} <= set(doc["metrics"])
    assert len((out / "per_class.csv").read_text().splitlines()) == 101
    assert len((out / "confusion_matrix.csv").read_text().splitlines()) == 101
    wrong = len((out / "misclassified.csv").read_text().splitlines()) - 1
    assert wrong == doc["num_misclassified"] == round(100 * (1 - doc["metrics"]["acc"]))
    _check_self_contained((out / "report.html").read_text(), len(list(out.glob("*.png"))))


def test_report_without_image_paths(tmp_path: Path) -> None:
    logits = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    result = _result(logits, [0, 1], ["a", "b", "c"])
    paths = write_report(tmp_path, result, ["a", "b", "c"])
    assert "predictions" not in paths.images and paths.html.is_file()
    with paths.misclassified_csv.open(newline="") as f:
        assert list(csv.DictReader(f))[0]["predicted"] == "c"


# ----------------------------------------------------------------------------- browser


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if found := shutil.which(name):
            return found
    return None


@pytest.mark.skipif(
    _chromium() is None,
    reason="no chromium binary on PATH; install it with: apt-get install -y chromium",
)
def test_report_renders_in_headless_chromium(hundred_class_report: Path, tmp_path: Path) -> None:
    page = (hundred_class_report / "report.html").resolve()
    command = [
        str(_chromium()), "--headless", "--no-sandbox", "--disable-gpu",
        "--disable-background-networking", "--disable-component-update", "--no-first-run",
        "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=10000", "--dump-dom", page.as_uri(),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    images = len(list(hundred_class_report.glob("*.png")))
    assert f'data-image-count="{images}"' in done.stdout
    assert 'data-images-loaded="true"' in done.stdout
    assert "class_042" in done.stdout


def test_training_summary_reads_the_last_epoch() -> None:
    from headstart.evaluation.report import training_summary

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
