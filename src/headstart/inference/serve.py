"""An HTTP prediction server (FastAPI + uvicorn, imported lazily) with safe defaults.

Requests are bounded before they cost much: the body size is capped while it streams in (413,
``headstart.inference.uploads``), images are decoded by the one decode function with a pixel cap
(422 for bombs, broken files and images too thin or wide to decode), only ``max_concurrency``
inferences run at once (503 + ``Retry-After`` past that), and an optional bearer token guards
everything but ``/health`` (with a token, the docs and the OpenAPI schema, which name the model and
its classes, are turned off). The port is bound before the model is served, so a port in use is a
one-line ``ConfigError``. Decoding and inference run off the event loop, on the model's device.

With ``max_batch > 1`` the forward passes of concurrent requests are micro-batched
(``headstart.inference.batcher``): each request is decoded in the threadpool, then one worker
thread runs the model once for the inputs that queued up. ``max_batch=1`` runs each request's
forward pass on its own, in the threadpool.
"""

# No `from __future__ import annotations`: FastAPI reads the annotations of the route functions
# defined in create_app, whose types are imported there, lazily.

import asyncio
import errno
import hmac
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any

import torch

from headstart.artifact import LoadedModel
from headstart.defaults import TOPK, UPLOAD_MAX_PIXELS
from headstart.errors import ConfigError
from headstart.inference.batcher import MicroBatcher
from headstart.inference.predict import ModelRunner, decode_images, top_k
from headstart.inference.uploads import BATCH_BODY, PREDICT_BODY, BodyLimit, read_uploads
from headstart.preprocessing import PreprocessSpec

if TYPE_CHECKING:
    from fastapi import FastAPI, Request, params

__all__ = [
    "DEFAULT_BATCH_WAIT_MS",
    "DEFAULT_MAX_BATCH",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_CONCURRENCY",
    "DEFAULT_MAX_PIXELS",
    "bind_port",
    "create_app",
    "run_server",
]

DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024
DEFAULT_MAX_PIXELS = UPLOAD_MAX_PIXELS
"""Pixel cap for uploads (width * height), below Pillow's own bomb limit (see ``defaults``)."""
DEFAULT_MAX_CONCURRENCY = 8
"""Requests decoding, waiting or running at once; more get 503. Above ``max_batch`` so that one
batch can fill while the previous one runs."""
DEFAULT_MAX_BATCH = 1
"""Batching is off by default: on the shared 2-core CPU machine it was measured on
(``benchmarks/serve_load.py``, 8 clients, efficientnet_lite0) it did not win reliably."""
DEFAULT_BATCH_WAIT_MS = 5.0
MAX_TOPK = 100

Answer = dict[str, Any]
"""One image's JSON answer: ``{"top": [{"label", "prob"}, ...]}`` or ``{"error": "..."}``."""


def _decode(
    preprocessing: PreprocessSpec, images: list[bytes], max_pixels: int
) -> tuple[torch.Tensor | None, list[Answer]]:
    """Stack the readable images into one input batch; ``error`` answers for the others."""
    batch, errors = decode_images(images, preprocessing, max_pixels=max_pixels)
    answers: list[Answer] = [
        {} if error is None else {"error": error.replace("image <bytes>", "the uploaded image")}
        for error in errors
    ]
    return batch, answers


def _fill_top(
    answers: list[Answer], probs: torch.Tensor, classes: tuple[str, ...], topk: int
) -> list[Answer]:
    """Put the top-k labels of each row of ``probs`` into the answers without an error, in order."""
    good = (answer for answer in answers if "error" not in answer)
    for answer, (labels, values, _) in zip(good, top_k(probs, classes, topk)):
        answer["top"] = [{"label": label, "prob": v} for label, v in zip(labels, values)]
    return answers


