"""Rendering: the same sections in HTML and Markdown, escaped, with the pictures and the config."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from headstart.evaluation.analysis import analyse, report_doc
from headstart.evaluation.metrics import summarize
from headstart.evaluation.render import HTML_MISCLASSIFIED, render_html, render_markdown, sections
from headstart.evaluation.result import EvalResult

CLASSES = ["a|b", "<c>"]


def _doc_and_analysis(n: int = 4, **kwargs):
    logits = torch.zeros(n, 2)
    logits[:, 1] = 1.0  # always "<c>"
    targets = torch.zeros(n, dtype=torch.long)
    result = EvalResult(summarize(logits, targets, CLASSES), logits, targets, ())
    analysis = analyse(result, CLASSES)
    return report_doc(analysis, title="<T>", **kwargs), analysis


def test_sections_without_optional_parts() -> None:
    doc, analysis = _doc_and_analysis()
    headings = [heading for heading, _, _ in sections(doc, analysis)]
    assert headings[:3] == ["Overall", "Per class", "Most confused pairs"]
    assert headings[3].startswith("Misclassified (4; highest loss first; all in")
    overall = dict(sections(doc, analysis)[0][2])
    assert overall["accuracy"] == "0.0000" and overall["images"] == "4"


def test_sections_with_training_data_and_skipped_files() -> None:
    doc, analysis = _doc_and_analysis(
        history=[{"epoch": "3", "val_loss": "0.5", "val_acc": "0.25"}],
        data_summary={"train": [2, 1]}, skipped=["bad.png"],
    )  # fmt: skip
    found = {heading: rows for heading, _, rows in sections(doc, analysis)}
    assert found["Training"] == [["val (last epoch, 3)", "0.5000", "0.2500", ""]]
    assert found["Data"] == [["a|b", "2"], ["<c>", "1"], ["total", "3"]]
    assert found["Skipped files (1)"] == [["bad.png", ""]]


def test_long_misclassified_lists_are_cut() -> None:
    doc, analysis = _doc_and_analysis(n=HTML_MISCLASSIFIED + 5)
    heading, _, rows = sections(doc, analysis)[-1]
    assert len(rows) == HTML_MISCLASSIFIED and f"first {HTML_MISCLASSIFIED} shown" in heading


def test_html_escapes_and_embeds(tmp_path: Path) -> None:
    doc, analysis = _doc_and_analysis(config={"model": "x<y"})
    picture = tmp_path / "calibration.png"
    picture.write_bytes(b"\x89PNG fake")
    text = render_html(doc, analysis, {"calibration": picture})
    assert "<title>&lt;T&gt;</title>" in text and "&lt;c&gt;" in text and "<c>" not in text
    assert 'src="data:image/png;base64,iVBORyBmYWtl"' in text and "<h2>Calibration</h2>" in text
    assert "model: x&lt;y" in text


def test_markdown_escapes_pipes_and_links_pictures(tmp_path: Path) -> None:
    doc, analysis = _doc_and_analysis(config={"epochs": 3})
    text = render_markdown(doc, analysis, {"curves": tmp_path / "curves.png"})
    assert text.startswith("# &lt;T&gt;\n\n## Overall\n\n| metric | value |\n|---|---|\n")
    assert "| a\\|b | &lt;c&gt; | 4 |" in text  # the most confused pair
    assert "## Training curves\n\n![Training curves](curves.png)" in text
    assert text.endswith("```yaml\nepochs: 3\n```\n")


def test_markdown_carries_no_html_or_links_from_user_text(tmp_path: Path) -> None:
    classes = ["<img src=x onerror=alert(1)>", "[x](javascript:alert(1))"]
    logits = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    paths = ("data/<b>bold</b>/1.png", "data/`tick`/2.png")
    result = EvalResult(summarize(logits, torch.tensor([0, 1]), classes), logits,
                        torch.tensor([0, 1]), paths)  # fmt: skip
    analysis = analyse(result, classes)
    doc = report_doc(analysis, title="<script>alert(1)</script> on data",
                     skipped=[("data/<i>x</i>.png", "not <an> image")],
                     config={"data": "a ```\n# injected"})  # fmt: skip
    text = render_markdown(doc, analysis, {})
    outside_code = text.split("## Configuration")[0]
    for raw in ("<img", "<script", "<b>", "<i>", "<an>"):
        assert raw not in outside_code, raw
    assert not re.search(r"(?<!\\)\]\(", outside_code), "no link can open"
    assert "&lt;img src=x onerror=alert(1)&gt;" in text
    assert "\\[x\\](javascript:alert(1))" in text and "data/\\`tick\\`/2.png" in text
    assert text.startswith("# &lt;script&gt;alert(1)&lt;/script&gt; on data\n")
    config = text.split("## Configuration\n\n")[1]
    assert config.startswith("````yaml\n") and config.endswith("````\n")  # longer than ```
