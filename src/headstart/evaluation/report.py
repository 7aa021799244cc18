"""The evaluation report: metrics, per-class table, error analysis, calibration and pictures.

``write_report`` turns an :class:`~headstart.evaluation.EvalResult` into a folder::

    report.html          one self-contained page (images as data: URIs, no external resources)
    report.md            the same for terminals, linking the PNGs next to it
    metrics.json         everything in machine-readable form
    per_class.csv        precision, recall, F1, support, accuracy per class
    confusion_matrix.csv / confusion_matrix_normalized.csv
    misclassified.csv    path, true label, predicted label, confidence, loss (highest loss first)
    *.png                confusion matrices, top confused pairs (> 30 classes), curves (with
                         the learning rate per step when the run's lr.csv rows are given),
                         predictions, top losses, calibration

What the report says is derived in :mod:`~headstart.evaluation.analysis`, rendered in
:mod:`~headstart.evaluation.render` and drawn in :mod:`~headstart.evaluation.plots`; this module
writes the files, each through the one atomic write. The folder is marked as a report
(``files.mark_folder``), so that no walk of a data folder takes its pictures in as images, and
:func:`check_report_dir` tells it from a user's folder before anything is written there.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from headstart.data.folders import DataSplits
from headstart.errors import ConfigError
from headstart.evaluation import plots
from headstart.evaluation.analysis import (
    MISCLASSIFIED_KEYS,
    Analysis,
    DataCounts,
    HistoryRow,
    Skipped,
    analyse,
    misclassified_rows,
    per_class_rows,
    report_doc,
)
from headstart.evaluation.metrics import normalize_rows
from headstart.evaluation.render import render_html, render_markdown
from headstart.evaluation.result import EvalResult
from headstart.files import atomic_write, folder_kind, mark_folder

__all__ = ["REPORT_KIND", "ReportPaths", "check_report_dir", "write_report"]

REPORT_KIND = "report"
"""The kind of the marker a report folder carries."""
GRID_IMAGES = 24
"""Images in the sample-predictions grid."""
TOP_LOSSES = 12
"""Images in the highest-loss grid."""


@dataclass(frozen=True)
class ReportPaths:
    """The files a report wrote; ``images`` maps a picture's name to its PNG."""

    out_dir: Path
    html: Path
    markdown: Path
    metrics_json: Path
    per_class_csv: Path
    confusion_csv: Path
    misclassified_csv: Path
    images: dict[str, Path] = field(default_factory=dict)


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[object]]) -> Path:
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(header)
    writer.writerows(rows)
    return atomic_write(path, text.getvalue())


def _write_tables(out: Path, analysis: Analysis) -> tuple[Path, Path, Path]:
    per_class = per_class_rows(analysis)
    keys = list(per_class[0]) if per_class else ["class"]
    p1 = _write_csv(out / "per_class.csv", keys, [[r[k] for k in keys] for r in per_class])
    names = analysis.classes
    header = ["true \\ predicted", *names]
    p2 = _write_csv(out / "confusion_matrix.csv", header,
                    [[n, *row] for n, row in zip(names, analysis.cm.tolist())])  # fmt: skip
    normal = normalize_rows(analysis.cm).round(6).tolist()
    _write_csv(out / "confusion_matrix_normalized.csv", header,
               [[n, *row] for n, row in zip(names, normal)])  # fmt: skip
    wrong = misclassified_rows(analysis)
    p3 = _write_csv(out / "misclassified.csv", MISCLASSIFIED_KEYS,
                    [[r[k] for k in MISCLASSIFIED_KEYS] for r in wrong])  # fmt: skip
    return p1, p2, p3


def _grid_samples(analysis: Analysis) -> np.ndarray:
    n = len(analysis.targets)
    rng = np.random.default_rng(0)
    return np.sort(rng.choice(n, size=min(n, GRID_IMAGES), replace=False))


def _grid(
    analysis: Analysis, index: np.ndarray, path: Path, *, title: str, with_loss: bool = False
) -> Path:
    names = analysis.classes
    return plots.plot_prediction_grid(
        [analysis.paths[i] for i in index],
        [names[analysis.targets[i]] for i in index],
        [names[analysis.preds[i]] for i in index],
        [float(analysis.confidence[i]) for i in index],
        path,
        notes=[f"loss {analysis.losses[i]:.2f}" for i in index] if with_loss else None,
        title=title,
    )


