"""The report's sections rendered as one self-contained HTML page and as Markdown (text only).

Both renderings show the same tables (:func:`sections`), then the pictures, then the configuration.
The HTML page embeds its pictures as data: URIs and uses no external resource; the Markdown links
the PNGs next to it.
"""

from __future__ import annotations

import base64
import html
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from headstart.evaluation.analysis import Analysis, misclassified_rows, per_class_rows
from headstart.evaluation.metrics import ECE_BINS

__all__ = ["render_html", "render_markdown", "sections"]

HTML_MISCLASSIFIED = 50
"""Misclassified images listed in the renderings (misclassified.csv has all)."""

Section = tuple[str, list[str], list[list[str]]]
"""A table: ``(heading, header, rows)``."""

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


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _overall_rows(metrics: Mapping[str, object]) -> list[list[str]]:
    return [[label, _fmt(metrics[key])] for key, label in _OVERALL if key in metrics]


def _training_rows(training: Mapping[str, Mapping[str, float]]) -> list[list[str]]:
    return [
        [f"{split} (last epoch, {int(v['epoch'])})", *(_fmt(v[k]) if k in v else "" for k in
                                                        ("loss", "acc", "f1"))]
        for split, v in training.items()
    ]  # fmt: skip


def _data_rows(data: dict[str, dict[str, int]], classes: Sequence[str]) -> list[list[str]]:
    splits = list(data)
    names = list(classes) + [c for s in splits for c in data[s] if c not in classes]
    rows = [[c, *(str(data[s].get(c, 0)) for s in splits)] for c in dict.fromkeys(names)]
    rows.append(["total", *(str(sum(data[s].values())) for s in splits)])
    return rows


def _per_class_section(analysis: Analysis) -> Section:
    rows = [
        [str(r["class"]), *(f"{r[k]:.3f}" for k in ("precision", "recall", "f1")),
         str(r["support"]), f"{r['accuracy']:.3f}"]
        for r in per_class_rows(analysis)
    ]  # fmt: skip
    return "Per class", ["class", "precision", "recall", "F1", "support", "accuracy"], rows


def _misclassified_section(analysis: Analysis) -> Section:
    wrong = misclassified_rows(analysis)
    rows = [[str(r["path"]), str(r["true"]), str(r["predicted"]), f"{r['confidence']:.3f}",
             f"{r['loss']:.3f}"] for r in wrong[:HTML_MISCLASSIFIED]]  # fmt: skip
    shown = f"first {HTML_MISCLASSIFIED} shown, " if len(wrong) > HTML_MISCLASSIFIED else ""
    heading = f"Misclassified ({len(wrong)}; highest loss first; {shown}all in misclassified.csv)"
    return heading, ["path", "true", "predicted", "confidence", "loss"], rows


def sections(doc: Mapping[str, Any], analysis: Analysis) -> list[Section]:
    """The tables shown in both renderings, from the ``metrics.json`` document."""
    found: list[Section] = [("Overall", ["metric", "value"], _overall_rows(doc["metrics"]))]
    if doc.get("training"):
        found.append(
            ("Training", ["split", "loss", "accuracy", "macro F1"], _training_rows(doc["training"]))
        )
    if doc["data"]:
        found.append(("Data", ["class", *doc["data"]], _data_rows(doc["data"], analysis.classes)))
    if doc["skipped"]:
        rows = [[s["path"], s["reason"]] for s in doc["skipped"]]
        found.append((f"Skipped files ({len(rows)})", ["path", "reason"], rows))
    found.append(_per_class_section(analysis))
    pairs = [[p["true"], p["predicted"], str(p["count"])] for p in doc["top_confused_pairs"]]
    found.append(("Most confused pairs", ["true", "predicted", "images"], pairs))
    found.append(_misclassified_section(analysis))
    return found


def _config_text(config: Mapping[str, Any]) -> str:
    import yaml

    plain = json.loads(json.dumps(config, default=str))
    return yaml.safe_dump(plain, sort_keys=False)


def _html_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    esc = html.escape
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{esc(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f'<div class="scroll"><table><tr>{head}</tr>{body}</table></div>'


def _html_image(name: str, path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    caption = html.escape(_CAPTIONS.get(name, name))
    return (f"<h2>{caption}</h2>"
            f'<img alt="{caption}" src="data:image/png;base64,{data}">')  # fmt: skip


def render_html(doc: Mapping[str, Any], analysis: Analysis, images: Mapping[str, Path]) -> str:
    """One self-contained page: inline CSS, the PNGs of ``images`` as data: URIs."""
    parts = [f"<h1>{html.escape(doc['title'])}</h1>"]
    for heading, header, rows in sections(doc, analysis):
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


_MD_ESCAPES = str.maketrans(
    {"&": "&amp;", "<": "&lt;", ">": "&gt;", "|": "\\|", "[": "\\[", "]": "\\]", "`": "\\`",
     "\\": "\\\\", "\n": " ", "\r": " "}
)  # fmt: skip


def _md_text(value: str) -> str:
    """User text (class names, paths, reasons) made inert in a Markdown cell or heading.

    HTML is escaped (a renderer shows ``<img ...>`` as text, never runs it), and so are the
    characters that would close a cell, open a link or a code span; line breaks become spaces.
    """
    return value.translate(_MD_ESCAPES)


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(_md_text(h) for h in header) + " |"]
    lines.append("|" + "---|" * len(header))
    lines += ["| " + " | ".join(_md_text(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _md_code(text: str, language: str) -> str:
    """A fenced block longer than any run of backticks in ``text`` (which cannot close it)."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    body = text if text.endswith("\n") else text + "\n"
    return f"{fence}{language}\n{body}{fence}"


def render_markdown(doc: Mapping[str, Any], analysis: Analysis, images: Mapping[str, Path]) -> str:
    """The same report as Markdown, linking the PNGs of ``images`` by file name.

    Every cell and heading goes through :func:`_md_text`, so names and paths cannot inject HTML
    or links wherever the Markdown is rendered.
    """
    parts = [f"# {_md_text(doc['title'])}"]
    for heading, header, rows in sections(doc, analysis):
        parts.append(f"## {_md_text(heading)}")
        parts.append(_md_table(header, rows) if rows else "none")
    for name, path in images.items():
        caption = _md_text(_CAPTIONS.get(name, name))
        parts.append(f"## {caption}\n\n![{caption}]({path.name})")
    if doc["config"] is not None:
        parts.append("## Configuration\n\n" + _md_code(_config_text(doc["config"]), "yaml"))
    return "\n\n".join(parts) + "\n"