def _check_token(token: str | None) -> "Callable[[Request], None]":
    """A dependency that demands ``Authorization: Bearer <token>`` (no-op without a token)."""
    from fastapi import HTTPException, Request

    def check(request: Request) -> None:
        if token is None:
            return
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            raise HTTPException(
                401, "missing or wrong bearer token.", headers={"WWW-Authenticate": "Bearer"}
            )

    return check


Infer = Callable[[list[bytes], int], Awaitable[list[Answer]]]


def _make_infer(
    loaded: LoadedModel,
    runner: ModelRunner,
    batcher: MicroBatcher | None,
    *,
    max_concurrency: int,
    max_pixels: int,
) -> Infer:
    """The gated prediction coroutine: 503 past ``max_concurrency``, work off the event loop.

    Decoding runs in the threadpool; the forward pass in the batcher's worker, else in the
    threadpool too.
    """
    from fastapi import HTTPException
    from starlette.concurrency import run_in_threadpool

    gate = asyncio.Semaphore(max_concurrency)

    async def infer(images: list[bytes], topk: int) -> list[Answer]:
        if gate.locked():
            raise HTTPException(503, "the server is busy; retry shortly.", {"Retry-After": "1"})
        async with gate:
            batch, answers = await run_in_threadpool(
                _decode, loaded.preprocessing, images, max_pixels
            )
            if batch is not None:
                if batcher is not None:
                    probs = await batcher.submit(batch)
                else:
                    probs = await run_in_threadpool(runner.probabilities, batch)
                _fill_top(answers, probs, loaded.classes, topk)
            return answers

    return infer


def _add_info_routes(
    app: "FastAPI", loaded: LoadedModel, auth: "list[params.Depends]", limits: dict[str, int]
) -> None:
    """GET /health (open) and GET /metadata."""

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metadata", dependencies=auth)
    async def metadata() -> dict[str, Any]:
        return {
            "model": loaded.name,
            "classes": list(loaded.classes),
            "preprocessing": loaded.preprocessing.to_dict(),
            **limits,
        }


def _add_predict_routes(app: "FastAPI", infer: Infer, auth: "list[params.Depends]") -> None:
    """POST /predict (one image) and POST /predict/batch (several, errors per file)."""
    from fastapi import HTTPException, Query, Request

    topk_query = Query(TOPK, ge=1, le=MAX_TOPK, description="Labels per image.")

    @app.post("/predict", dependencies=auth, openapi_extra=PREDICT_BODY)
    async def predict(request: Request, topk: int = topk_query) -> Answer:
        (_, data), *_ = await read_uploads(request, many=False)
        (result,) = await infer([data], topk)
        if "error" in result:
            raise HTTPException(422, result["error"])
        return result

    @app.post("/predict/batch", dependencies=auth, openapi_extra=BATCH_BODY)
    async def predict_batch(request: Request, topk: int = topk_query) -> dict[str, Any]:
        uploads = await read_uploads(request, many=True)
        results = await infer([data for _, data in uploads], topk)
        return {"results": [{"file": n, **r} for (n, _), r in zip(uploads, results)]}


def _lifespan(
    batcher: MicroBatcher | None,
) -> Callable[["FastAPI"], AbstractAsyncContextManager[None]]:
    """Start the batcher's worker with the app and stop it (joined) on shutdown."""

    @asynccontextmanager
    async def lifespan(_app: "FastAPI") -> AsyncIterator[None]:
        if batcher is not None:
            batcher.start()
        try:
            yield
        finally:
            if batcher is not None:
                await asyncio.to_thread(batcher.stop)

    return lifespan


