"""`headstart serve` as its own process on loopback: it answers like `headstart predict`, survives a
bounded mixed load, and its memory does not grow once warm."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.e2e_helpers import TINY_MODEL, tiny_weights

pytest.importorskip("fastapi")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _post(port: int, body: bytes, content_type: str = "image/png") -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        try:
            conn.request(
                "POST", "/predict?topk=2", body=body, headers={"Content-Type": content_type}
            )
        except (BrokenPipeError, ConnectionResetError):
            # the server answered an oversized body (413) and closed before we finished sending;
            # its answer is still waiting in the socket
            pass
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        conn.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    from tests.conftest import make_image_folder
    from tests.test_safe_loading import run

    root = tmp_path_factory.mktemp("served")
    data = make_image_folder(root / "data", ("a", "b", "c"), n=6, layout="split")
    args = ["train", str(data), "--model", TINY_MODEL, "--weights", str(tiny_weights(root)),
            "--strategy", "feature-extract", "--epochs", "1", "--image-size", "32",
            "--out", str(root / "run")]  # fmt: skip
    assert run(args)[0] == 0
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "headstart", "serve", str(root / "run"), "--port", str(port),
         "--max-body-mb", "0.5", "--max-pixels", "1000000"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                break
        except OSError:
            time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail(f"server did not start: {proc.stderr.read().decode()[-2000:]}")
    yield port, proc, root / "run", data
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def test_answers_like_predict(server) -> None:
    from headstart.inference.load import load_model
    from headstart.inference.predict import predict_files

    port, _, run_dir, data = server
    image = sorted((data / "val").rglob("*.png"))[0]
    status, body = _post(port, image.read_bytes())
    assert status == 200, body
    expected = predict_files(load_model(run_dir), [image], topk=2)[0]
    assert [t["label"] for t in body["top"]] == list(expected.labels)
    assert body["top"][0]["prob"] == pytest.approx(expected.probs[0], abs=1e-5)


def test_mixed_load_leaves_it_up_without_memory_growth(server) -> None:
    from PIL import Image

    port, proc, _, data = server
    good = sorted((data / "train").rglob("*.png"))[0].read_bytes()
    bomb_path = data.parent / "bomb.png"
    Image.new("L", (2000, 2000)).save(bomb_path)  # 4 Mpx > the 1 Mpx cap, tiny file
    thin_path = data.parent / "thin.png"
    Image.new("RGB", (200_000, 1)).save(thin_path)  # under the cap, enormous once resized
    cases = [
        (good, "image/png", 200),
        (b"not an image at all", "image/png", 422),
        (b"x" * 600_000, "image/png", 413),
        (bomb_path.read_bytes(), "image/png", 422),
        (good, "text/plain", 415),
        (uuid.uuid4().bytes * 8, "image/jpeg", 422),
        (thin_path.read_bytes(), "image/png", 422),
    ]

    def shoot(n: int) -> list[tuple[int, int]]:
        with ThreadPoolExecutor(4) as pool:
            jobs = [pool.submit(_post, port, b, t) for b, t, _ in (cases * n)]
            return [(job.result()[0], want) for job, (_, _, want) in zip(jobs, cases * n)]

    shoot(10)  # warm up allocators, thread pools and caches
    before = _rss_kib(proc.pid)
    results = shoot(25)  # 175 requests, 6 in 7 of them bad
    after = _rss_kib(proc.pid)
    assert proc.poll() is None, "the server died"
    assert all(got == want for got, want in results), [r for r in results if r[0] != r[1]][:5]
    # a leak of one decoded bomb (4 Mpx RGB = 12 MB) per bad request would add ~300 MB here
    assert after - before < 50 * 1024, f"RSS grew from {before} KiB to {after} KiB"
    assert os.path.exists(f"/proc/{proc.pid}")
