"""``headstart evaluate``: accuracy, macro-F1 and per-class accuracy on labelled images."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from headstart.cli.options import BatchSize, Json, ModelRef, RunDevice
from headstart.cli.predict import Tta, TtaMode
from headstart.defaults import INFERENCE_BATCH_SIZE

if TYPE_CHECKING:
    from headstart.data.folders import Sample
    from headstart.evaluation.report import ReportPaths
    from headstart.evaluation.result import EvalResult
    from headstart.run_folder import RunFolder


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
            "--out",
            "-o",
            help="Folder for the report and metrics.json: new, empty or an earlier report, "
            "outside DATA [default: RUN/eval for a run, else runs/eval].",
        ),
    ] = None,
    report: Annotated[
        bool,
        typer.Option(
            "--report/--no-report",
            help="Write report.html, report.md, CSVs and pictures next to metrics.json.",
        ),
    ] = True,
    batch_size: BatchSize = INFERENCE_BATCH_SIZE,
    tta: Tta = TtaMode.NONE,
    device: RunDevice = "auto",
    as_json: Json = False,
) -> None:
    """Evaluate a trained model on labelled images; write metrics.json and the report.

    Example: headstart evaluate runs/run photos/test --tta flip
    """
    from headstart.cli.console import out as console
    from headstart.data.folders import load_eval_samples
    from headstart.inference.evaluate import evaluate_samples
    from headstart.inference.load import find_model_dir, load_model
    from headstart.run_folder import RunFolder
    from headstart.speed import keep_freed_memory

    model_dir = find_model_dir(ref)
    run = RunFolder.holding(model_dir) if model_dir is not None else None
    out = _output_dir(out, run, data)  # checked before the model runs
    loaded = load_model(ref, device=device)
    samples = _held_out_samples(run, data) or load_eval_samples(data, loaded.classes)

    from headstart.cli.console import pass_bars

    with keep_freed_memory(), pass_bars():  # no page faults for every batch's activations
        result = evaluate_samples(loaded, samples, batch_size=batch_size, tta=tta.value)
    for item in result.metrics.get("skipped", []):
        from headstart.cli.console import err

        err.print(f"skipped unreadable image {item['path']}: {item['reason']}", markup=False)
    extra = {"model": str(ref), "data": str(data), "tta": tta.value}
    path = _write_outputs(out, result, loaded.classes, run, extra, report=report)
    if as_json:
        import json

        typer.echo(json.dumps(result.metrics, indent=2, default=float))
        return
    _print_table(result.metrics, loaded.classes)
    console.print(f"{'report' if report else 'metrics'} written to {path}")


def _output_dir(out: Path | None, run: RunFolder | None, data: Path) -> Path:
    """Where the report goes: RUN/eval, else a folder (``--out``, ``runs/eval``) checked first.

    Raises:
        ConfigError: The folder lies inside DATA, is a file, or holds files that are not a report.
    """
    from headstart.evaluation.report import check_report_dir
    from headstart.files import refuse_inside

    if out is None and run is not None:
        return run.eval_dir
    folder = out if out is not None else Path("runs") / "eval"
    refuse_inside(folder, data)
    check_report_dir(folder)
    return folder


def _write_outputs(
    out: Path,
    result: EvalResult,
    classes: tuple[str, ...],
    run: RunFolder | None,
    extra: dict[str, str],
    *,
    report: bool,
) -> Path:
    """Write the report (or metrics.json alone) into ``out``; returns the file to point at.

    Raises:
        ConfigError: ``out`` cannot be written (read-only, a file in the way).
    """
    from headstart.errors import ConfigError
    from headstart.evaluation.report import REPORT_KIND
    from headstart.evaluation.result import save_eval_json
    from headstart.files import mark_folder

    try:
        if report:
            return _write_report(out, result, classes, run, extra).html
        mark_folder(out, REPORT_KIND)
        return save_eval_json(result, out / "metrics.json", extra=extra)
    except OSError as exc:
        raise ConfigError(
            f"cannot write the report to {out}: {exc.strerror or exc}; choose a writable --out."
        ) from None


def _held_out_samples(run: RunFolder | None, data: Path) -> list[Sample] | None:
    """When DATA is the folder the run was trained on, its held-out split from splits.json.

    Evaluating every image of a training folder would score the model on what it learned from.
    """
    if run is None:
        return None
    from headstart.cli.console import err

    splits = run.read_splits()
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
    out: Path,
    result: EvalResult,
    classes: tuple[str, ...],
    run: RunFolder | None,
    extra: dict[str, str],
) -> ReportPaths:
    """Write the full report; the run's metrics.csv and config.yaml are used when present."""
    from headstart.evaluation.report import write_report

    return write_report(
        out, result, classes,
        history=run.read_history() if run is not None else (),
        config=run.read_config_doc() if run is not None else None,
        skipped=[(item["path"], item["reason"]) for item in result.metrics.get("skipped", [])],
        title=f"{extra['model']} on {extra['data']}",
        extra=extra,
    )  # fmt: skip


def _print_table(metrics: dict[str, Any], classes: tuple[str, ...]) -> None:
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
