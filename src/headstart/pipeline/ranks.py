"""Steps of a run that one process does for all when several train together (DDP).

Rank 0 audits the data and writes the run folder; the others get its results. Caches are filled
by rank 0 first, then opened by the others, which find them complete. A user error met by rank 0
is raised by every process, so none is left waiting for the others. With one process each helper
just calls its function.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from headstart.errors import HeadstartError

if TYPE_CHECKING:
    from lightning_fabric import Fabric

__all__ = ["from_rank_zero", "rank_zero_first"]

T = TypeVar("T")


def from_rank_zero(fabric: Fabric, make: Callable[[], T]) -> T:
    """``make()`` run on rank 0; its value (or its user error) on every process."""
    if fabric.world_size == 1:
        return make()
    value, error = _on_rank_zero(fabric, make)
    value, error = fabric.broadcast((value, error), src=0)
    if error is not None:
        raise error
    return value  # type: ignore[return-value]


def rank_zero_first(fabric: Fabric, make: Callable[[], T]) -> T:
    """``make()`` on rank 0, then on the other processes (which find what it cached)."""
    if fabric.world_size == 1:
        return make()
    value, error = _on_rank_zero(fabric, make)
    error = fabric.broadcast(error, src=0)
    if error is not None:
        raise error
    return value if fabric.is_global_zero else make()  # type: ignore[return-value]


def _on_rank_zero(
    fabric: Fabric, make: Callable[[], T]
) -> tuple[T | None, HeadstartError | None]:
    if not fabric.is_global_zero:
        return None, None
    try:
        return make(), None
    except HeadstartError as exc:
        return None, exc
