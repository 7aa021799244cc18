"""An HTTP prediction server (FastAPI + uvicorn, imported lazily) with safe defaults.

Requests are bounded before they cost much: the body size is capped while it streams in (413),
images are decoded by the one decode function with a pixel cap (422 for bombs and broken files),
only ``max_concurrency`` inferences run at once (503 + ``Retry-After`` past that), and an optional
bearer token guards everything but ``/health``. Decoding and inference run off the event loop.
"""

# No `from __future__ import annotations`: FastAPI reads the annotations of the route functions
# defined in create_app, whose types are imported there, lazily.

import asyncio
import hmac
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

import torch

from headstart.artifact import LoadedModel
from headstart.data.images import image_to_tensor
from headstart.errors import ConfigError, DataError

if TYPE_CHECKING:
    from fastapi import FastAPI, Request

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_PIXELS",
    "create_app",
    "predict_bytes",
    "run_server",
]

DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024
DEFAULT_MAX_PIXELS = 40_000_000
"""Pixel cap for uploads (width * height), below Pillow's own bomb limit."""
MAX_BATCH_FILES = 64
MAX_TOPK = 100

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


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


def predict_bytes(
    loaded: LoadedModel, images: list[bytes], *, topk: int, max_pixels: int
) -> list[dict[str, Any]]:
    """Top-k labels for encoded images, as the server returns them (``error`` for bad ones).

    The computation is the one of ``headstart.prediction``: decode, eval transform, softmax.
    """
    tensors: list[torch.Tensor] = []
    slots: list[dict[str, Any]] = []
    for data in images:
        try:
            tensors.append(image_to_tensor(data, loaded.preprocessing, max_pixels=max_pixels))
            slots.append({})
        except DataError as exc:
            slots.append({"error": str(exc).replace("image <bytes>", "the uploaded image")})
    if tensors:
        with torch.inference_mode():
            logits = loaded.model(torch.stack(tensors))
            probs = torch.softmax(logits.float(), dim=1)
        values, indices = probs.topk(min(topk, len(loaded.classes)), dim=1)
        good = (slot for slot in slots if "error" not in slot)
        for slot, vals, idx in zip(good, values.tolist(), indices.tolist()):
            slot["top"] = [{"label": loaded.classes[i], "prob": v} for i, v in zip(idx, vals)]
    return slots


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


def create_app(
    loaded: LoadedModel,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_concurrency: int = 4,
    token: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> "FastAPI":
    """Build the prediction app for ``loaded``.

    Args:
        loaded: The model to serve (a PyTorch model, or an exported one from ``load_exported``).
        max_body_bytes: Larger request bodies get 413 before they are read in full.
        max_concurrency: Inferences running at once; more get 503 with ``Retry-After``.
        token: When set, every route but ``/health`` needs ``Authorization: Bearer <token>``.
        max_pixels: Larger images (width * height) are rejected unread (422).
    """
    from fastapi import Depends, FastAPI, HTTPException, Query, Request
    from starlette.concurrency import run_in_threadpool

    if max_concurrency < 1 or max_body_bytes < 1 or max_pixels < 1:
        raise ConfigError("max_concurrency, max_body_bytes and max_pixels must be positive.")
    loaded.model.eval()
    gate = asyncio.Semaphore(max_concurrency)
    app = FastAPI(title=f"headstart: {loaded.name}", version="1")
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)

    def check_token(request: Request) -> None:
        if token is None:
            return
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            raise HTTPException(
                401, "missing or wrong bearer token.", headers={"WWW-Authenticate": "Bearer"}
            )

    async def infer(images: list[bytes], topk: int) -> list[dict[str, Any]]:
        if gate.locked():
            raise HTTPException(503, "the server is busy; retry shortly.", {"Retry-After": "1"})
        async with gate:
            return await run_in_threadpool(
                predict_bytes, loaded, images, topk=topk, max_pixels=max_pixels
            )

    auth = [Depends(check_token)]
    topk_query = Query(5, ge=1, le=MAX_TOPK, description="Labels per image.")

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metadata", dependencies=auth)
    async def metadata() -> dict[str, Any]:
        return {
            "model": loaded.name,
            "classes": list(loaded.classes),
            "preprocessing": loaded.preprocessing.to_dict(),
            "max_body_bytes": max_body_bytes,
            "max_pixels": max_pixels,
        }

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

    return app


def run_server(
    loaded: LoadedModel,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_concurrency: int = 4,
    token: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
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
    )
    # Connections beyond this get 503 from uvicorn itself, before any body is read.
    limit = max(64, 16 * max_concurrency)
    uvicorn.run(app, host=host, port=port, log_level=log_level, limit_concurrency=limit)
