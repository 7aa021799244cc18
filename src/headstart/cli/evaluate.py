"""``headstart evaluate``: accuracy, macro-F1 and per-class accuracy on labelled images."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from headstart.cli.options import BatchSize, Json, ModelRef


def evaluate(
    ref: ModelRef,
    data: Annotated[
        Path,
        typer.Argument(
            help="Labelled images: class sub-folders, or a folder with test/ (else val/).",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="Folder for the report and metrics.json [default: RUN/eval]."
        ),
    ] = None,
    report: Annotated[
        bool,
        typer.Option(
            "--report/--no-report",
            help="Write report.html, report.md, CSVs and pictures next to metrics.json.",
        ),
    ] = True,
    batch_size: BatchSize = 64,
    as_json: Json = False,
) -> None:
    """Evaluate a trained model on labelled images; write metrics.json and the report.

    Example: headstart evaluate runs/run photos/test
    """
    from headstart.artifact import find_model_dir, load_model
    from headstart.cli.console import out as console
    from headstart.data.folders import load_eval_samples
    from headstart.evaluation import evaluate_samples, save_eval_json

    loaded = load_model(ref)
    samples = load_eval_samples(data, loaded.classes)
    result = evaluate_samples(loaded, samples, batch_size=batch_size)
    model_dir = find_model_dir(ref)
    if out is None:
        out = (
            model_dir.parent if model_dir and model_dir.name == "model" else Path("runs")
        ) / "eval"
    extra = {"model": str(ref), "data": str(data)}
    if report:
        run_dir = model_dir.parent if model_dir and model_dir.name == "model" else None
        path = _write_report(out, result, loaded.classes, run_dir, extra).html
    else:
        path = save_eval_json(result, out / "metrics.json", extra=extra)
    if as_json:
        import json

        typer.echo(json.dumps(result.metrics, indent=2, default=float))
        return
    _print_table(result.metrics, loaded.classes)
    console.print(f"{'report' if report else 'metrics'} written to {path}")


def _write_report(
    out: Path, result: Any, classes: tuple[str, ...], run_dir: Path | None, extra: dict
) -> Any:
    """Write the full report; the run's metrics.csv and config.yaml are used when present."""
    import yaml

    from headstart.report import write_report

    config_file = run_dir / "config.yaml" if run_dir else None
    config = (
        yaml.safe_load(config_file.read_text()) if config_file and config_file.is_file() else None
    )
    return write_report(
        out, result, classes,
        history_csv=run_dir / "metrics.csv" if run_dir else None,
        config=config,
        title=f"{extra['model']} on {extra['data']}",
        extra=extra,
    )  # fmt: skip


def _print_table(metrics: dict, classes: tuple[str, ...]) -> None:
    from rich.table import Table

    from headstart.cli.console import out

    out.print(
        f"accuracy {metrics['acc']:.4f}   macro-F1 {metrics['macro_f1']:.4f}   "
        f"loss {metrics['loss']:.4f}   images {metrics['num_images']}"
        + (f"   top-5 {metrics['top5']:.4f}" if "top5" in metrics else "")
    )
    table = Table("class", "accuracy", "precision", "recall", "F1", "support")
    per_class = metrics["per_class"]
    for name in classes:
        row = per_class[name]
        table.add_row(
            name,
            f"{row['accuracy']:.3f}",
            f"{row['precision']:.3f}",
            f"{row['recall']:.3f}",
            f"{row['f1']:.3f}",
            str(row["support"]),
        )
    out.print(table)
