"""Plots: every function writes a readable, non-blank PNG for 2 and for 100 classes."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from headstart.evaluation import plots
from headstart.files import FILE_MODE
from tests.conftest import write_image


def _assert_png(path: Path, *, min_size: int = 100) -> np.ndarray:
    assert path.is_file()
    with Image.open(path) as image:
        assert image.format == "PNG"
        pixels = np.asarray(image.convert("RGB"))
    assert min(pixels.shape[:2]) >= min_size
    assert pixels.std() > 5, "picture is blank"
    return pixels


def _history(phases: list[str]) -> list[dict[str, str]]:
    return [
        {"epoch": str(e), "phase": p, "train_loss": str(1.0 / e), "train_acc": str(1 - 0.5 / e),
         "val_loss": str(1.2 / e), "val_acc": str(1 - 0.6 / e), "val_f1": str(1 - 0.7 / e),
         "lr": str(1e-3 if p == "head" else 1e-4), "seconds": "1.0", "images_per_s": "10"}
        for e, p in enumerate(phases, start=1)
    ]  # fmt: skip


@pytest.mark.parametrize("normalize", [False, True])
def test_confusion_matrix_two_classes(tmp_path: Path, normalize: bool) -> None:
    path = plots.plot_confusion_matrix(
        np.array([[7, 3], [2, 8]]), ["cat", "dog"], tmp_path / "cm.png", normalize=normalize
    )
    assert path == tmp_path / "cm.png"
    _assert_png(path)


def test_confusion_matrix_hundred_classes_is_fast(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    cm = rng.integers(0, 3, size=(100, 100)) + np.diag(np.full(100, 20))
    classes = [f"a_rather_long_class_name_{i}" for i in range(100)]
    start = time.perf_counter()
    _assert_png(plots.plot_confusion_matrix(cm, classes, tmp_path / "cm.png", normalize=True))
    pairs = [(classes[i], classes[i + 1], 10 - i) for i in range(10)]
    _assert_png(plots.plot_top_confusions(pairs, tmp_path / "pairs.png"))
    assert time.perf_counter() - start < 15  # generous: the CI machine is shared


def test_top_confusions_without_mistakes(tmp_path: Path) -> None:
    _assert_png(plots.plot_top_confusions([], tmp_path / "pairs.png"))


def test_phase_boundaries_of_two_phase_training() -> None:
    rows = _history(["head", "head", "head", "full", "full"])
    assert plots.phase_boundaries(rows) == [(3.5, "full")]
    assert plots.phase_boundaries(_history(["full", "full"])) == []


def test_curves_with_a_phase_boundary(tmp_path: Path) -> None:
    rows = _history(["head", "head", "full", "full", "full"])
    rows[0]["val_f1"] = ""  # a missing value is skipped, not an error
    _assert_png(plots.plot_curves(rows, tmp_path / "curves.png"))


def test_curves_of_one_epoch_and_of_none(tmp_path: Path) -> None:
    _assert_png(plots.plot_curves(_history(["full"]), tmp_path / "one.png"))
    assert plots.plot_curves([], tmp_path / "none.png").is_file()


def test_prediction_grid_marks_unreadable_files(tmp_path: Path) -> None:
    good = write_image(tmp_path / "a.png", (200, 30, 30), (30, 20), seed=0)
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    path = plots.plot_prediction_grid(
        [str(good), str(bad), str(tmp_path / "missing.png")],
        ["cat", "dog", "dog"],
        ["cat", "cat", "dog"],
        [0.9, 0.6, 0.51],
        tmp_path / "grid.png",
        notes=["loss 0.1", "loss 0.9", "loss 0.7"],
    )
    pixels = _assert_png(path)
    red = (pixels[..., 0] > 180) & (pixels[..., 1] < 80) & (pixels[..., 2] < 80)
    assert red.any(), "the mistake is framed in red"


def test_prediction_grid_with_no_images(tmp_path: Path) -> None:
    assert plots.plot_prediction_grid([], [], [], [], tmp_path / "grid.png").is_file()


def test_reliability_diagram(tmp_path: Path) -> None:
    edges = np.linspace(0, 1, 16)
    counts = np.zeros(15, dtype=int)
    counts[[10, 14]] = [5, 20]
    acc = np.where(counts > 0, 0.6, 0.0)
    conf = np.where(counts > 0, [0.7 if i == 10 else 0.97 for i in range(15)], 0.0)
    _assert_png(plots.plot_reliability(edges, acc, conf, counts, tmp_path / "cal.png", ece=0.3))


def test_pictures_are_written_atomically(tmp_path: Path) -> None:
    path = plots.plot_top_confusions([("cat", "dog", 3)], tmp_path / "new" / "pairs.png")
    assert list(path.parent.iterdir()) == [path]  # no temporary file left beside it
    assert path.stat().st_mode & 0o777 == FILE_MODE
    _assert_png(path)


def _trace() -> list[dict[str, str]]:
    """lr.csv rows: 4 head steps (warm-up, cosine; body frozen), then 6 full steps."""
    head = [1e-3 / 3, 2e-3 / 3, 1e-3, 5e-4]
    full = [1e-4 / 3, 2e-4 / 3, 1e-4, 7.5e-5, 2.5e-5, 1e-6]
    rows = [{"step": str(i + 1), "epoch": "1", "phase": "head", "head_lr": str(v),
             "body_lr": ""} for i, v in enumerate(head)]  # fmt: skip
    rows += [{"step": str(i + 5), "epoch": str(2 + i // 3), "phase": "full", "head_lr": str(v),
              "body_lr": str(v * 0.1)} for i, v in enumerate(full)]  # fmt: skip
    return rows


def test_lr_series_is_the_trace_per_step_for_head_and_body() -> None:
    history = _history(["head", "full", "full"])
    series = plots.lr_series(history, _trace())
    assert series.unit == "step" and series.x.tolist() == list(range(1, 11))
    assert series.lines["head"].tolist() == pytest.approx([float(r["head_lr"]) for r in _trace()])
    body = series.lines["body, last stage"]
    assert np.isnan(body[:4]).all()  # frozen body: no line there
    assert body[4:].tolist() == pytest.approx([float(r["body_lr"]) for r in _trace()[4:]])
    assert series.boundaries == [(4.5, "full")]
    old = plots.lr_series(history)  # without a trace: each epoch's first-step rate
    assert old.unit == "epoch" and old.lines["head"].tolist() == [1e-3, 1e-4, 1e-4]


def test_curves_draw_the_learning_rate_from_the_trace(tmp_path: Path, monkeypatch) -> None:
    history = _history(["head", "full", "full"])
    drawn = []
    real = plots._plot_lr
    monkeypatch.setattr(plots, "_plot_lr", lambda ax, series: (drawn.append(series),
                                                               real(ax, series)))  # fmt: skip
    with_trace = _assert_png(plots.plot_curves(history, tmp_path / "a.png", lr_trace=_trace()))
    without = _assert_png(plots.plot_curves(history, tmp_path / "b.png"))
    assert [s.unit for s in drawn] == ["step", "epoch"]
    assert len(drawn[0].x) == 10 and set(drawn[0].lines) == {"head", "body, last stage"}
    assert with_trace.shape != without.shape or not np.array_equal(with_trace, without)
