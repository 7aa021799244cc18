"""The learning-rate trace: one row per optimizer step, in lr.csv, head and body groups."""

from __future__ import annotations

import pytest

from headstart.run_folder import RunFolder
from headstart.training.checkpoint import load_checkpoint

from .helpers import bright_dark, run_engine, tiny_model


def _train(tmp_path, **kwargs):
    return run_engine(
        tmp_path, tiny_model(), bright_dark(32), bright_dark(16, seed=1), strategy="two-phase",
        **kwargs,
    )  # fmt: skip


def test_the_trace_has_one_row_per_step_with_head_and_body_rates(tmp_path):
    result = _train(tmp_path)  # 3 epochs of 4 steps: 1 head epoch, 2 full
    rows = RunFolder(tmp_path).read_lr_trace()
    assert [int(r["step"]) for r in rows] == list(range(1, 13))
    assert [int(r["epoch"]) for r in rows] == [1] * 4 + [2] * 4 + [3] * 4
    assert [r["phase"] for r in rows] == ["head"] * 4 + ["full"] * 8
    assert all(r["body_lr"] == "" for r in rows[:4])  # the body is frozen in the head phase
    body = [float(r["body_lr"]) for r in rows[4:]]
    head = [float(r["head_lr"]) for r in rows[4:]]
    # the last body stage runs at head lr x backbone_lr_factor (0.1): same schedule, scaled
    assert body == pytest.approx([0.1 * h for h in head])
    for row in result.history:  # metrics.csv keeps the first step's rate of every epoch
        first = rows[(row["epoch"] - 1) * 4]
        assert float(first["head_lr"]) == pytest.approx(row["lr"], rel=1e-12)
    head_phase = [float(r["head_lr"]) for r in rows[:4]]  # warm-up of 2 steps, then cosine
    assert head_phase[0] < head_phase[1] and head_phase[1] > head_phase[3]
    last = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert len(last["lr_trace"]) == 12


def test_with_accumulation_the_trace_counts_optimizer_steps(tmp_path):
    _train(tmp_path, accumulate=2)
    rows = RunFolder(tmp_path).read_lr_trace()
    assert [int(r["step"]) for r in rows] == list(range(1, 7))
    assert [r["phase"] for r in rows] == ["head"] * 2 + ["full"] * 4
