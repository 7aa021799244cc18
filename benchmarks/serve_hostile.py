"""The server's memory under concurrent thin-image uploads (issue 11, point 2).

Starts the real ``headstart serve`` process for ``--ref`` on a loopback port, warms it with one
good image, reads its idle RSS (``/proc/<pid>/status`` VmRSS), resets its peak (``clear_refs``),
then sends ``--clients`` (20) concurrent uploads of tiny PNGs that are extremely thin or wide
(20000x1, 1x20000, 200000x1, 2000000x1: a few hundred bytes each, gigabytes once the short side
is resized to the model's input), ``--rounds`` times. It prints the answers' status counts, the
RSS before, the peak during (VmHWM) and after, and their ratios to the idle RSS; it exits 1 when
an answer is not 422 or the peak exceeds ``--max-ratio`` (1.2) times the idle RSS.

Example:
    uv run python benchmarks/serve_hostile.py --ref bundled:efficientnet_lite0
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from serve_load import free_port, png, send, wait_ready  # noqa: E402

THIN_SIZES = ((20_000, 1), (1, 20_000), (200_000, 1), (2_000_000, 1))


def thin_png(size: tuple[int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (90, 30, 200)).save(buf, format="PNG")
    return buf.getvalue()


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return -1


class PeakWatch:
    """The largest VmRSS seen by polling every 5 ms (VmHWM, reset by clear_refs, when allowed)."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, 0, threading.Event()
        try:
            Path(f"/proc/{pid}/clear_refs").write_text("5")  # reset VmHWM to the current RSS
            self.hwm = True
        except OSError:
            self.hwm = False
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, status_kib(self.pid, "VmRSS"))
            self._stop.wait(0.005)

    def __enter__(self) -> PeakWatch:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()
        if self.hwm:
            self.peak = max(self.peak, status_kib(self.pid, "VmHWM"))


def start_server(ref: str, port: int, max_concurrency: int) -> subprocess.Popen:
    command = [sys.executable, "-m", "headstart", "serve", ref, "--port", str(port),
               "--max-concurrency", str(max_concurrency)]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def burst(port: int, bodies: list[bytes]) -> list[tuple[int, float]]:
    """Send every body at once (each from its own thread, released together)."""
    gate = threading.Barrier(len(bodies))

    def one(body: bytes) -> tuple[int, float]:
        gate.wait()
        return send(port, "POST", "/predict", body)

    with ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(one, bodies))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref", default="bundled:efficientnet_lite0")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--max-concurrency", type=int, default=32, help="above --clients: every upload is decoded"
    )
    parser.add_argument("--max-ratio", type=float, default=1.2)
    args = parser.parse_args()
    if not 0 < args.clients <= 64 or not 0 < args.rounds <= 100:
        raise SystemExit("--clients must be in 1..64 and --rounds in 1..100")
    thin = [thin_png(THIN_SIZES[i % len(THIN_SIZES)]) for i in range(args.clients)]
    port = free_port()
    proc = start_server(args.ref, port, args.max_concurrency)
    try:
        wait_ready(port, proc)
        good_status = send(port, "POST", "/predict", png(320, 240, noise=True))[0]
        time.sleep(1.0)
        idle = status_kib(proc.pid, "VmRSS")
        start = time.perf_counter()
        with PeakWatch(proc.pid) as watch:
            results = [r for _ in range(args.rounds) for r in burst(port, thin)]
        elapsed = time.perf_counter() - start
        after = status_kib(proc.pid, "VmRSS")
        alive = send(port, "GET", "/health", None)[0] == 200
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    statuses = Counter(status for status, _ in results)
    slowest = max(t for _, t in results)
    print(f"ref={args.ref} clients={args.clients} rounds={args.rounds} "
          f"sizes={', '.join(f'{w}x{h}' for w, h in THIN_SIZES)} "
          f"bodies={min(map(len, thin))}-{max(map(len, thin))} bytes")  # fmt: skip
    print(
        f"warm-up good image: {good_status}; thin uploads: "
        + ", ".join(f"{s}: {n}" for s, n in sorted(statuses.items()))
        + f"; {len(results)} answers in {elapsed:.2f} s (slowest {slowest * 1000:.0f} ms)"
    )
    ratio = watch.peak / idle
    print(f"server RSS: idle {idle / 1024:.1f} MiB, peak {watch.peak / 1024:.1f} MiB "
          f"({'VmHWM' if watch.hwm else 'polled'}), after {after / 1024:.1f} MiB; "
          f"peak/idle {ratio:.3f}, after/idle {after / idle:.3f}; alive {alive}")  # fmt: skip
    ok = alive and set(statuses) == {422} and ratio <= args.max_ratio
    print("PASS" if ok else f"FAIL (every answer must be 422, peak/idle <= {args.max_ratio})")
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
