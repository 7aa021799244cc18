"""The evaluation report: files, contents, atomic writes, self-contained HTML, a real browser."""

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

import headstart.files
from headstart.evaluation.metrics import summarize
from headstart.evaluation.report import REPORT_KIND, check_report_dir, write_report
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


def test_every_file_is_written_atomically(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, image_folder_factory: Callable[..., Path]
) -> None:
    """Each file of the report is renamed into place by the one atomic write, mode 0644."""
    renamed: list[Path] = []
    monkeypatch.setattr(headstart.files, "_before_rename", renamed.append)
    classes = ["cat", "dog"]
    paths = _image_paths(tmp_path / "data", classes, 2, image_folder_factory)
    logits = np.array([[2.0, 0.0], [0.0, 1.0], [0.0, 3.0], [1.0, 0.0]])
    history = list(csv.DictReader(io.StringIO(HISTORY)))
    out = tmp_path / "out"
    write_report(out, _result(logits, [0, 0, 1, 1], classes, paths), classes, history=history)
    written = sorted(p for p in out.iterdir())
    assert sorted(renamed) == written and len(written) == len(ALWAYS) + 3 + 1  # + the marker
    assert out / headstart.files.MARKER in written
    assert {p.stat().st_mode & 0o777 for p in written} == {headstart.files.FILE_MODE}
    assert out.stat().st_mode & 0o777 == headstart.files.DIR_MODE


def test_a_report_folder_is_marked_and_told_from_a_users_folder(tmp_path: Path) -> None:
    from headstart.errors import ConfigError

    logits = np.array([[2.0, 0.0], [0.0, 1.0]])
    out = tmp_path / "out"
    check_report_dir(out)  # missing: fine
    write_report(out, _result(logits, [0, 1], ["a", "b"]), ["a", "b"])
    assert headstart.files.folder_kind(out) == REPORT_KIND
    check_report_dir(out)  # its own report: fine to replace
    write_report(out, _result(logits, [0, 1], ["a", "b"]), ["a", "b"])
    (tmp_path / "empty").mkdir()
    check_report_dir(tmp_path / "empty")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="not a headstart report; .* choose a new or empty"):
        check_report_dir(mine)
    with pytest.raises(ConfigError, match="is a file; evaluate writes a folder"):
        check_report_dir(mine / "notes.txt")


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


def test_the_report_draws_the_learning_rate_trace(tmp_path: Path, monkeypatch) -> None:
    from headstart.evaluation import plots

    seen = {}
    real = plots.plot_curves

    def spy(history, path, *, lr_trace=()):
        seen["lr_trace"] = list(lr_trace)
        return real(history, path, lr_trace=lr_trace)

    monkeypatch.setattr(plots, "plot_curves", spy)
    trace = [{"step": str(s), "epoch": "1", "phase": "head", "head_lr": str(1e-3 / s),
              "body_lr": ""} for s in range(1, 5)]  # fmt: skip
    logits = np.array([[2.0, 0.0], [0.0, 1.0]])
    history = list(csv.DictReader(io.StringIO(HISTORY)))
    paths = write_report(tmp_path / "out", _result(logits, [0, 1], ["cat", "dog"], []),
                         ["cat", "dog"], history=history, lr_trace=trace)  # fmt: skip
    assert seen["lr_trace"] == trace and paths.images["curves"].is_file()
