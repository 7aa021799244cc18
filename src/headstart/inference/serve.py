"""An HTTP prediction server (FastAPI + uvicorn, imported lazily) with safe defaults.

Requests are bounded before they cost much: the body size is capped while it streams in (413),
images are decoded by the one decode function with a pixel cap (422 for bombs and broken files),
only ``max_concurrency`` inferences run at once (503 + ``Retry-After`` past that), and an optional
bearer token guards everything but ``/health``. Decoding and inference run off the event loop.

With ``max_batch > 1`` the forward passes of concurrent requests are micro-batched: each request is
decoded in the threadpool, then one worker thread stacks the inputs that queued up while the
previous batch ran (or within ``batch_wait_ms`` of the oldest) and runs the model once for all.
``max_batch=1`` runs each request's forward pass on its own, in the threadpool.
"""

# No `from __future__ import annotations`: FastAPI reads the annotations of the route functions
# defined in create_app, whose types are imported there, lazily.

import asyncio
import hmac
import logging
import queue
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from concurrent.futures import Future
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from headstart.artifact import LoadedModel
from headstart.data.images import image_to_tensor
from headstart.errors import ConfigError, DataError

if TYPE_CHECKING:
    from fastapi import FastAPI, Request

__all__ = [
    "DEFAULT_BATCH_WAIT_MS",
    "DEFAULT_MAX_BATCH",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_CONCURRENCY",
    "DEFAULT_MAX_PIXELS",
    "WORKER_NAME",
    "MicroBatcher",
    "create_app",
    "predict_bytes",
    "run_server",
]

DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024
DEFAULT_MAX_PIXELS = 40_000_000
"""Pixel cap for uploads (width * height), below Pillow's own bomb limit."""
DEFAULT_MAX_CONCURRENCY = 8
"""Requests decoding, waiting or running at once; more get 503. Above ``max_batch`` so that one
batch can fill while the previous one runs."""
DEFAULT_MAX_BATCH = 1
"""Batching is off by default: on the shared 2-core CPU machine it was measured on
(``benchmarks/serve_load.py``, 8 clients, efficientnet_lite0) it did not win reliably."""
DEFAULT_BATCH_WAIT_MS = 5.0
MAX_BATCH_FILES = 64
WORKER_NAME = "headstart-batcher"
MAX_TOPK = 100

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

logger = logging.getLogger(__name__)


