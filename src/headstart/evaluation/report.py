"""The evaluation report: metrics, per-class table, error analysis, calibration and pictures.

``write_report`` turns an :class:`~headstart.evaluation.EvalResult` into a folder::

    report.html          one self-contained page (images as data: URIs, no external resources)
    report.md            the same for terminals, linking the PNGs next to it
    metrics.json         everything in machine-readable form
    per_class.csv        precision, recall, F1, support, accuracy per class
    confusion_matrix.csv / confusion_matrix_normalized.csv
    misclassified.csv    path, true label, predicted label, confidence, loss (highest loss first)
    *.png                confusion matrices, top confused pairs (> 30 classes), curves,
                         predictions, top losses, calibration

Calibration uses the top-1 confidence (probability of the predicted class) and equal-width bins.
"""

from __future__ import annotations

import base64
import csv
import html
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from headstart.data.folders import DataSplits
from headstart.evaluation import plots
from headstart.evaluation.metrics import precision_recall_f1, summarize

__all__ = [
    "Calibration",
    "ReportPaths",
    "calibration_bins",
    "expected_calibration_error",
    "training_summary",
    "summarize_data",
    "top_confused_pairs",
    "write_report",
]

ECE_BINS = 15
GRID_IMAGES = 24
TOP_LOSSES = 12
TOP_PAIRS = 20
HTML_MISCLASSIFIED = 50

if TYPE_CHECKING:
    from headstart.evaluation.result import EvalResult


@dataclass(frozen=True)
class Calibration:
    """Equal-width confidence bins and the expected calibration error.

    Attributes:
        edges: ``n_bins + 1`` bin edges over [0, 1]; a bin holds ``edges[i] < c <= edges[i + 1]``
            (the first bin also holds 0).
        counts: Predictions per bin.
        accuracy: Fraction correct per bin (0 for empty bins).
        confidence: Mean confidence per bin (0 for empty bins).
        ece: ``sum(counts / N * |accuracy - confidence|)``.
    """

    edges: np.ndarray
    counts: np.ndarray
    accuracy: np.ndarray
    confidence: np.ndarray
    ece: float


def calibration_bins(
    confidences: Sequence[float] | np.ndarray,
    correct: Sequence[bool] | np.ndarray,
    n_bins: int = ECE_BINS,
) -> Calibration:
    """Bin predictions by confidence and compute the expected calibration error (ECE)."""
    conf = np.asarray(confidences, dtype=np.float64).reshape(-1)
    hit = np.asarray(correct, dtype=np.float64).reshape(-1)
    if conf.shape != hit.shape:
        raise ValueError(f"confidences ({conf.size}) and correct ({hit.size}) differ in length")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    index = np.clip(np.searchsorted(edges[1:-1], conf, side="left"), 0, n_bins - 1)
    counts = np.bincount(index, minlength=n_bins)
    safe = np.maximum(counts, 1)
    accuracy = np.bincount(index, weights=hit, minlength=n_bins) / safe
    confidence = np.bincount(index, weights=conf, minlength=n_bins) / safe
    total = max(int(conf.size), 1)
    ece = float(np.sum(counts / total * np.abs(accuracy - confidence)))
    return Calibration(edges, counts, accuracy, confidence, ece)


def expected_calibration_error(
    confidences: Sequence[float] | np.ndarray,
    correct: Sequence[bool] | np.ndarray,
    n_bins: int = ECE_BINS,
) -> float:
    """Expected calibration error over ``n_bins`` equal-width bins (0 is perfectly calibrated)."""
    return calibration_bins(confidences, correct, n_bins).ece


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


@dataclass(frozen=True)
class _Analysis:
    """Per-sample arrays and summaries derived once from an EvalResult."""

    classes: tuple[str, ...]
    targets: np.ndarray
    preds: np.ndarray
    confidence: np.ndarray
    losses: np.ndarray
    paths: tuple[str, ...]
    cm: np.ndarray
    metrics: dict[str, Any]
    calibration: Calibration


def _numpy(values: Any) -> np.ndarray:
    if hasattr(values, "detach"):
        values = values.detach().cpu().float().numpy()
    return np.asarray(values)


