"""Two training processes on the CPU (gloo), as users start them: Fabric's own launcher (the
Python API and ``--devices 2``) and ``torchrun`` with two nodes on localhost."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import make_image_folder
from tests.e2e_helpers import TINY_MODEL, tiny_weights

SCRIPT = Path(__file__).with_name("ddp_script.py")
TIMING = ("seconds", "images_per_s")
SETTINGS = {"model": TINY_MODEL, "image_size": 32, "epochs": 3, "head_epochs": 1,
            "batch_size": 4, "accelerator": "cpu", "precision": "32-true", "cache": False,
            "checkpoint_every_steps": 1, "devices": 2}  # fmt: skip
"""Without the cache both phases draw image batches through the shard sampler."""


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    make_image_folder(root / "data", classes=("cat", "dog", "owl"), n=10, layout="split",
                      n_val=5, n_test=3)  # fmt: skip
    return root / "data", tiny_weights(root)


def _env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(HEADSTART_CACHE=str(tmp / "cache"), OMP_NUM_THREADS="1")
    return env


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "headstart", *args]


def _strip(history):
    return [{k: v for k, v in row.items() if k not in TIMING} for row in history]


@pytest.fixture(scope="module")
def reference(tree, tmp_path_factory):
    """An uninterrupted two-process run through the Python API; each rank's record."""
    data, weights = tree
    tmp = tmp_path_factory.mktemp("ref")
    (tmp / "record").mkdir()
    (tmp / "record" / "config.json").write_text(json.dumps(SETTINGS))
    out = tmp / "runs" / "run"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(data), str(out), str(weights), str(tmp / "record")],
        env=_env(tmp), capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp / "record" / f"rank{r}.json").read_text()) for r in (0, 1)]
    weights_ = [torch.load(tmp / "record" / f"rank{r}.pt") for r in (0, 1)]
    return out, ranks, weights_


def test_each_process_trains_a_disjoint_shard_of_every_epoch(reference):
    _, ranks, _ = reference
    assert [r["world"] for r in ranks] == [2, 2]
    first, second = (r["drawn"] for r in ranks)
    assert len(first) == len(second) == SETTINGS["epochs"]
    for a, b in zip(first, second):
        assert not set(a) & set(b)
        assert sorted(a + b) == list(range(30))  # 30 training images, none padded
    assert first[1] != first[2]  # a new order every epoch (each phase starts from the seed)


def test_both_processes_end_with_the_same_weights_and_history(reference):
    _, ranks, (w0, w1) = reference
    assert w0.keys() == w1.keys()
    for name in w0:
        assert torch.equal(w0[name], w1[name]), name
    assert _strip(ranks[0]["history"]) == _strip(ranks[1]["history"])


def test_validation_metrics_are_those_of_one_process_on_the_whole_set(reference):
    from headstart.inference.evaluate import evaluate_samples
    from headstart.inference.load import load_model
    from headstart.run_folder import RunFolder

    out, ranks, _ = reference
    history = ranks[0]["history"]
    best = min(history, key=lambda row: (-row["val_acc"], row["epoch"]))
    loaded = load_model(out)
    splits = RunFolder.open(out).read_splits()
    result = evaluate_samples(loaded, splits.val, batch_size=7)
    assert result.metrics["num_images"] == 15
    assert result.metrics["acc"] == pytest.approx(best["val_acc"])
    assert result.metrics["loss"] == pytest.approx(best["val_loss"], rel=1e-4)


def test_one_run_folder_is_written_once(reference):
    out, _, _ = reference
    assert [p.name for p in out.parent.iterdir()] == ["run"]
    assert (out / "model" / "headstart.json").is_file()
    meta = json.loads((out / "model" / "headstart.json").read_text())
    assert (meta["processes"], meta["effective_batch_size"]) == (2, 4)  # --batch-size 4: 2 + 2


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
def test_a_run_killed_in_one_process_resumes_to_the_same_weights(tree, reference, tmp_path):
    data, weights = tree
    out = tmp_path / "run"
    flags = [f"--{k.replace('_', '-')}" if v is not False else f"--no-{k}" for k, v in
             SETTINGS.items()]  # fmt: skip
    args = []
    for flag, value in zip(flags, SETTINGS.values()):
        args += [flag] if isinstance(value, bool) else [flag, str(value)]
    args += ["--weights", str(weights), "--out", str(out)]
    main = subprocess.Popen(
        _cli("train", str(data), *args), env=_env(tmp_path), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    metrics = out / "metrics.csv"
    deadline = time.monotonic() + 180
    while not (metrics.exists() and len(metrics.read_text().splitlines()) >= 3):  # 2 epochs done
        assert main.poll() is None, main.stdout.read()[-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    (child,) = _children(main.pid)
    os.kill(child, signal.SIGKILL)  # the second process dies at once; Fabric stops the first
    main.wait(timeout=60)
    assert main.returncode != 0
    assert not (out / "model").exists()
    done = subprocess.run(_cli("train", "--resume", str(out)), env=_env(tmp_path),
                          capture_output=True, text=True, timeout=240)  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    _, ranks, (expected, _) = reference
    rows = list(csv_rows(metrics))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    from safetensors.torch import load_file

    got = load_file(str(out / "model" / "model.safetensors"))
    for name, value in got.items():
        assert torch.equal(value, expected[name]), name


def csv_rows(path: Path):
    import csv

    with path.open() as f:
        yield from csv.DictReader(f)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_nodes_through_torchrun_write_one_run(tree, tmp_path):
    data, weights = tree
    port = str(_free_port())
    out = tmp_path / "run"
    common = ["--nnodes", "2", "--nproc-per-node", "1", "--master-addr", "127.0.0.1",
              "--master-port", port]  # fmt: skip
    train = ["-m", "headstart", "train", str(data), "--model", TINY_MODEL, "--weights",
             str(weights), "--image-size", "32", "--epochs", "2", "--head-epochs", "1",
             "--accelerator", "cpu", "--devices", "1", "--num-nodes", "2", "--out", str(out)]
    torchrun = [sys.executable, "-m", "torch.distributed.run", *common]
    nodes = [
        subprocess.Popen([*torchrun, "--node-rank", str(rank), *train], env=_env(tmp_path),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for rank in (0, 1)
    ]  # fmt: skip
    logs = [node.communicate(timeout=240)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], logs[0][-2000:] + logs[1][-2000:]
    assert "test: acc" in logs[0] and "test: acc" not in logs[1]  # the first process speaks
    assert "2 processes (DDP)" in logs[0]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("run")] == ["run"]
    assert len(list(csv_rows(out / "metrics.csv"))) == 2
