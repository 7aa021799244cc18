"""The picture of a learning-rate sweep: smoothed loss over a logarithmic learning-rate axis.

Plain values in, one PNG out through the one atomic write, drawn on a ``matplotlib.figure.Figure``
with the Agg canvas (no pyplot state, works headless), like :mod:`headstart.evaluation.plots`.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path

from headstart.files import atomic_write

__all__ = ["plot_lr_find"]


def plot_lr_find(
    lrs: Sequence[float],
    losses: Sequence[float],
    suggestion: float,
    path: str | Path,
    *,
    raw_losses: Sequence[float] = (),
) -> Path:
    """Draw the smoothed loss against the learning rate and mark the suggested one.

    Args:
        lrs: The head's learning rate of each step.
        losses: The smoothed loss of each step.
        suggestion: The learning rate to mark (a dot on the curve and a dashed line).
        path: PNG to write.
        raw_losses: The loss of each step before smoothing, drawn faintly when given.

    Returns:
        ``path``.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    if raw_losses:
        ax.plot(lrs, raw_losses, color="#90a4ae", alpha=0.5, linewidth=0.8, label="loss")
    ax.plot(lrs, losses, color="#1565c0", label="smoothed loss")
    if lrs:
        index = min(range(len(lrs)), key=lambda i: abs(math.log(lrs[i]) - math.log(suggestion)))
        ax.plot([lrs[index]], [losses[index]], "o", color="#c62828")
    ax.axvline(suggestion, color="#c62828", linestyle="--", linewidth=1,
               label=f"suggested lr {suggestion:.2g}")  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (head)")
    ax.set_ylabel("training loss")
    finite = [v for v in losses if math.isfinite(v)]
    if finite:  # keep the blow-up at the end from squashing the valley
        low, high = min(finite), min(max(finite), 4 * min(finite) + 1e-12)
        ax.set_ylim(low - 0.05 * (high - low + 1e-12), high + 0.05 * (high - low + 1e-12))
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="upper left", fontsize=8)
    fig.suptitle("Learning-rate finder")
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=100, bbox_inches="tight", facecolor="white")
    return atomic_write(path, png.getvalue())
