"""The typer app, its commands, and the one place that turns errors into exit codes."""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable
from typing import Annotated, Any

import typer

from headstart.cli import (
    check,
    demo,
    embed,
    evaluate,
    export,
    lr_find,
    models,
    predict,
    serve,
    train,
)

__all__ = ["app", "main"]

app = typer.Typer(
    name="headstart",
    help="Fine-tune pretrained image classifiers on your own class-per-folder images.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,  # help text is plain: rich markup would swallow [bracketed] words
)


def _summary(command: Callable[..., Any]) -> str:
    """A command's first docstring paragraph, whole (click would cut it to the terminal's width)."""
    return " ".join((inspect.getdoc(command) or "").split("\n\n")[0].split())


for _name, _command in (
    ("train", train.train), ("lr-find", lr_find.lr_find), ("evaluate", evaluate.evaluate),
    ("predict", predict.predict), ("embed", embed.embed), ("export", export.export),
    ("serve", serve.serve), ("check", check.check), ("demo", demo.demo),
):  # fmt: skip
    app.command(_name, no_args_is_help=_name != "demo", short_help=_summary(_command))(_command)
app.add_typer(models.app, name="models")


@app.callback()
def _root(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show full tracebacks instead of one-line errors.")
    ] = False,
) -> None:
    """Fine-tune pretrained image classifiers on your own class-per-folder images."""


def _is_click_error(exc: BaseException) -> bool:
    """Click errors (typer vendors its own click, so recognise them by shape)."""
    return hasattr(exc, "exit_code") and hasattr(exc, "format_message")


def _usage_error(exc: Exception) -> None:
    """Print a click usage error as one line (or help, when a command got no arguments)."""
    if type(exc).__name__ == "NoArgsIsHelpError":  # typer has printed the help already
        raise SystemExit(0)
    ctx = getattr(exc, "ctx", None)
    command = getattr(ctx, "command_path", "") or "headstart"
    hint = f" (see '{command} --help')"
    message = " ".join(exc.format_message().split())  # type: ignore[attr-defined]
    typer.echo(f"error: {message}{hint}", err=True)
    raise SystemExit(exc.exit_code)  # type: ignore[attr-defined]


def main(argv: list[str] | None = None) -> None:
    """Run the CLI: user errors print one line and exit 2; unexpected errors exit 1."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    if debug:
        args = ["--debug"] + [a for a in args if a != "--debug"]
    try:
        code = app(args=args, prog_name="headstart", standalone_mode=False)
    except SystemExit:
        raise
    except KeyboardInterrupt:
        typer.echo("headstart: interrupted", err=True)
        raise SystemExit(130) from None
    except Exception as exc:  # noqa: BLE001 - the CLI boundary
        _handle_error(exc, debug=debug)
    raise SystemExit(code if isinstance(code, int) else 0)


def _handle_error(exc: Exception, *, debug: bool) -> None:
    from headstart.errors import HeadstartError

    if _is_click_error(exc):
        _usage_error(exc)
    if type(exc).__name__ == "Abort":
        typer.echo("headstart: aborted", err=True)
        raise SystemExit(1) from None
    if debug:
        raise exc
    from headstart.processes import secondary_process

    if isinstance(exc, HeadstartError):
        if not secondary_process():
            typer.echo(f"error: {exc}", err=True)
        elif not getattr(exc, "told_by_rank_zero", False):  # its own: rank 0 cannot know
            typer.echo(f"error (a secondary training process): {exc}", err=True)
        raise SystemExit(2) from None
    if type(exc).__name__ == "RankZeroFailed":  # the first process prints its own error
        raise SystemExit(1) from None
    who = "headstart (a secondary training process)" if secondary_process() else "headstart"
    typer.echo(
        f"{who}: unexpected {type(exc).__name__}: {exc} (run again with --debug for the "
        "traceback)",
        err=True,
    )
    raise SystemExit(1) from None
