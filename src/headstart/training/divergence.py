"""When training blows up: a non-finite or absurd loss stops it, and the user hears what to try."""

from __future__ import annotations

import math

from headstart.errors import HeadstartError

__all__ = ["DIVERGED_LOSS", "Diverged", "blown_up", "divergence_note"]

DIVERGED_LOSS = 1e4
"""A cross-entropy this high means logits in the thousands: the weights have blown up (a sane
classifier, even a confidently wrong one, stays below about 100)."""
_ADVICE = (
    "try a lower --lr (or --backbone-lr-factor), a longer --warmup-epochs, or --precision 32-true"
)


class Diverged(HeadstartError):
    """The loss blew up (see :func:`blown_up`); the message says where."""


def blown_up(loss: float) -> bool:
    """Whether a loss means training diverged: not a finite number, or over ``DIVERGED_LOSS``."""
    return not math.isfinite(loss) or loss > DIVERGED_LOSS


def divergence_note(where: str, *, best_epoch: int | None, finished: int) -> str:
    """What to tell the user when training stopped at a blown-up loss ``where``.

    Args:
        where: The epoch, phase and loss that blew up.
        best_epoch: The best epoch kept, or None when no epoch finished before.
        finished: Epochs that finished before.

    Raises:
        Diverged: No epoch finished before, so there is no model to keep.
    """
    if best_epoch is None:
        raise Diverged(
            f"training diverged in {where}: the loss blew up before any epoch finished, so there "
            f"is no model to keep; {_ADVICE}."
        )
    return (
        f"training diverged in {where} and was stopped; the model keeps epoch {best_epoch}, the "
        f"best of the {finished} that finished before; {_ADVICE}"
    )
