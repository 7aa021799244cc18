"""Pictures of a run: confusion matrix, training curves, prediction grids, reliability diagram.

Every function takes plain values (numpy arrays, lists, dicts), writes one PNG (through the one
atomic write) and returns its path.
Figures are built with ``matplotlib.figure.Figure`` and rendered by the Agg canvas directly, so
plotting never touches pyplot's global state or the user's interactive backend and works headless.
Label font sizes adapt to the number of classes; a confusion matrix of more than
``MAX_LABELLED_CLASSES`` classes drops its tick labels (see :func:`plot_top_confusions` instead).
"""

from __future__ import annotations

import functools
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from headstart.data.images import decode_image
from headstart.errors import DataError
from headstart.evaluation.metrics import normalize_rows
from headstart.files import atomic_write

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "MAX_LABELLED_CLASSES",
    "LrSeries",
    "lr_series",
    "phase_boundaries",
    "plot_confusion_matrix",
    "plot_curves",
    "plot_prediction_grid",
    "plot_reliability",
    "plot_top_confusions",
]

MAX_LABELLED_CLASSES = 30
"""Largest confusion matrix drawn with class names on its axes."""
_ANNOTATE_CLASSES = 12
_THUMBNAIL = 160
_GRID_COLUMNS = 6
_WRONG, _RIGHT = "#c62828", "#2e7d32"


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height))


def _save(fig: Figure, path: str | Path, *, dpi: int = 100) -> Path:
    """Render ``fig`` as PNG in memory and write it atomically to ``path``."""
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=dpi, bbox_inches="tight", facecolor="white")
    return atomic_write(path, png.getvalue())


def _integer_ticks(ax: Axes) -> None:
    """Whole-number ticks on the x axis (its default locator, told to skip fractions)."""
    from matplotlib.ticker import MaxNLocator

    locator = ax.xaxis.get_major_locator()
    if isinstance(locator, MaxNLocator):
        locator.set_params(integer=True)


def _shorten(name: str, limit: int = 18) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"


def _label_fontsize(num_classes: int) -> float:
    return float(np.clip(14 - 0.3 * num_classes, 5, 10))


