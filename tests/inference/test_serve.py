"""The HTTP server, exercised through a real uvicorn on a free loopback port (offline)."""

from __future__ import annotations

import http.client
import io
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from headstart.artifact import LoadedModel  # noqa: E402
from headstart.errors import ConfigError  # noqa: E402
from headstart.inference.batcher import WORKER_NAME  # noqa: E402
from headstart.inference.predict import predict_files  # noqa: E402
from headstart.inference.serve import create_app  # noqa: E402
from tests.inference.helpers import tiny_loaded  # noqa: E402

CLASSES = ("cat", "dog", "fox")


def png_bytes(size: tuple[int, int] = (40, 30), seed: int = 0) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


@contextmanager
def serving(app: Any) -> Iterator[int]:
    """Run ``app`` with uvicorn in a thread on a free 127.0.0.1 port; yield the port."""
    import uvicorn

    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):  # bounded wait for startup (10 s)
        if server.started:
            break
        threading.Event().wait(0.05)
    assert server.started, "uvicorn did not start"
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def request(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        raw = resp.read()
        hdrs = {k.lower(): v for k, v in resp.getheaders()}
    finally:
        conn.close()
    try:
        doc = json.loads(raw)
    except ValueError:
        doc = raw.decode(errors="replace")
    return resp.status, hdrs, doc


def multipart(files: list[tuple[str, str, bytes]]) -> tuple[bytes, str]:
    """Encode (field, filename, data) parts; return (body, content type)."""
    boundary = uuid.uuid4().hex
    out = io.BytesIO()
    for field, name, data in files:
        out.write(f"--{boundary}\r\n".encode())
        out.write(f'Content-Disposition: form-data; name="{field}"; filename="{name}"\r\n'.encode())
        out.write(b"Content-Type: application/octet-stream\r\n\r\n" + data + b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={boundary}"


@pytest.fixture(scope="module")
def loaded() -> LoadedModel:
    return tiny_loaded(CLASSES)


@pytest.fixture(scope="module", params=[1, 16], ids=["unbatched", "batched"])
def port(loaded: LoadedModel, request: pytest.FixtureRequest) -> Iterator[int]:
    app = create_app(
        loaded,
        max_body_bytes=200_000,
        max_concurrency=4,
        max_pixels=250_000,
        max_batch=request.param,
    )
    with serving(app) as p:
        yield p


def test_health_metadata_and_docs(port: int, loaded: LoadedModel) -> None:
    assert request(port, "GET", "/health")[:1] == (200,)
    status, _, doc = request(port, "GET", "/metadata")
    assert status == 200
    assert doc["classes"] == list(CLASSES) and doc["model"] == loaded.name
    assert doc["preprocessing"] == loaded.preprocessing.to_dict()
    assert request(port, "GET", "/docs")[0] == 200
    status, _, spec = request(port, "GET", "/openapi.json")
    assert status == 200 and "/predict/batch" in spec["paths"]


def test_predict_matches_predict_files(port: int, loaded: LoadedModel, tmp_path: Path) -> None:
    for seed in range(3):
        data = png_bytes(seed=seed)
        file = tmp_path / f"{seed}.png"
        file.write_bytes(data)
        (expected,) = predict_files(loaded, [file], topk=2)
        body, ctype = multipart([("file", "x.png", data)])
        status, _, doc = request(port, "POST", "/predict?topk=2", body, {"Content-Type": ctype})
        assert status == 200, doc
        raw_status, _, raw = request(
            port, "POST", "/predict?topk=2", data, {"Content-Type": "image/png"}
        )
        assert raw_status == 200 and raw == doc
        assert [t["label"] for t in doc["top"]] == list(expected.labels)
        assert doc["top"][0]["prob"] == pytest.approx(expected.probs[0], abs=1e-5)


def test_batch_reports_bad_files_per_file(port: int) -> None:
    body, ctype = multipart([("files", "a.png", png_bytes()), ("files", "b.png", b"not an image")])
    status, _, doc = request(port, "POST", "/predict/batch", body, {"Content-Type": ctype})
    assert status == 200
    first, second = doc["results"]
    assert first["file"] == "a.png" and first["top"]
    assert second["file"] == "b.png" and "not a supported image" in second["error"]


def test_bad_requests_get_short_4xx(port: int) -> None:
    status, _, doc = request(port, "POST", "/predict", b"{}", {"Content-Type": "application/json"})
    assert status == 415 and "multipart" in doc["detail"]
    status, _, doc = request(port, "POST", "/predict", b"garbage", {"Content-Type": "image/png"})
    assert status == 422 and "Traceback" not in doc["detail"] and "/" not in doc["detail"][:40]
    truncated = png_bytes()[:200]
    status, _, doc = request(port, "POST", "/predict", truncated, {"Content-Type": "image/png"})
    assert status == 422
    body, ctype = multipart([])
    assert request(port, "POST", "/predict", body, {"Content-Type": ctype})[0] == 400
    assert (
        request(port, "POST", "/predict?topk=0", png_bytes(), {"Content-Type": "image/png"})[0]
        == 422
    )


def test_pixel_cap_rejects_bombs(port: int) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (600, 600)).save(buf, format="PNG")
    big = buf.getvalue()  # 360k pixels > 250k cap, yet a tiny body
    status, _, doc = request(port, "POST", "/predict", big, {"Content-Type": "image/png"})
    assert status == 422 and "decompression bomb" in doc["detail"]


def test_body_cap_from_content_length(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        head = "POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
        sock.sendall(f"{head}Content-Length: 100000000\r\n\r\n".encode() + b"x" * 1000)
        reply = sock.recv(4096)
    assert reply.startswith(b"HTTP/1.1 413")


def test_body_cap_while_streaming(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        head = "POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
        sock.sendall(f"{head}Transfer-Encoding: chunked\r\n\r\n".encode())
        chunk = b"y" * 50_000
        for _ in range(5):  # 250 kB > 200 kB cap, no Content-Length
            sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        reply = sock.recv(4096)
    assert reply.startswith(b"HTTP/1.1 413")


def test_token_required(loaded: LoadedModel) -> None:
    with serving(create_app(loaded, token="s3cret")) as port:
        assert request(port, "GET", "/health")[0] == 200
        status, headers, _ = request(port, "GET", "/metadata")
        assert status == 401 and headers["www-authenticate"] == "Bearer"
        bad = {"Authorization": "Bearer nope", "Content-Type": "image/png"}
        assert request(port, "POST", "/predict", png_bytes(), bad)[0] == 401
        good = {"Authorization": "Bearer s3cret", "Content-Type": "image/png"}
        assert request(port, "POST", "/predict", png_bytes(), good)[0] == 200
        for path in ("/docs", "/redoc", "/openapi.json"):  # they name the model: off with a token
            assert request(port, "GET", path)[0] == 404, path
            status, _, doc = request(port, "GET", path, headers={"Authorization": "Bearer s3cret"})
            assert status == 404 and loaded.name not in str(doc), path


class _Blocking(nn.Module):
    """Signals when a forward starts, then waits (bounded) until released."""

    def __init__(self) -> None:
        super().__init__()
        self.entered, self.release = threading.Event(), threading.Event()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.entered.set()
        self.release.wait(timeout=20)
        return torch.zeros(len(x), len(CLASSES))


@pytest.mark.parametrize("max_batch", [1, 16])
def test_concurrency_limit_gives_503(loaded: LoadedModel, max_batch: int) -> None:
    slow = _Blocking()
    fake = LoadedModel(slow, CLASSES, loaded.preprocessing, "fake")
    headers = {"Content-Type": "image/png"}
    app = create_app(fake, max_concurrency=1, max_batch=max_batch)
    with serving(app) as port, ThreadPoolExecutor(1) as pool:
        first = pool.submit(request, port, "POST", "/predict", png_bytes(), headers)
        assert slow.entered.wait(timeout=20)
        status, hdrs, _ = request(port, "POST", "/predict", png_bytes(), headers)
        slow.release.set()
        assert status == 503 and hdrs["retry-after"] == "1"
        assert first.result(timeout=30)[0] == 200
        assert request(port, "POST", "/predict", png_bytes(), headers)[0] == 200


def test_mini_load_keeps_server_up(port: int) -> None:
    good = png_bytes()
    kinds = ["good", "good", "good", "junk"] * 15  # 60 requests, a quarter malformed

    def one(kind: str) -> int:
        data = good if kind == "good" else b"\x89PNG broken"
        return request(port, "POST", "/predict", data, {"Content-Type": "image/png"})[0]

    with ThreadPoolExecutor(4) as pool:
        statuses = list(pool.map(one, kinds, timeout=120))
    for kind, status in zip(kinds, statuses):
        assert (status == 200) if kind == "good" else (400 <= status < 500), (kind, status)
    assert request(port, "GET", "/health")[0] == 200


class _Gated(nn.Module):
    """Wraps a model, records each forward's batch size; forwards wait (bounded) until released."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner, self.sizes = inner, []
        self.entered, self.release = threading.Event(), threading.Event()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.sizes.append(len(x))
        self.entered.set()
        self.release.wait(timeout=20)
        return self.inner(x)


def _workers() -> int:
    return sum(t.name == WORKER_NAME for t in threading.enumerate())


def _burst(loaded: LoadedModel, images: list[bytes], max_batch: int) -> tuple[list[Any], list[int]]:
    """POST the images at once: the first holds the model until the others are queued.

    Returns the response documents, in order, and the batch size of each forward call.
    """
    gated = _Gated(loaded.model)
    fake = LoadedModel(gated, loaded.classes, loaded.preprocessing, loaded.name)
    app = create_app(fake, max_batch=max_batch, batch_wait_ms=0)
    headers = {"Content-Type": "image/png"}
    workers = _workers()
    with serving(app) as port, ThreadPoolExecutor(len(images)) as pool:
        assert _workers() == workers + 1
        try:
            first = pool.submit(request, port, "POST", "/predict?topk=3", images[0], headers)
            assert gated.entered.wait(timeout=20)
            rest = [
                pool.submit(request, port, "POST", "/predict?topk=3", data, headers)
                for data in images[1:]
            ]
            for _ in range(400):  # bounded wait (20 s) until the others are all queued
                if app.state.batcher.queued() == len(rest):
                    break
                time.sleep(0.05)
        finally:
            gated.release.set()
        replies = [f.result(timeout=60) for f in [first, *rest]]
    assert _workers() == workers, "the batch worker outlived the app"
    assert all(status == 200 for status, _, _ in replies), replies
    return [doc for _, _, doc in replies], gated.sizes


def test_batched_predictions_equal_single(loaded: LoadedModel, tmp_path: Path) -> None:
    images = [png_bytes(size=(40 + 3 * i, 30 + i), seed=i) for i in range(6)]
    docs, sizes = _burst(loaded, images, max_batch=16)
    assert sizes == [1, 5]
    for i, (data, doc) in enumerate(zip(images, docs)):
        file = tmp_path / f"{i}.png"
        file.write_bytes(data)
        (single,) = predict_files(loaded, [file], topk=3, batch_size=1)
        assert [t["label"] for t in doc["top"]] == list(single.labels)
        assert [t["prob"] for t in doc["top"]] == pytest.approx(single.probs, abs=1e-5)


@pytest.mark.parametrize(("max_batch", "expected"), [(16, [1, 7]), (4, [1, 4, 3])])
def test_concurrent_requests_share_forward_calls(
    loaded: LoadedModel, max_batch: int, expected: list[int]
) -> None:
    docs, sizes = _burst(loaded, [png_bytes(seed=i) for i in range(8)], max_batch=max_batch)
    assert sizes == expected  # 8 requests, fewer forward calls, none over max_batch
    assert all(len(doc["top"]) == 3 for doc in docs)


def test_max_batch_one_runs_each_request_alone(loaded: LoadedModel) -> None:
    gated = _Gated(loaded.model)
    gated.release.set()
    app = create_app(LoadedModel(gated, CLASSES, loaded.preprocessing, "x"), max_batch=1)
    assert app.state.batcher is None
    headers = {"Content-Type": "image/png"}
    with serving(app) as port, ThreadPoolExecutor(4) as pool:
        futures = [
            pool.submit(request, port, "POST", "/predict", png_bytes(seed=i), headers)
            for i in range(4)
        ]
        assert [f.result(timeout=60)[0] for f in futures] == [200] * 4
    assert gated.sizes == [1] * 4


@pytest.mark.parametrize("settings", [{"max_batch": 0}, {"batch_wait_ms": -1.0}])
def test_bad_batch_settings_are_config_errors(loaded: LoadedModel, settings: dict) -> None:
    with pytest.raises(ConfigError, match="max_batch"):
        create_app(loaded, **settings)


def _thin_png(size: tuple[int, int] = (20_000, 1)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (90, 30, 200)).save(buf, format="PNG")
    return buf.getvalue()  # about 140 bytes; about 5 GB once resized for a 224 px model


def test_a_thin_image_is_422_with_a_one_line_reason(port: int) -> None:
    for size in ((20_000, 1), (1, 20_000)):
        status, _, doc = request(
            port, "POST", "/predict", _thin_png(size), {"Content-Type": "image/png"}
        )
        assert status == 422 and "\n" not in doc["detail"], doc
        assert doc["detail"].startswith("cannot read the uploaded image")


def test_an_upload_out_of_memory_is_422_and_the_batch_goes_on(
    port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    import headstart.inference.predict as predict_module

    thin = _thin_png()
    real = predict_module.image_to_tensor

    def fake(source, *args, **kwargs):  # noqa: ANN001, ANN202 - the one decode function's shape
        if source == thin:
            raise MemoryError
        return real(source, *args, **kwargs)

    monkeypatch.setattr(predict_module, "image_to_tensor", fake)
    status, _, doc = request(port, "POST", "/predict", thin, {"Content-Type": "image/png"})
    assert status == 422 and "too large to decode" in doc["detail"], doc
    assert doc["detail"].startswith("cannot read the uploaded image")
    body, ctype = multipart([("files", "thin.png", thin), ("files", "ok.png", png_bytes())])
    status, _, doc = request(port, "POST", "/predict/batch", body, {"Content-Type": ctype})
    assert status == 200
    first, second = doc["results"]
    assert "too large to decode" in first["error"] and second["top"]


def test_a_port_in_use_is_a_config_error() -> None:
    from headstart.inference.serve import bind_port

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=f"^port {port} is in use; choose another --port.$"):
            bind_port("127.0.0.1", port)
    with bind_port("127.0.0.1", 0) as sock:
        assert sock.getsockname()[1] > 0
    with pytest.raises(ConfigError, match="check --host"):
        bind_port("192.0.2.1", 0)  # TEST-NET-1: not an address of this machine
