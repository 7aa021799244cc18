"""Steps of a run that one process does for all when several train together (DDP).

Rank 0 audits the data and writes the run folder; the others get its results. Caches are filled
by rank 0 first, then opened by the others, which find them complete. Whatever rank 0 meets (a
user error, or an unexpected failure) reaches every process, so none is left waiting for the
others in a collective. With one process each helper just calls its function.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from headstart.errors import HeadstartError

if TYPE_CHECKING:
    from lightning_fabric import Fabric

__all__ = ["RankZeroFailed", "from_rank_zero", "rank_zero_first"]

T = TypeVar("T")


class RankZeroFailed(RuntimeError):
    """Raised on the other processes when rank 0 failed unexpectedly (it raises its own error)."""


def from_rank_zero(fabric: Fabric, make: Callable[[], T]) -> T:
    """``make()`` run on rank 0; its value (or its error) on every process."""
    if fabric.world_size == 1:
        return make()
    value, failure = _on_rank_zero(fabric, make)
    value, shared = fabric.broadcast((value, _shareable(failure)), src=0)
    _raise(failure, shared)
    return value  # type: ignore[return-value]


def rank_zero_first(fabric: Fabric, make: Callable[[], T]) -> T:
    """``make()`` on rank 0, then on the other processes (which find what it cached)."""
    if fabric.world_size == 1:
        return make()
    value, failure = _on_rank_zero(fabric, make)
    _raise(failure, fabric.broadcast(_shareable(failure), src=0))
    return value if fabric.is_global_zero else make()  # type: ignore[return-value]


def _on_rank_zero(fabric: Fabric, make: Callable[[], T]) -> tuple[T | None, Exception | None]:
    if not fabric.is_global_zero:
        return None, None
    try:
        return make(), None
    except Exception as exc:  # noqa: BLE001 - told to every process, then raised again
        return None, exc


def _shareable(failure: Exception | None) -> Any:
    """What the other processes are told: a user error itself, else what went wrong."""
    if failure is None or isinstance(failure, HeadstartError):
        return failure
    return f"{type(failure).__name__}: {failure}"


def _raise(failure: Exception | None, shared: Any) -> None:
    if failure is not None:  # rank 0: its own error, with its traceback
        raise failure
    if isinstance(shared, HeadstartError):
        shared.told_by_rank_zero = True  # type: ignore[attr-defined]  # printed there already
        raise shared
    if shared is not None:
        raise RankZeroFailed(f"the first training process failed: {shared}")