def _write_pictures(
    out: Path,
    analysis: Analysis,
    history: Sequence[HistoryRow],
    lr_trace: Sequence[Mapping[str, str]] = (),
) -> dict[str, Path]:
    names, cm = analysis.classes, analysis.cm
    images: dict[str, Path] = {}
    if history:
        images["curves"] = plots.plot_curves(history, out / "curves.png", lr_trace=lr_trace)
    images |= {
        "confusion_matrix": plots.plot_confusion_matrix(cm, names, out / "confusion_matrix.png"),
        "confusion_matrix_normalized": plots.plot_confusion_matrix(
            cm, names, out / "confusion_matrix_normalized.png", normalize=True
        ),
    }
    if len(names) > plots.MAX_LABELLED_CLASSES:
        images["top_confusions"] = plots.plot_top_confusions(
            analysis.pairs, out / "top_confusions.png"
        )
    cal = analysis.calibration
    images["calibration"] = plots.plot_reliability(
        cal.edges, cal.accuracy, cal.confidence, cal.counts, out / "calibration.png", ece=cal.ece
    )
    if analysis.paths:
        images["predictions"] = _grid(analysis, _grid_samples(analysis), out / "predictions.png",
                                      title="Sample predictions (mistakes in red)")  # fmt: skip
        top = np.argsort(-analysis.losses, kind="stable")[:TOP_LOSSES]
        images["top_losses"] = _grid(analysis, top, out / "top_losses.png",
                                     title="Highest-loss images", with_loss=True)  # fmt: skip
    return images


def check_report_dir(out_dir: str | Path, *, flag: str = "--out") -> None:
    """Raise unless ``out_dir`` may take a report: missing, empty, or a report folder already.

    Raises:
        ConfigError: ``out_dir`` is a file, or a folder with files headstart did not write there.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(
            f"{flag} {out} is a file; evaluate writes a folder of report files: choose a new "
            f"folder for {flag}."
        )
    if not out.is_dir() or folder_kind(out) == REPORT_KIND:
        return
    try:
        empty = not any(out.iterdir())
    except OSError as exc:
        raise ConfigError(
            f"cannot read {flag} {out}: {exc.strerror or exc}; choose a folder you can write."
        ) from None
    if not empty:
        raise ConfigError(
            f"{flag} {out} is a folder with other files in it, not a headstart report; headstart "
            f"never writes among your files: choose a new or empty folder for {flag}."
        )


def write_report(
    out_dir: str | Path,
    result: EvalResult,
    classes: Sequence[str],
    *,
    history: Sequence[HistoryRow] = (),
    config: Mapping[str, Any] | None = None,
    data_summary: DataSplits | DataCounts | None = None,
    skipped: Sequence[Skipped] | None = None,
    title: str = "headstart evaluation report",
    extra: Mapping[str, Any] | None = None,
    lr_trace: Sequence[Mapping[str, str]] = (),
) -> ReportPaths:
    """Write the report files and pictures of one evaluation into ``out_dir``.

    Args:
        out_dir: Folder to write into (created and marked as a report); only the report's own
            files are written. Check a folder a user named with :func:`check_report_dir` first.
        result: Logits, targets, paths and metrics of the evaluation.
        classes: Class names in label order.
        history: The run's epoch rows (``RunFolder.read_history``), for training curves.
        config: The run's effective configuration (the content of ``config.yaml``).
        data_summary: Images per class per split: a DataSplits or ``{split: counts}``.
        skipped: Files left out of the data, as paths or ``(path, reason)`` pairs.
        title: Title of the report.
        extra: Context put first in ``metrics.json`` (e.g. ``{"model": ..., "data": ...}``).
        lr_trace: The run's learning rates per step (``RunFolder.read_lr_trace``): the curves
            picture then draws them as they ran, for the head and the body.

    Returns:
        The paths of everything written.
    """
    out = mark_folder(out_dir, REPORT_KIND)
    analysis = analyse(result, classes)
    per_class_csv, confusion_csv, misclassified_csv = _write_tables(out, analysis)
    images = _write_pictures(out, analysis, history, lr_trace)
    doc = report_doc(analysis, title=title, history=history, config=config,
                     data_summary=data_summary, skipped=skipped, extra=extra)  # fmt: skip
    metrics_json = atomic_write(out / "metrics.json", json.dumps(doc, indent=2, default=str) + "\n")
    html_path = atomic_write(out / "report.html", render_html(doc, analysis, images))
    md_path = atomic_write(out / "report.md", render_markdown(doc, analysis, images))
    return ReportPaths(out, html_path, md_path, metrics_json, per_class_csv, confusion_csv,
                       misclassified_csv, images)  # fmt: skip
