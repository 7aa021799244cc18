"""``headstart serve``: an HTTP prediction server for a run (FastAPI + uvicorn)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from headstart.cli.options import ModelRef, RunDevice
from headstart.defaults import UPLOAD_MAX_PIXELS

if TYPE_CHECKING:
    from headstart.artifact import LoadedModel


# long: typer reads the options from this signature; the body is a dozen lines
def serve(
    ref: ModelRef,
    host: Annotated[
        str, typer.Option("--host", help="Address to bind; 0.0.0.0 exposes it to the network.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="TCP port.")] = 8000,
    max_body_mb: Annotated[
        float, typer.Option("--max-body-mb", min=0.001, help="Largest request body, in MB.")
    ] = 10.0,
    max_concurrency: Annotated[
        int,
        typer.Option(
            "--max-concurrency", min=1, help="Requests in progress at once; more get 503."
        ),
    ] = 8,
    max_pixels: Annotated[
        int,
        typer.Option(
            "--max-pixels",
            min=1,
            help="Largest image (width * height) decoded; lower than for files (check "
            "--max-pixels), since anyone who reaches the port may upload.",
        ),
    ] = UPLOAD_MAX_PIXELS,
    max_batch: Annotated[
        int,
        typer.Option(
            "--max-batch",
            min=1,
            help="Images per batched forward pass of concurrent requests; 1: off.",
        ),
    ] = 1,
    batch_wait_ms: Annotated[
        float,
        typer.Option(
            "--batch-wait-ms", min=0, help="How long a request may wait for others to batch with."
        ),
    ] = 5.0,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar="HEADSTART_TOKEN",
            help="Require 'Authorization: Bearer TOKEN' on every route but /health; "
            "/docs, /redoc and /openapi.json are then turned off.",
        ),
    ] = None,
    device: RunDevice = "auto",
) -> None:
    """Serve predictions over HTTP: POST /predict, POST /predict/batch, GET /health, /metadata.

    REF may also be an exported .onnx / .ts file. Example: headstart serve runs/run --port 8000
    """
    from headstart.inference.serve import bind_port, run_server

    sock = bind_port(host, port)  # a port in use is one line, before the model loads
    try:
        loaded = _load_and_announce(ref, host, sock.getsockname()[1], token, device)
    except BaseException:
        sock.close()
        raise
    run_server(
        loaded,
        sock=sock,
        max_body_bytes=int(max_body_mb * 1024 * 1024),
        max_concurrency=max_concurrency,
        token=token,
        max_pixels=max_pixels,
        max_batch=max_batch,
        batch_wait_ms=batch_wait_ms,
    )


def _load_and_announce(
    ref: str, host: str, port: int, token: str | None, device: str
) -> LoadedModel:
    """Load the model, warn about an exposed address, and say where it is served."""
    from headstart.cli.console import err
    from headstart.inference.load import load_model

    loaded = load_model(ref, device=device)  # a run, a model folder, an exported file or a zoo name
    if host not in ("127.0.0.1", "localhost", "::1"):
        err.print(f"warning: binding {host} exposes the server beyond this machine.")
        if token is None:
            err.print("warning: no --token; anyone who can reach the port can use the model.")
    url = f"http://{host}:{port}"
    where = f"{url} (docs off: --token is set)" if token else f"{url}/docs"
    size = f"{len(loaded.classes)} classes"
    err.print(f"serving {loaded.name} ({size}) on {loaded.device}, at {where}")
    return loaded
