"""``headstart check``: audit a data folder (read-only) and print what cannot be used, and why."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from headstart.defaults import MAX_PIXELS

if TYPE_CHECKING:
    from headstart.data.audit import AuditReport

_MAX_LISTED = 20
_LOAD_SPLITS_LOGGERS = ("headstart.data.folders", "headstart.data.class_folders")


def check(
    data: Annotated[
        Path,
        typer.Argument(
            help="Data folder: DATA/<class>/* or DATA/train|val|test/<class>/*.",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Also write the report as JSON to this file (outside DATA; an existing file is "
            "replaced only if it is a report of this command).",
        ),
    ] = None,
    max_pixels: Annotated[
        int, typer.Option(min=1, help="Larger images (width x height) are rejected as bombs.")
    ] = MAX_PIXELS,
    min_size: Annotated[
        int, typer.Option(min=1, help="Images with a shorter side (pixels) are rejected.")
    ] = 8,
    max_bad_fraction: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Unusable above this fraction of bad images.")
    ] = 0.1,
    num_workers: Annotated[
        int | None,
        typer.Option(min=1, help="Decoding threads (default: CPUs, at most 16)."),
    ] = None,
    workers: Annotated[int | None, typer.Option(min=1, hidden=True)] = None,  # the old name
) -> None:
    """Decode every image in DATA and report bad files, duplicates, leaks and class counts.

    Never modifies, moves or deletes a file. Exits 0 when the data can be trained on, else 2.

    Example: headstart check photos --out report.json
    """
    from headstart.cli.console import out as console
    from headstart.data.audit import audit_folder
    from headstart.errors import DataError

    if out is not None:
        _check_out(out, data)
    from headstart.cli.console import pass_bars

    with _quiet_load_splits(), pass_bars():  # the report below lists what load_splits logs
        report = audit_folder(
            data, max_pixels=max_pixels, min_size=min_size, workers=num_workers or workers
        )
    if report.num_samples or report.bad:
        print_report(report)
    if out is not None:
        _save(report, out)
        console.print(f"report written to {out}")
    problems = report.problems(max_bad_fraction)
    if problems:
        raise DataError(problems[0])
    console.print("the data can be used for training", style="green")


def _check_out(out: Path, data: Path) -> None:
    """Refuse an ``--out`` that would write into DATA, is a folder, or would replace a file that
    is not a report of ``headstart check`` (checked before the audit, which may take a while).

    Raises:
        ConfigError: One line saying why and which path to use instead.
    """
    from headstart.data.audit import is_data_report
    from headstart.errors import ConfigError
    from headstart.files import refuse_inside

    refuse_inside(out, data)
    if out.is_dir():
        raise ConfigError(
            f"--out {out} is a folder; give the report a file name, e.g. "
            f"--out {_free_name(out / 'data_report.json')}."
        )
    if (out.exists() or out.is_symlink()) and not is_data_report(out):
        other = _free_name(out.parent / "data_report.json")
        raise ConfigError(
            f"--out {out} exists and is not a headstart data report; headstart does not "
            f"overwrite it: choose another path, e.g. --out {other}."
        )


def _free_name(path: Path) -> Path:
    """``path``, or ``stem-2.suffix``, ``stem-3.suffix``, ... : the first that does not exist."""
    n = 2
    candidate = path
    while candidate.exists() or candidate.is_symlink():
        candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
        n += 1
    return candidate


def _save(report: AuditReport, out: Path) -> None:
    """Write the report to ``out``, or say in one line why it cannot be written."""
    from headstart.errors import ConfigError

    try:
        report.save(out)
    except OSError as exc:
        raise ConfigError(
            f"cannot write the report to {out}: {exc.strerror or exc}; choose a writable --out."
        ) from None


@contextlib.contextmanager
def _quiet_load_splits() -> Iterator[None]:
    """Log only errors from ``load_splits`` and the class folders it reads, then restore."""
    loggers = [logging.getLogger(name) for name in _LOAD_SPLITS_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def print_report(report: AuditReport) -> None:
    """Print an audit report: class counts, bad files by kind, duplicates, leaks, warnings."""
    from rich.table import Table

    from headstart.cli.console import out
    from headstart.data.audit import BAD_KINDS

    counts = report.counts
    splits = [s for s in ("train", "val", "test") if sum(counts[s].values())]
    table = Table("class", *splits, title=f"usable images in {report.root}")
    for name in report.splits.classes:
        table.add_row(name, *(str(counts[s][name]) for s in splits))
    out.print(table)
    out.print(
        f"{report.num_samples} image files decoded in {report.seconds:.1f}s: "
        f"{report.num_bad_samples} cannot be used ({report.bad_fraction:.1%})"
    )
    for kind, heading in BAD_KINDS.items():
        files = [b for b in report.bad if b.kind == kind]
        if files:
            out.print(f"\n{heading} ({len(files)})", style="bold")
            _print_items([f"  {b.path}: {b.reason}" for b in files])
    if report.duplicates:
        out.print(f"\nidentical files ({len(report.duplicates)} groups)", style="bold")
        _print_items(["  " + ", ".join(group) for group in report.duplicates])
    if report.leaks:
        out.print(f"\nimages in train and in val/test ({len(report.leaks)})", style="bold")
        _print_items([f"  {x.other} ({x.split}) = {x.train} (train)" for x in report.leaks])
    for warning in report.warnings:
        out.print(f"warning: {warning}", style="yellow")


def _print_items(lines: list[str]) -> None:
    from headstart.cli.console import out

    for line in lines[:_MAX_LISTED]:
        out.print(line, markup=False)
    if len(lines) > _MAX_LISTED:
        out.print(f"  ... and {len(lines) - _MAX_LISTED} more (see --out FILE for all)")
