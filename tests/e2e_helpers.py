"""Helpers for end-to-end tests: a tiny timm model saved as a local weight file."""

from __future__ import annotations

from pathlib import Path

TINY_MODEL = "timm:test_resnet"


def tiny_weights(folder: Path) -> Path:
    """Save randomly initialised ``test_resnet`` weights (a stand-in for a pretrained file)."""
    import timm
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = timm.create_model("test_resnet", pretrained=False)
    path = folder / "test_resnet.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def run_cli(args: list[str]) -> tuple[int, str, str]:
    """Run the CLI in-process through ``main`` (the real error boundary): (exit code, out, err)."""
    import io
    from contextlib import redirect_stderr, redirect_stdout

    from headstart.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with redirect_stdout(out), redirect_stderr(err):
        try:
            main(args)
        except SystemExit as exc:
            code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()
