"""Reading uploaded images from HTTP requests, bounded before they cost much.

``BodyLimit`` (ASGI middleware) caps the request body from its Content-Length and again while it
streams in (413); ``read_uploads`` takes the images from a multipart form or a raw ``image/*``
body (415 for other content types). FastAPI and Starlette are imported lazily.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import Request

__all__ = ["BATCH_BODY", "MAX_BATCH_FILES", "PREDICT_BODY", "BodyLimit", "read_uploads"]

MAX_BATCH_FILES = 64

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

PREDICT_BODY = {
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
"""OpenAPI request body of POST /predict (FastAPI cannot infer it: the route reads the body)."""
BATCH_BODY = {
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
"""OpenAPI request body of POST /predict/batch."""


class BodyLimit:
    """ASGI middleware: reject bodies over ``max_bytes`` from Content-Length, or while streaming."""

    def __init__(self, app: App, max_bytes: int) -> None:
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


async def _send_json(send: Send, status: int, doc: dict[str, str]) -> None:
    body = json.dumps(doc).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def read_uploads(request: Request, *, many: bool) -> list[tuple[str, bytes]]:
    """(name, bytes) of the uploaded images: multipart fields, or a raw image body.

    Raises:
        HTTPException: 415 for another content type, 400 for a form without a file.
    """
    from fastapi import HTTPException
    from starlette.datastructures import UploadFile

    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype.startswith("image/") and not many:
        return [("body", await request.body())]
    if ctype != "multipart/form-data":
        accepted = "multipart/form-data" + ("" if many else " or image/*")
        raise HTTPException(415, f"unsupported content type {ctype or 'none'!r}; send {accepted}.")
    form = await request.form(max_files=MAX_BATCH_FILES if many else 1, max_fields=16)
    uploads = [v for _, v in form.multi_items() if isinstance(v, UploadFile)]
    if not uploads:
        raise HTTPException(400, "no file in the form; send the image in a field named 'file'.")
    return [(str(u.filename or "file"), await u.read()) for u in uploads]