class BodyLimit:
    """ASGI middleware: reject bodies over ``max_bytes`` from Content-Length, or while streaming."""

    def __init__(self, app: Callable[..., Awaitable[None]], max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on with a byte-counting ``receive``."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await _send_json(send, 413, {"detail": self._message()})
            return
        seen = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge(self._message())
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _TooLarge as exc:
            if not started:
                await _send_json(send, 413, {"detail": str(exc)})

    def _message(self) -> str:
        mb = self.max_bytes / 1024 / 1024
        return f"request body is over the limit of {mb:g} MB; send a smaller image."


class _TooLarge(Exception):
    pass


async def _send_json(send: Send, status: int, doc: dict[str, Any]) -> None:
    import json

    body = json.dumps(doc).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _decode(
    loaded: LoadedModel, images: list[bytes], max_pixels: int
) -> tuple[torch.Tensor | None, list[dict[str, Any]]]:
    """Stack the readable images into one input batch; ``error`` slots for the others."""
    tensors: list[torch.Tensor] = []
    slots: list[dict[str, Any]] = []
    for data in images:
        try:
            tensors.append(image_to_tensor(data, loaded.preprocessing, max_pixels=max_pixels))
            slots.append({})
        except DataError as exc:
            slots.append({"error": str(exc).replace("image <bytes>", "the uploaded image")})
    return (torch.stack(tensors) if tensors else None), slots


def _fill_top(
    slots: list[dict[str, Any]], probs: torch.Tensor, classes: tuple[str, ...], topk: int
) -> list[dict[str, Any]]:
    """Put the top-k labels of each row of ``probs`` into the slots without an error, in order."""
    values, indices = probs.topk(min(topk, len(classes)), dim=1)
    good = (slot for slot in slots if "error" not in slot)
    for slot, vals, idx in zip(good, values.tolist(), indices.tolist()):
        slot["top"] = [{"label": classes[i], "prob": v} for i, v in zip(idx, vals)]
    return slots


def predict_bytes(
    loaded: LoadedModel, images: list[bytes], *, topk: int, max_pixels: int
) -> list[dict[str, Any]]:
    """Top-k labels for encoded images, as the server returns them (``error`` for bad ones).

    The computation is the one of ``headstart.inference.predict``: decode, eval transform, softmax.
    """
    batch, slots = _decode(loaded, images, max_pixels)
    if batch is not None:
        with torch.inference_mode():
            probs = torch.softmax(loaded.model(batch).float(), dim=1)
        _fill_top(slots, probs, loaded.classes, topk)
    return slots


@dataclass
class _Job:
    batch: torch.Tensor
    future: "Future[torch.Tensor]"
    enqueued: float


class MicroBatcher:
    """Run the forward passes of concurrent requests together, in one worker thread.

    Requests submit their decoded input batch; the worker takes what is queued (after the oldest
    job, it waits up to ``wait_s`` for more, up to ``max_batch`` rows), concatenates it, runs the
    model once and hands each request its own rows of class probabilities. A job is never split:
    one larger than ``max_batch`` (``/predict/batch``) runs on its own.
    """

    def __init__(self, model: nn.Module, *, max_batch: int, wait_s: float) -> None:
        self.model, self.max_batch, self.wait_s = model, max_batch, wait_s
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._carry: _Job | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the worker thread (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=WORKER_NAME, daemon=True)
            self._thread.start()
            logger.info(
                "micro-batching up to %d rows, %g ms wait", self.max_batch, self.wait_s * 1e3
            )

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the running batch, stop the worker and fail the jobs still queued."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._queue.put(None)
        thread.join(timeout)
        leftovers = [self._carry] if self._carry is not None else []
        self._carry = None
        while not self._queue.empty():
            leftovers.append(self._queue.get_nowait())
        for job in leftovers:
            if job is not None and job.future.set_running_or_notify_cancel():
                job.future.set_exception(RuntimeError("the server is shutting down."))

    def queued(self) -> int:
        """Jobs waiting for a forward pass (not counting the running one)."""
        return self._queue.qsize() + (self._carry is not None)

    async def submit(self, batch: torch.Tensor) -> torch.Tensor:
        """Class probabilities (N, num_classes) for ``batch`` (N, C, H, W), run with others."""
        if self._thread is None:
            raise RuntimeError("the batcher is not running; serve the app with its lifespan.")
        future: Future[torch.Tensor] = Future()
        self._queue.put(_Job(batch, future, time.monotonic()))
        return await asyncio.wrap_future(future)

    def _run(self) -> None:
        while (jobs := self._collect()) is not None:
            self._forward([job for job in jobs if job.future.set_running_or_notify_cancel()])

    def _collect(self) -> list[_Job] | None:
        """The next jobs to run together, or None once stopped."""
        first, self._carry = self._carry or self._queue.get(), None
        if first is None:
            return None
        jobs, rows = [first], len(first.batch)
        deadline = first.enqueued + self.wait_s
        while rows < self.max_batch:
            left = deadline - time.monotonic()
            try:
                job = self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:  # stop: run what we have, then see the sentinel again
                self._queue.put(None)
                break
            if rows + len(job.batch) > self.max_batch:
                self._carry = job
                break
            jobs.append(job)
            rows += len(job.batch)
        return jobs

    def _forward(self, jobs: list[_Job]) -> None:
        """One forward pass for ``jobs``; each future gets its rows (or the error)."""
        if not jobs:
            return
        try:
            with torch.inference_mode():
                logits = self.model(torch.cat([job.batch for job in jobs]))
                probs = torch.softmax(logits.float(), dim=1)
        except Exception as exc:  # noqa: BLE001 - handed to each waiting request (500)
            logger.exception("batched forward pass failed")
            for job in jobs:
                job.future.set_exception(exc)
            return
        start = 0
        for job in jobs:
            job.future.set_result(probs[start : start + len(job.batch)])
            start += len(job.batch)


_PREDICT_BODY = {
    "requestBody": {
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                    "required": ["file"],
                }
            },
            "image/*": {"schema": {"type": "string", "format": "binary"}},
        },
        "required": True,
    }
}
_BATCH_BODY = {
    "requestBody": {
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "files": {"type": "array", "items": {"type": "string", "format": "binary"}}
                    },
                }
            }
        },
        "required": True,
    }
}


