"""Bounded load test of ``headstart serve`` on a local server (loopback only).

Starts a server subprocess for ``--ref`` (a run folder, a model folder, an exported file or a zoo
name), sends ``--requests`` POST /predict requests from ``--clients`` threads, a ``--bad`` fraction
of them malformed, oversized or decompression bombs, then prints requests/s, p50/p99 latency of the
good requests, status counts and the server's RSS before and after. ``--max-batch``,
``--batch-wait-ms`` and ``--max-concurrency`` set the server's micro-batching and limits
(``--max-batch 1`` turns batching off).

Example:
    uv run python benchmarks/serve_load.py --ref bundled:efficientnet_lite0 \
        --requests 200 --clients 8 --bad 0 --max-batch 16
"""

from __future__ import annotations

import argparse
import http.client
import io
import socket
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

MAX_BODY_MB = 1.0
MAX_PIXELS = 40_000_000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return -1


def png(width: int, height: int, *, noise: bool, seed: int = 0) -> bytes:
    if noise:
        pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
        image = Image.fromarray(pixels)
    else:
        image = Image.new("RGB", (width, height), (120, 30, 200))
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def payloads() -> dict[str, bytes]:
    return {
        "good": png(320, 240, noise=True),
        "malformed": b"\x89PNG\r\n\x1a\n" + b"\x00" * 500,
        "oversized": b"\xff" * int((MAX_BODY_MB + 0.2) * 1024 * 1024),
        "bomb": png(8000, 8000, noise=False),  # 64 Mpx in a small file
    }


def start_server(ref: str, port: int, args: argparse.Namespace) -> subprocess.Popen:
    code = (
        "import sys\n"
        "from headstart.inference.load import load_model\n"
        "from headstart.inference.serve import run_server\n"
        "loaded = load_model(sys.argv[1])\n"
        f"run_server(loaded, port={port}, max_body_bytes={int(MAX_BODY_MB * 1024 * 1024)},"
        f" max_pixels={MAX_PIXELS}, max_concurrency={args.max_concurrency},"
        f" max_batch={args.max_batch}, batch_wait_ms={args.batch_wait_ms}, log_level='warning')\n"
    )
    return subprocess.Popen([sys.executable, "-c", code, ref])


def wait_ready(port: int, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("server exited during startup")
        try:
            if send(port, "GET", "/health", None)[0] == 200:
                return
        except OSError:
            time.sleep(0.5)
    raise SystemExit("server did not become ready")


def send(port: int, method: str, path: str, body: bytes | None) -> tuple[int, float]:
    start = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        headers = {"Content-Type": "image/png"} if body is not None else {}
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        resp.read()
        status = resp.status
    except (ConnectionError, http.client.HTTPException):
        status = -1  # the server closed the connection (e.g. after a 413 mid-upload)
    finally:
        conn.close()
    return status, time.perf_counter() - start


def plan(n: int, bad: float) -> list[str]:
    kinds = ["malformed", "oversized", "bomb"]
    n_bad = int(round(n * bad))
    jobs = ["good"] * (n - n_bad) + [kinds[i % 3] for i in range(n_bad)]
    return [jobs[(i * 7919) % n] for i in range(n)] if n else []  # interleave deterministically


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref", default="bundled:efficientnet_lite0")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--bad", type=float, default=0.25)
    parser.add_argument("--max-batch", type=int, default=1, help="1 turns batching off")
    parser.add_argument("--batch-wait-ms", type=float, default=5.0)
    parser.add_argument("--max-concurrency", type=int, default=32)
    args = parser.parse_args()
    if not 0 < args.requests <= 100_000 or not 0 < args.clients <= 64:
        raise SystemExit("--requests must be in 1..100000 and --clients in 1..64")
    if args.max_batch < 1 or args.batch_wait_ms < 0 or args.max_concurrency < 1:
        raise SystemExit("--max-batch and --max-concurrency must be positive, --batch-wait-ms >= 0")
    bodies, jobs, port = payloads(), plan(args.requests, args.bad), free_port()
    proc = start_server(args.ref, port, args)
    try:
        wait_ready(port, proc)
        send(port, "POST", "/predict", bodies["good"])  # warm up
        rss_before = rss_kb(proc.pid)
        start = time.perf_counter()
        with ThreadPoolExecutor(args.clients) as pool:
            results = list(
                pool.map(lambda k: (k, *send(port, "POST", "/predict", bodies[k])), jobs)
            )
        elapsed = time.perf_counter() - start
        rss_after = rss_kb(proc.pid)
        alive = send(port, "GET", "/health", None)[0] == 200
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    report(results, elapsed, rss_before, rss_after, alive, args)


def report(results: list, elapsed: float, before: int, after: int, alive: bool, args) -> None:
    latencies = sorted(t for kind, status, t in results if kind == "good" and status == 200)
    by_kind = Counter((kind, status) for kind, status, _ in results)
    statuses = Counter(status for _, status, _ in results)
    print(f"ref={args.ref} requests={args.requests} clients={args.clients} bad={args.bad}")
    print(f"server: max_batch={args.max_batch} batch_wait_ms={args.batch_wait_ms:g} "
          f"max_concurrency={args.max_concurrency}")  # fmt: skip
    print(f"throughput: {len(results) / elapsed:.1f} requests/s over {elapsed:.1f} s")
    if latencies:
        p50 = latencies[len(latencies) // 2]
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
        print(f"good requests: {len(latencies)}, p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms")
    print(f"4xx: {sum(v for s, v in statuses.items() if 400 <= s < 500)}, "
          f"5xx: {sum(v for s, v in statuses.items() if s >= 500)}, "
          f"connection closed: {statuses.get(-1, 0)}")  # fmt: skip
    print("by kind:", ", ".join(f"{k}->{s}: {v}" for (k, s), v in sorted(by_kind.items())))
    print(f"server RSS: {before / 1024:.0f} MiB before, {after / 1024:.0f} MiB after")
    print(f"server alive after the run: {alive}")


if __name__ == "__main__":
    main()