def _analyse(result: EvalResult, classes: Sequence[str]) -> _Analysis:
    logits = _numpy(result.logits).astype(np.float64)
    targets = _numpy(result.targets).astype(np.int64).reshape(-1)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    preds = logits.argmax(axis=1)
    confidence = np.exp(log_probs.max(axis=1))
    losses = -log_probs[np.arange(len(targets)), targets]
    calibration = calibration_bins(confidence, preds == targets)
    metrics = dict(result.metrics) if result.metrics else {}
    if "per_class" not in metrics or "confusion_matrix" not in metrics:
        metrics.update(summarize(logits, targets, list(classes)))
    metrics.update(_extra_metrics(preds, targets, len(classes)))
    metrics.setdefault("loss", float(losses.mean()) if losses.size else 0.0)
    metrics.setdefault("num_images", int(targets.size))
    metrics["ece"] = calibration.ece
    cm = np.asarray(metrics["confusion_matrix"], dtype=np.int64)
    paths = tuple(result.paths) if result.paths else ()
    return _Analysis(tuple(classes), targets, preds, confidence, losses, paths, cm, metrics,
                     calibration)  # fmt: skip


def _extra_metrics(preds: np.ndarray, targets: np.ndarray, num_classes: int) -> dict[str, float]:
    """Weighted F1 and balanced accuracy (mean recall over classes present in the targets)."""
    _, recall, f1, support = precision_recall_f1(preds, targets, num_classes)
    total = support.sum()
    present = support > 0
    return {
        "weighted_f1": float((f1 * support).sum() / total) if total else 0.0,
        "balanced_acc": float(recall[present].mean()) if present.any() else 0.0,
    }


def top_confused_pairs(
    cm: np.ndarray, classes: Sequence[str], k: int = TOP_PAIRS
) -> list[tuple[str, str, int]]:
    """The ``k`` largest off-diagonal cells as ``(true name, predicted name, count)``."""
    off = np.asarray(cm, dtype=np.int64).copy()
    np.fill_diagonal(off, 0)
    flat = np.argsort(-off, axis=None, kind="stable")[:k]
    rows, cols = np.unravel_index(flat, off.shape)
    return [(classes[i], classes[j], int(off[i, j])) for i, j in zip(rows, cols) if off[i, j] > 0]


def summarize_data(
    data_summary: DataSplits | Mapping[str, Any] | None, classes: Sequence[str]
) -> dict[str, dict[str, int]]:
    """Images per class per split, from a DataSplits or ``{split: counts}``.

    Counts may be a list in label order or a ``{class: count}`` mapping.
    """
    if data_summary is None:
        return {}
    counts: Mapping[str, Any] = (
        data_summary.counts() if isinstance(data_summary, DataSplits) else data_summary
    )
    out: dict[str, dict[str, int]] = {}
    for split, values in counts.items():
        if isinstance(values, Mapping):
            out[split] = {str(c): int(v) for c, v in values.items()}
        else:
            out[split] = {c: int(v) for c, v in zip(classes, values)}
    return out


def _per_class_rows(analysis: _Analysis) -> list[dict[str, Any]]:
    per_class = analysis.metrics["per_class"]
    return [
        {"class": name, **{k: per_class[name][k] for k in
                           ("precision", "recall", "f1", "support", "accuracy")}}
        for name in analysis.classes
    ]  # fmt: skip


def _misclassified_rows(analysis: _Analysis) -> list[dict[str, Any]]:
    wrong = np.flatnonzero(analysis.preds != analysis.targets)
    wrong = wrong[np.argsort(-analysis.losses[wrong], kind="stable")]
    names = analysis.classes
    return [
        {
            "path": analysis.paths[i] if analysis.paths else "",
            "true": names[analysis.targets[i]],
            "predicted": names[analysis.preds[i]],
            "confidence": round(float(analysis.confidence[i]), 6),
            "loss": round(float(analysis.losses[i]), 6),
        }
        for i in wrong
    ]


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _write_tables(out: Path, analysis: _Analysis) -> tuple[Path, Path, Path]:
    per_class = _per_class_rows(analysis)
    keys = list(per_class[0]) if per_class else ["class"]
    p1 = _write_csv(out / "per_class.csv", keys, [[r[k] for k in keys] for r in per_class])
    header = ["true \\ predicted", *analysis.classes]
    names = analysis.classes
    p2 = _write_csv(out / "confusion_matrix.csv", header,
                    [[n, *row] for n, row in zip(names, analysis.cm.tolist())])  # fmt: skip
    normal = plots.normalize_rows(analysis.cm).round(6).tolist()
    _write_csv(out / "confusion_matrix_normalized.csv", header,
               [[n, *row] for n, row in zip(names, normal)])  # fmt: skip
    wrong = _misclassified_rows(analysis)
    cols = ["path", "true", "predicted", "confidence", "loss"]
    p3 = _write_csv(out / "misclassified.csv", cols, [[r[k] for k in cols] for r in wrong])
    return p1, p2, p3