def create_app(
    loaded: LoadedModel,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
    token: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_batch: int = DEFAULT_MAX_BATCH,
    batch_wait_ms: float = DEFAULT_BATCH_WAIT_MS,
) -> "FastAPI":
    """Build the prediction app for ``loaded``.

    Args:
        loaded: The model to serve (a PyTorch model, or an exported one from ``load_exported``),
            run on its device.
        max_body_bytes: Larger request bodies get 413 before they are read in full.
        max_concurrency: Requests decoding, queued or running at once; more get 503 with
            ``Retry-After``.
        token: When set, every route but ``/health`` needs ``Authorization: Bearer <token>``, and
            ``/docs``, ``/redoc`` and ``/openapi.json`` are turned off (404).
        max_pixels: Larger images (width * height) are rejected unread (422).
        max_batch: Most images per micro-batched forward pass; 1 turns batching off.
        batch_wait_ms: How long the oldest queued request may wait for others to join its batch.
    """
    from fastapi import Depends, FastAPI

    if min(max_concurrency, max_body_bytes, max_pixels, max_batch) < 1 or batch_wait_ms < 0:
        raise ConfigError(
            "max_concurrency, max_body_bytes, max_pixels and max_batch must be positive and "
            f"batch_wait_ms at least 0; got {max_concurrency}, {max_body_bytes}, {max_pixels}, "
            f"{max_batch} and {batch_wait_ms}."
        )
    runner = ModelRunner(loaded)
    batcher = None
    if max_batch > 1:
        wait_s = batch_wait_ms / 1000
        batcher = MicroBatcher(runner.probabilities, max_batch=max_batch, wait_s=wait_s)
    docs = {"docs_url": None, "redoc_url": None, "openapi_url": None} if token else {}
    app = FastAPI(
        title=f"headstart: {loaded.name}", version="1", lifespan=_lifespan(batcher), **docs
    )
    app.state.batcher = batcher
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    auth = [Depends(_check_token(token))]
    limits = {"max_body_bytes": max_body_bytes, "max_pixels": max_pixels, "max_batch": max_batch}
    _add_info_routes(app, loaded, auth, limits)
    infer = _make_infer(
        loaded, runner, batcher, max_concurrency=max_concurrency, max_pixels=max_pixels
    )
    _add_predict_routes(app, infer, auth)
    return app


def bind_port(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host``:``port`` (0: any free port), for :func:`run_server`.

    Raises:
        ConfigError: The port is in use, needs privileges, or ``host`` is not an address here.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(f"port {port} is in use; choose another --port.") from None
        if exc.errno == errno.EACCES:
            raise ConfigError(
                f"port {port} needs privileges on this machine; choose a --port above 1023."
            ) from None
        reason = exc.strerror or str(exc)
        raise ConfigError(
            f"cannot listen on {host}:{port}: {reason}; check --host (an address of this "
            "machine, e.g. 127.0.0.1 or 0.0.0.0)."
        ) from None
    sock.set_inheritable(True)
    return sock


def run_server(
    loaded: LoadedModel,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    sock: socket.socket | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
    token: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_batch: int = DEFAULT_MAX_BATCH,
    batch_wait_ms: float = DEFAULT_BATCH_WAIT_MS,
    log_level: str = "info",
) -> None:
    """Serve ``loaded`` with uvicorn until interrupted (binds to loopback by default).

    ``sock`` is a socket from :func:`bind_port`; without one, ``host``:``port`` is bound here.

    Raises:
        ConfigError: The port is in use or cannot be bound (see :func:`bind_port`).
    """
    import uvicorn

    sock = sock or bind_port(host, port)
    app = create_app(
        loaded,
        max_body_bytes=max_body_bytes,
        max_concurrency=max_concurrency,
        token=token,
        max_pixels=max_pixels,
        max_batch=max_batch,
        batch_wait_ms=batch_wait_ms,
    )
    # Connections beyond this get 503 from uvicorn itself, before any body is read.
    limit = max(64, 16 * max_concurrency)
    bound_host, bound_port = sock.getsockname()[:2]
    config = uvicorn.Config(
        app, host=bound_host, port=bound_port, log_level=log_level, limit_concurrency=limit
    )
    with sock:
        uvicorn.Server(config).run(sockets=[sock])