async def _read_uploads(request: "Request", *, many: bool) -> list[tuple[str, bytes]]:
    """(name, bytes) of the uploaded images: multipart fields, or a raw image body."""
    from fastapi import HTTPException

    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype.startswith("image/") and not many:
        return [("body", await request.body())]
    if ctype != "multipart/form-data":
        accepted = "multipart/form-data" + ("" if many else " or image/*")
        raise HTTPException(415, f"unsupported content type {ctype or 'none'!r}; send {accepted}.")
    form = await request.form(max_files=MAX_BATCH_FILES if many else 1, max_fields=16)
    uploads = [v for _, v in form.multi_items() if hasattr(v, "read")]
    if not uploads:
        raise HTTPException(400, "no file in the form; send the image in a field named 'file'.")
    return [(str(u.filename or "file"), await u.read()) for u in uploads]


def _check_token(token: str | None) -> Callable[..., None]:
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


Infer = Callable[[list[bytes], int], Awaitable[list[dict[str, Any]]]]


def _make_infer(
    loaded: LoadedModel, batcher: MicroBatcher | None, *, max_concurrency: int, max_pixels: int
) -> Infer:
    """The gated prediction coroutine: 503 past ``max_concurrency``, work off the event loop."""
    from fastapi import HTTPException
    from starlette.concurrency import run_in_threadpool

    gate = asyncio.Semaphore(max_concurrency)

    async def infer(images: list[bytes], topk: int) -> list[dict[str, Any]]:
        if gate.locked():
            raise HTTPException(503, "the server is busy; retry shortly.", {"Retry-After": "1"})
        async with gate:
            if batcher is None:
                return await run_in_threadpool(
                    predict_bytes, loaded, images, topk=topk, max_pixels=max_pixels
                )
            batch, slots = await run_in_threadpool(_decode, loaded, images, max_pixels)
            if batch is not None:
                _fill_top(slots, await batcher.submit(batch), loaded.classes, topk)
            return slots

    return infer


def _add_info_routes(app: "FastAPI", loaded: LoadedModel, auth: list[Any], limits: dict) -> None:
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


def _add_predict_routes(app: "FastAPI", infer: Infer, auth: list[Any]) -> None:
    """POST /predict (one image) and POST /predict/batch (several, errors per file)."""
    from fastapi import HTTPException, Query, Request

    topk_query = Query(5, ge=1, le=MAX_TOPK, description="Labels per image.")

    @app.post("/predict", dependencies=auth, openapi_extra=_PREDICT_BODY)
    async def predict(request: Request, topk: int = topk_query) -> dict[str, Any]:
        (_, data), *_ = await _read_uploads(request, many=False)
        (result,) = await infer([data], topk)
        if "error" in result:
            raise HTTPException(422, result["error"])
        return result

    @app.post("/predict/batch", dependencies=auth, openapi_extra=_BATCH_BODY)
    async def predict_batch(request: Request, topk: int = topk_query) -> dict[str, Any]:
        uploads = await _read_uploads(request, many=True)
        results = await infer([data for _, data in uploads], topk)
        return {"results": [{"file": n, **r} for (n, _), r in zip(uploads, results)]}


def _lifespan(batcher: MicroBatcher | None) -> Callable[[Any], Any]:
    """Start the batcher's worker with the app and stop it (joined) on shutdown."""

    @asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
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
        loaded: The model to serve (a PyTorch model, or an exported one from ``load_exported``).
        max_body_bytes: Larger request bodies get 413 before they are read in full.
        max_concurrency: Requests decoding, queued or running at once; more get 503 with
            ``Retry-After``.
        token: When set, every route but ``/health`` needs ``Authorization: Bearer <token>``.
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
    loaded.model.eval()
    batcher = None
    if max_batch > 1:
        batcher = MicroBatcher(loaded.model, max_batch=max_batch, wait_s=batch_wait_ms / 1000)
    app = FastAPI(title=f"headstart: {loaded.name}", version="1", lifespan=_lifespan(batcher))
    app.state.batcher = batcher
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    auth = [Depends(_check_token(token))]
    limits = {"max_body_bytes": max_body_bytes, "max_pixels": max_pixels, "max_batch": max_batch}
    _add_info_routes(app, loaded, auth, limits)
    infer = _make_infer(loaded, batcher, max_concurrency=max_concurrency, max_pixels=max_pixels)
    _add_predict_routes(app, infer, auth)
    return app


def run_server(
    loaded: LoadedModel,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
    token: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_batch: int = DEFAULT_MAX_BATCH,
    batch_wait_ms: float = DEFAULT_BATCH_WAIT_MS,
    log_level: str = "info",
) -> None:
    """Serve ``loaded`` with uvicorn until interrupted (binds to loopback by default)."""
    import uvicorn

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
    uvicorn.run(app, host=host, port=port, log_level=log_level, limit_concurrency=limit)