def plot_confusion_matrix(
    cm: np.ndarray,
    classes: Sequence[str],
    path: str | Path,
    *,
    normalize: bool = False,
) -> Path:
    """Draw a confusion matrix (rows = true class, columns = predicted class).

    Args:
        cm: Counts, shape ``[C, C]``.
        classes: Class names, in label order.
        path: PNG to write.
        normalize: Show each row divided by its sum (per-class recall on the diagonal).
    """
    counts = np.asarray(cm)
    n = len(classes)
    values = normalize_rows(counts) if normalize else counts
    side = float(np.clip(3.5 + 0.22 * n, 4.5, 11))
    fig = _figure(side + 1.2, side)
    ax = fig.add_subplot()
    vmax = 1.0 if normalize else max(float(values.max(initial=0)), 1.0)
    image = ax.imshow(values, cmap="Blues", vmin=0, vmax=vmax, interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    if n <= MAX_LABELLED_CLASSES:
        size = _label_fontsize(n)
        names = [_shorten(c) for c in classes]
        ax.set_xticks(range(n), names, rotation=90 if n > 6 else 0, fontsize=size)
        ax.set_yticks(range(n), names, fontsize=size)
    else:
        step = 10 if n <= 200 else 50
        ax.set_xticks(range(0, n, step))
        ax.set_yticks(range(0, n, step))
        ax.set_title("class index (names dropped: too many classes)", fontsize=8, loc="left")
    if n <= _ANNOTATE_CLASSES:
        _annotate_cells(ax, values, vmax, normalize=normalize)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    kind = "row-normalised" if normalize else "counts"
    fig.suptitle(f"Confusion matrix ({kind})")
    return _save(fig, path)


def _annotate_cells(ax: Axes, values: np.ndarray, vmax: float, *, normalize: bool) -> None:
    n = values.shape[0]
    size = float(np.clip(16 - n, 6, 11))
    for i in range(n):
        for j in range(n):
            v = values[i, j]
            text = f"{v:.2f}" if normalize else f"{int(v)}"
            colour = "white" if v > 0.6 * vmax else "black"
            ax.text(j, i, text, ha="center", va="center", fontsize=size, color=colour)


def plot_top_confusions(pairs: Sequence[tuple[str, str, int]], path: str | Path) -> Path:
    """Draw the most frequent (true → predicted) mistakes as horizontal bars, largest on top.

    Args:
        pairs: ``(true name, predicted name, count)``, largest first.
        path: PNG to write.
    """
    k = max(len(pairs), 1)
    fig = _figure(7, float(np.clip(0.3 * k + 1.2, 2.0, 9)))
    ax = fig.add_subplot()
    labels = [f"{_shorten(t, 24)} → {_shorten(p, 24)}" for t, p, _ in pairs]
    counts = [c for _, _, c in pairs]
    ax.barh(range(len(pairs)), counts, color="#ef6c00")
    ax.set_yticks(range(len(pairs)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("images")
    _integer_ticks(ax)
    if not pairs:
        ax.text(0.5, 0.5, "no mistakes", ha="center", va="center", transform=ax.transAxes)
    fig.suptitle("Most confused pairs (true → predicted)")
    return _save(fig, path)


def _column(rows: Sequence[Mapping[str, str | float | None]], key: str) -> np.ndarray:
    out = []
    for row in rows:
        try:
            out.append(float(row.get(key, "nan")))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            out.append(math.nan)
    return np.asarray(out, dtype=np.float64)


def phase_boundaries(
    rows: Sequence[Mapping[str, str | float | None]], key: str = "epoch"
) -> list[tuple[float, str]]:
    """Return ``(x where a phase starts, phase name)`` for each phase after the first.

    ``x`` is half a unit before the first row of the phase, on the ``key`` column (``epoch`` of
    metrics.csv rows, ``step`` of lr.csv rows).
    """
    xs = _column(rows, key)
    found = []
    for i in range(1, len(rows)):
        if rows[i].get("phase") != rows[i - 1].get("phase"):
            found.append((float(xs[i]) - 0.5, str(rows[i].get("phase"))))
    return found


@dataclass(frozen=True)
class LrSeries:
    """The learning-rate curve of a run, as the curves picture draws it.

    Attributes:
        x: Steps (from lr.csv) or, without a trace, epochs.
        lines: Label -> rates at ``x`` (NaN where a group did not train).
        unit: ``step`` or ``epoch``.
        boundaries: ``(x, phase)`` where each phase after the first starts.
    """

    x: np.ndarray
    lines: dict[str, np.ndarray]
    unit: str
    boundaries: list[tuple[float, str]]


def lr_series(
    history_rows: Sequence[Mapping[str, str | float]],
    lr_trace: Sequence[Mapping[str, str | float | None]] = (),
) -> LrSeries:
    """The rates as they ran per step (lr.csv rows: head and last body stage) when a trace is
    given; otherwise the head's rate at each epoch's first step (metrics.csv's ``lr``)."""
    if not lr_trace:
        lines = {"head": _column(history_rows, "lr")}
        return LrSeries(_column(history_rows, "epoch"), lines, "epoch",
                        phase_boundaries(history_rows))  # fmt: skip
    lines = {"head": _column(lr_trace, "head_lr")}
    body = _column(lr_trace, "body_lr")
    if np.isfinite(body).any():
        lines["body, last stage"] = body
    return LrSeries(_column(lr_trace, "step"), lines, "step", phase_boundaries(lr_trace, "step"))


def _mark_phases(ax: Axes, boundaries: Sequence[tuple[float, str]]) -> None:
    for x, phase in boundaries:
        ax.axvline(x, color="grey", linestyle=":", linewidth=1.2)
        ax.text(x, 1.0, f" {phase}", transform=ax.get_xaxis_transform(), fontsize=8,
                va="top", color="dimgrey")  # fmt: skip


def _plot_lr(ax: Axes, series: LrSeries) -> None:
    """The learning-rate panel: one line per group, log scale when every rate is positive."""
    marker = "o" if series.unit == "epoch" and len(series.x) <= 30 else None
    for label, values in series.lines.items():
        if np.isfinite(values).any():
            ax.plot(series.x, values, "-", marker=marker, markersize=3, label=f"lr ({label})")
    ax.set_title("learning rate" + (" per step" if series.unit == "step" else ""))
    ax.set_xlabel(series.unit)
    _integer_ticks(ax)
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize=8)
    rates = np.concatenate([v[np.isfinite(v)] for v in series.lines.values()])
    if rates.size and (rates > 0).all():
        ax.set_yscale("log")
    _mark_phases(ax, series.boundaries)


def plot_curves(
    history_rows: Sequence[Mapping[str, str | float]],
    path: str | Path,
    *,
    lr_trace: Sequence[Mapping[str, str | float | None]] = (),
) -> Path:
    """Draw loss and accuracy per epoch and the learning rate, with dashed lines where a phase
    starts.

    Args:
        history_rows: Rows of ``metrics.csv`` (values may be strings, as read by ``csv``).
        path: PNG to write.
        lr_trace: Rows of ``lr.csv``: the learning rate is then drawn per step as it ran, for
            the head and the last body stage (see :func:`lr_series`).
    """
    epochs = _column(history_rows, "epoch")
    fig = _figure(14, 4)
    axes = fig.subplots(1, 3)
    marker = "o" if len(history_rows) <= 30 else None
    panels = (
        ("loss", (("train_loss", "train"), ("val_loss", "val"))),
        ("accuracy", (("train_acc", "train"), ("val_acc", "val"), ("val_f1", "val macro-F1"))),
    )
    for ax, (name, series) in zip(axes, panels):
        for key, label in series:
            values = _column(history_rows, key)
            if np.isfinite(values).any():
                style = "--" if key == "val_f1" else "-"
                ax.plot(epochs, values, style, marker=marker, markersize=3, label=label)
        ax.set_title(name)
        ax.set_xlabel("epoch")
        _integer_ticks(ax)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
        _mark_phases(ax, phase_boundaries(history_rows))
    _plot_lr(axes[2], lr_series(history_rows, lr_trace))
    first = history_rows[0].get("phase") if history_rows else None
    if first:
        axes[0].text(0.01, 1.0, f"{first}", transform=axes[0].transAxes, fontsize=8,
                     va="top", color="dimgrey")  # fmt: skip
    if not history_rows:
        axes[0].text(0.5, 0.5, "no history", ha="center", transform=axes[0].transAxes)
    return _save(fig, path)


def _thumbnail(path: str) -> np.ndarray | None:
    try:
        image = decode_image(path)
    except (DataError, OSError):
        return None
    image.thumbnail((_THUMBNAIL, _THUMBNAIL))
    return np.asarray(image)


def plot_prediction_grid(
    paths: Sequence[str],
    true_names: Sequence[str],
    pred_names: Sequence[str],
    confidences: Sequence[float],
    path: str | Path,
    *,
    notes: Sequence[str] | None = None,
    title: str = "Predictions",
) -> Path:
    """Draw image thumbnails captioned with predicted and true label; mistakes framed in red.

    A plain image grid drawn with Pillow (a tenth of matplotlib's time for the same content);
    a mistake's caption starts with "x" (the built-in font has no check marks).

    Args:
        paths: Image files (unreadable ones are drawn as a grey tile).
        true_names: True class name of each image.
        pred_names: Predicted class name of each image.
        confidences: Probability of the predicted class.
        path: PNG to write.
        notes: An extra caption line per image (e.g. its loss).
        title: Figure title.
    """
    from PIL import Image, ImageDraw

    n = len(paths)
    cols = max(1, min(_GRID_COLUMNS, n))
    rows = max(1, math.ceil(n / cols))
    lines = 2 + (notes is not None) + 1  # pred, true, note, "(unreadable)"
    cell_w, cell_h = _THUMBNAIL + 2 * _PAD, _THUMBNAIL + 2 * _PAD + lines * _LINE
    canvas = Image.new("RGB", (cols * cell_w, rows * cell_h + _TITLE), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((canvas.width // 2, _TITLE // 2), title, fill="black", font=_font(14), anchor="mm")
    if n == 0:
        draw.text((canvas.width // 2, _TITLE + cell_h // 2), "no images", fill="black",
                  font=_font(12), anchor="mm")  # fmt: skip
    for i in range(n):
        left, top = (i % cols) * cell_w, _TITLE + (i // cols) * cell_h
        _grid_cell(canvas, draw, (left, top), paths[i], _caption(
            pred_names[i], true_names[i], confidences[i], notes[i] if notes is not None else None
        ))  # fmt: skip
    png = io.BytesIO()
    canvas.save(png, format="PNG")
    return atomic_write(path, png.getvalue())


_PAD, _LINE, _TITLE = 6, 12, 28


def _caption(pred: str, true: str, confidence: float, note: str | None) -> tuple[list[str], bool]:
    """The caption lines of one tile and whether the prediction is wrong."""
    wrong = pred != true
    lines = [f"{'x ' if wrong else ''}pred {_shorten(pred, 26)} ({confidence:.2f})",
             f"true {_shorten(true, 26)}"]  # fmt: skip
    if note is not None:
        lines.append(note)
    return lines, wrong


def _grid_cell(
    canvas: Any, draw: Any, corner: tuple[int, int], path: str, caption: tuple[list[str], bool]
) -> None:
    """One tile: the caption above the thumbnail, framed red (thick) for a mistake, else green."""
    from PIL import Image, ImageOps

    (left, top), (lines, wrong) = corner, caption
    pixels = _thumbnail(path)
    if pixels is None:
        lines = [*lines, "(unreadable)"]
    colour = _WRONG if wrong else _RIGHT
    for k, line in enumerate(lines):
        draw.text((left + _PAD + _THUMBNAIL // 2, top + _PAD + k * _LINE), line, fill=colour,
                  font=_font(10), anchor="ma")  # fmt: skip
    image_top = top + _PAD + len(lines) * _LINE + 2
    if pixels is None:
        tile = Image.new("RGB", (_THUMBNAIL, _THUMBNAIL), (200, 200, 200))
    else:  # scaled to the tile as matplotlib's imshow would (small images up, without blur)
        image = Image.fromarray(pixels).convert("RGB")
        upscale = max(image.size) < _THUMBNAIL
        method = Image.Resampling.NEAREST if upscale else Image.Resampling.BICUBIC
        tile = ImageOps.contain(image, (_THUMBNAIL, _THUMBNAIL), method=method)
    x = left + _PAD + (_THUMBNAIL - tile.width) // 2
    canvas.paste(tile, (x, image_top))
    width = 3 if wrong else 1
    right, bottom = x + tile.width + width - 1, image_top + tile.height + width - 1
    draw.rectangle((x - width, image_top - width, right, bottom), outline=colour, width=width)


@functools.lru_cache(maxsize=4)
def _font(size: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)  # scalable with FreeType (Pillow >= 10.1)
    except TypeError:  # an older Pillow: its fixed bitmap font
        return ImageFont.load_default()


def plot_reliability(
    bin_edges: np.ndarray,
    bin_accuracy: np.ndarray,
    bin_confidence: np.ndarray,
    bin_counts: np.ndarray,
    path: str | Path,
    *,
    ece: float,
) -> Path:
    """Draw a reliability diagram: accuracy per confidence bin against the diagonal, with counts.

    Args:
        bin_edges: ``n_bins + 1`` edges over [0, 1].
        bin_accuracy: Accuracy of the predictions in each bin (0 for empty bins).
        bin_confidence: Mean confidence in each bin (0 for empty bins).
        bin_counts: Predictions in each bin.
        path: PNG to write.
        ece: Expected calibration error, shown in the title.
    """
    edges = np.asarray(bin_edges, dtype=np.float64)
    counts = np.asarray(bin_counts)
    width, left = np.diff(edges), edges[:-1]
    fig = _figure(5.5, 6)
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    filled = counts > 0
    top.bar(left[filled], np.asarray(bin_accuracy)[filled], width=width[filled], align="edge",
            color="#1e88e5", edgecolor="black", linewidth=0.5, label="accuracy")  # fmt: skip
    gap_low = np.minimum(bin_accuracy, bin_confidence)[filled]
    gap = np.abs(np.asarray(bin_accuracy) - np.asarray(bin_confidence))[filled]
    top.bar(left[filled], gap, bottom=gap_low, width=width[filled], align="edge",
            facecolor="none", edgecolor="#e53935", hatch="//", label="gap to diagonal")  # fmt: skip
    top.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_ylabel("accuracy")
    top.legend(loc="upper left", fontsize=8, framealpha=0.9)
    top.set_title(f"Reliability (ECE {ece:.4f}, {len(width)} bins)")
    bottom.bar(left, counts, width=width, align="edge", color="#757575")
    bottom.set_xlabel("confidence (probability of the predicted class)")
    bottom.set_ylabel("images")
    return _save(fig, path)
