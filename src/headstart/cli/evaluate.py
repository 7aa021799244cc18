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
    model_dir = find_model_dir(ref)
    run_dir = model_dir.parent if model_dir and model_dir.name == "model" else None
    samples = _held_out_samples(run_dir, data) or load_eval_samples(data, loaded.classes)
    from headstart.training.accel import keep_freed_memory

    with keep_freed_memory():  # no page faults for every batch's activations
        result = evaluate_samples(loaded, samples, batch_size=batch_size)
    for item in result.metrics.get("skipped", []):
        from headstart.cli.console import err

        err.print(f"skipped unreadable image {item['path']}: {item['reason']}", markup=False)
    if out is None:
        out = (
            model_dir.parent if model_dir and model_dir.name == "model" else Path("runs")
        ) / "eval"
    extra = {"model": str(ref), "data": str(data)}
    if report:
        path = _write_report(out, result, loaded.classes, run_dir, extra).html
    else:
        path = save_eval_json(result, out / "metrics.json", extra=extra)
    if as_json:
        import json

        typer.echo(json.dumps(result.metrics, indent=2, default=float))
        return
    _print_table(result.metrics, loaded.classes)
    console.print(f"{'report' if report else 'metrics'} written to {path}")


def _held_out_samples(run_dir: Path | None, data: Path) -> list | None:
    """When DATA is the folder the run was trained on, its held-out split from splits.json.

    Evaluating every image of a training folder would score the model on what it learned from.
    """
    if run_dir is None or not (run_dir / "splits.json").is_file():
        return None
    from headstart.cli.console import err
    from headstart.data.folders import read_splits

    splits = read_splits(run_dir / "splits.json")
    root = splits.origin.get("root")
    made_here = splits.origin.get("layout") == "split" or splits.origin.get("carved_from_train")
    if not root or not made_here or Path(root).resolve() != Path(data).resolve():
        return None
    name, samples = ("test", splits.test) if splits.test else ("validation", splits.val)
    note = "" if splits.test else " (it also picked the best epoch, so it flatters the model)"
    err.print(
        f"note: {data} is the folder this run was trained on; evaluating its held-out {name} "
        f"split from splits.json: {len(samples)} images{note}",
        markup=False,
    )
    return list(samples)


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
        skipped=[(item["path"], item["reason"]) for item in result.metrics.get("skipped", [])],
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