def _grid_samples(analysis: _Analysis) -> np.ndarray:
    n = len(analysis.targets)
    rng = np.random.default_rng(0)
    return np.sort(rng.choice(n, size=min(n, GRID_IMAGES), replace=False))


def _write_pictures(
    out: Path, analysis: _Analysis, history: list[dict[str, str]]
) -> dict[str, Path]:
    names, cm = analysis.classes, analysis.cm
    images: dict[str, Path] = {}
    if history:
        images["curves"] = plots.plot_curves(history, out / "curves.png")
    images |= {
        "confusion_matrix": plots.plot_confusion_matrix(cm, names, out / "confusion_matrix.png"),
        "confusion_matrix_normalized": plots.plot_confusion_matrix(
            cm, names, out / "confusion_matrix_normalized.png", normalize=True
        ),
    }
    if len(names) > plots.MAX_LABELLED_CLASSES:
        images["top_confusions"] = plots.plot_top_confusions(
            top_confused_pairs(cm, names), out / "top_confusions.png"
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


def _grid(
    analysis: _Analysis, index: np.ndarray, path: Path, *, title: str, with_loss: bool = False
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


def _normalise_skipped(skipped: Sequence[Any] | None) -> list[dict[str, str]]:
    out = []
    for item in skipped or ():
        if isinstance(item, (tuple, list)) and len(item) == 2:
            out.append({"path": str(item[0]), "reason": str(item[1])})
        else:
            out.append({"path": str(item), "reason": ""})
    return out


def write_report(
    out_dir: str | Path,
    result: EvalResult,
    classes: Sequence[str],
    *,
    history: Sequence[Mapping[str, Any]] = (),
    config: Mapping[str, Any] | None = None,
    data_summary: DataSplits | Mapping[str, Any] | None = None,
    skipped: Sequence[Any] | None = None,
    title: str = "headstart evaluation report",
    extra: Mapping[str, Any] | None = None,
) -> ReportPaths:
    """Write the report files and pictures of one evaluation into ``out_dir``.

    Args:
        out_dir: Folder to write into (created); only the report's own files are written.
        result: Logits, targets, paths and metrics of the evaluation.
        classes: Class names in label order.
        history: The run's epoch rows (``RunFolder.read_history``), for training curves.
        config: The run's effective configuration (the content of ``config.yaml``).
        data_summary: Images per class per split: a DataSplits or ``{split: counts}``.
        skipped: Files left out of the data, as paths or ``(path, reason)`` pairs.
        title: Title of the report.
        extra: Context put first in ``metrics.json`` (e.g. ``{"model": ..., "data": ...}``).

    Returns:
        The paths of everything written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    analysis = _analyse(result, classes)
    history = list(history)
    per_class_csv, confusion_csv, misclassified_csv = _write_tables(out, analysis)
    images = _write_pictures(out, analysis, history)
    data = summarize_data(data_summary, classes)
    doc = {**(extra or {}), **_json_doc(analysis, title=title, config=config, data=data,
                                        skipped=_normalise_skipped(skipped))}  # fmt: skip
    doc["training"] = training_summary(history)
    metrics_json = out / "metrics.json"
    metrics_json.write_text(json.dumps(doc, indent=2, default=str) + "\n", encoding="utf-8")
    html_path = out / "report.html"
    html_path.write_text(_render_html(doc, analysis, images), encoding="utf-8")
    md_path = out / "report.md"
    md_path.write_text(_render_markdown(doc, analysis, images), encoding="utf-8")
    return ReportPaths(out, html_path, md_path, metrics_json, per_class_csv, confusion_csv,
                       misclassified_csv, images)  # fmt: skip


def _json_doc(
    analysis: _Analysis,
    *,
    title: str,
    config: Mapping[str, Any] | None,
    data: dict[str, dict[str, int]],
    skipped: list[dict[str, str]],
) -> dict[str, Any]:
    cal = analysis.calibration
    return {
        "title": title,
        "metrics": analysis.metrics,
        "calibration": {
            "bins": len(cal.counts),
            "ece": cal.ece,
            "edges": cal.edges.tolist(),
            "counts": cal.counts.tolist(),
            "accuracy": cal.accuracy.tolist(),
            "confidence": cal.confidence.tolist(),
        },
        "top_confused_pairs": [
            {"true": t, "predicted": p, "count": c}
            for t, p, c in top_confused_pairs(analysis.cm, analysis.classes)
        ],
        "num_misclassified": int((analysis.preds != analysis.targets).sum()),
        "data": data,
        "skipped": skipped,
        "config": dict(config) if config is not None else None,
    }


# ----------------------------------------------------------------------------- rendering

_OVERALL = (
    ("acc", "accuracy"),
    ("top5", "top-5 accuracy"),
    ("macro_f1", "macro F1"),
    ("weighted_f1", "weighted F1"),
    ("balanced_acc", "balanced accuracy"),
    ("loss", "loss (cross-entropy)"),
    ("ece", f"expected calibration error ({ECE_BINS} bins)"),
    ("num_images", "images"),
)


def training_summary(history: Sequence[Mapping[str, str]]) -> dict[str, dict[str, float]]:
    """Loss, accuracy (and F1) of the last epoch for train and val, from ``metrics.csv`` rows."""
    if not history:
        return {}
    last = history[-1]
    out: dict[str, dict[str, float]] = {}
    for split in ("train", "val"):
        values = {
            name: float(last[f"{split}_{name}"])
            for name in ("loss", "acc", "f1")
            if last.get(f"{split}_{name}") not in (None, "")
        }
        if values:
            out[split] = {"epoch": float(last.get("epoch", len(history))), **values}
    return out


def _training_rows(training: Mapping[str, Mapping[str, float]]) -> list[list[str]]:
    return [
        [f"{split} (last epoch, {int(v['epoch'])})", *(_fmt(v[k]) if k in v else "" for k in
                                                        ("loss", "acc", "f1"))]
        for split, v in training.items()
    ]  # fmt: skip


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _overall_rows(metrics: Mapping[str, Any]) -> list[tuple[str, str]]:
    return [(label, _fmt(metrics[key])) for key, label in _OVERALL if key in metrics]


def _data_rows(data: dict[str, dict[str, int]], classes: Sequence[str]) -> list[list[str]]:
    splits = list(data)
    names = list(classes) + [c for s in splits for c in data[s] if c not in classes]
    rows = [[c, *(str(data[s].get(c, 0)) for s in splits)] for c in dict.fromkeys(names)]
    rows.append(["total", *(str(sum(data[s].values())) for s in splits)])
    return rows


def _config_text(config: Any) -> str:
    import yaml

    plain = json.loads(json.dumps(config, default=str))
    return yaml.safe_dump(plain, sort_keys=False)


def _sections(doc: dict[str, Any], analysis: _Analysis) -> list[tuple[str, list[str], list[Any]]]:
    """The tables shown in both renderings: ``(heading, header, rows)``."""
    sections: list[tuple[str, list[str], list[Any]]] = [
        ("Overall", ["metric", "value"], _overall_rows(doc["metrics"])),
    ]
    if doc.get("training"):
        sections.append(
            ("Training", ["split", "loss", "accuracy", "macro F1"], _training_rows(doc["training"]))
        )
    if doc["data"]:
        sections.append(
            ("Data", ["class", *doc["data"]], _data_rows(doc["data"], analysis.classes))
        )
    if doc["skipped"]:
        rows = [[s["path"], s["reason"]] for s in doc["skipped"]]
        sections.append((f"Skipped files ({len(rows)})", ["path", "reason"], rows))
    per_class = _per_class_rows(analysis)
    rows = [[r["class"], *(f"{r[k]:.3f}" for k in ("precision", "recall", "f1")),
             str(r["support"]), f"{r['accuracy']:.3f}"] for r in per_class]  # fmt: skip
    sections.append(("Per class", ["class", "precision", "recall", "F1", "support", "accuracy"],
                     rows))  # fmt: skip
    pairs = [[p["true"], p["predicted"], str(p["count"])] for p in doc["top_confused_pairs"]]
    sections.append(("Most confused pairs", ["true", "predicted", "images"], pairs))
    wrong = _misclassified_rows(analysis)
    rows = [[r["path"], r["true"], r["predicted"], f"{r['confidence']:.3f}", f"{r['loss']:.3f}"]
            for r in wrong[:HTML_MISCLASSIFIED]]  # fmt: skip
    shown = f"first {HTML_MISCLASSIFIED} shown, " if len(wrong) > HTML_MISCLASSIFIED else ""
    heading = f"Misclassified ({len(wrong)}; highest loss first; {shown}all in misclassified.csv)"
    sections.append((heading, ["path", "true", "predicted", "confidence", "loss"], rows))
    return sections


_CAPTIONS = {
    "curves": "Training curves",
    "confusion_matrix": "Confusion matrix (counts)",
    "confusion_matrix_normalized": "Confusion matrix (row-normalised)",
    "top_confusions": "Most confused pairs",
    "calibration": "Calibration",
    "predictions": "Sample predictions",
    "top_losses": "Highest-loss images",
}

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;
max-width:1200px;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:0.5em 0 1.5em;font-size:0.9em}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:left}
th{background:#f3f3f3}td{font-variant-numeric:tabular-nums}
.scroll{max-height:480px;overflow:auto;display:inline-block}
img{max-width:100%;height:auto;border:1px solid #eee;margin:0.5em 0}
pre{background:#f6f6f6;padding:1em;overflow:auto;font-size:0.85em}
"""

_SCRIPT = """
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.every(function (i) { return i.complete && i.naturalWidth > 0; });
  document.body.setAttribute("data-image-count", String(imgs.length));
  document.body.setAttribute("data-images-loaded", ok ? "true" : "false");
});
"""


def _html_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    esc = html.escape
    head = "".join(f"<th>{esc(str(h))}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{esc(str(v))}</td>" for v in row) + "</tr>" for row in rows
    )
    return f'<div class="scroll"><table><tr>{head}</tr>{body}</table></div>'


def _html_image(name: str, path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    caption = html.escape(_CAPTIONS.get(name, name))
    return (f"<h2>{caption}</h2>"
            f'<img alt="{caption}" src="data:image/png;base64,{data}">')  # fmt: skip


def _render_html(doc: dict[str, Any], analysis: _Analysis, images: dict[str, Path]) -> str:
    """One self-contained page: inline CSS, images as data: URIs, no external resources."""
    parts = [f"<h1>{html.escape(doc['title'])}</h1>"]
    for heading, header, rows in _sections(doc, analysis):
        parts.append(f"<h2>{html.escape(heading)}</h2>")
        parts.append(_html_table(header, rows) if rows else "<p>none</p>")
    parts += [_html_image(name, path) for name, path in images.items()]
    if doc["config"] is not None:
        parts.append("<h2>Configuration</h2>")
        parts.append(f"<pre>{html.escape(_config_text(doc['config']))}</pre>")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(doc['title'])}</title><style>{_STYLE}</style>"
        f"<script>{_SCRIPT}</script></head>\n<body>\n" + "\n".join(parts) + "\n</body></html>\n"
    )


def _md_cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(_md_cell(h) for h in header) + " |"]
    lines.append("|" + "---|" * len(header))
    lines += ["| " + " | ".join(_md_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _render_markdown(doc: dict[str, Any], analysis: _Analysis, images: dict[str, Path]) -> str:
    parts = [f"# {doc['title']}"]
    for heading, header, rows in _sections(doc, analysis):
        parts.append(f"## {heading}")
        parts.append(_md_table(header, rows) if rows else "none")
    for name, path in images.items():
        caption = _CAPTIONS.get(name, name)
        parts.append(f"## {caption}\n\n![{caption}]({path.name})")
    if doc["config"] is not None:
        parts.append("## Configuration\n\n```yaml\n" + _config_text(doc["config"]) + "```")
    return "\n\n".join(parts) + "\n"
