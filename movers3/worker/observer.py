"""What a worker tells the outside world as it goes, through one object: the worker calls these
hooks, and metrics (`metrics.py`) and the liveness heartbeat (`health.py`) listen. The base class does
nothing, so a worker without an observer pays for nothing and the worker holds no metric code.

Threads: `copy_retrying` and `copy_succeeded` are called on copy threads, every other hook on the
worker's main thread. Hooks must be cheap and must not raise: they run inside the copy hot path and
the claim loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the health check imports this module and must stay light
    from movers3.ledger.work import Outcome

# Values of `state` in `loop_tick`.
WORKING, IDLE, DRAINING = "working", "idle", "draining"


class WorkerObserver:
    """The hooks, each a no-op."""

    def worker_started(self, worker_id: str) -> None:
        """Once, before the first claim."""

    def loop_tick(self, state: str, in_flight: int) -> None:
        """Every pass of the worker loop (at least every POLL_MAX_SECONDS while idle, and during the
        drain): proof that the loop is moving, for the liveness signal."""

    def rows_claimed(self, count: int, seconds: float) -> None:
        """After every claim transaction, including those that found nothing."""

    def copy_retrying(self, code: str) -> None:
        """A copy attempt failed with a retryable error and will be tried again (copy thread)."""

    def copy_succeeded(self, size: int, seconds: float) -> None:
        """One object copied and verified, `seconds` from start to finish including retries (copy thread)."""

    def rows_finished(self, outcomes: Sequence[Outcome], written: int) -> None:
        """A batch of outcomes written to the ledger; `written` fewer than given means leases were lost
        and those results were dropped."""

    def worker_stopped(self) -> None:
        """Once, after the drain, whatever the reason for stopping."""


class Observers(WorkerObserver):
    """Several observers as one."""

    def __init__(self, *observers: WorkerObserver) -> None:
        self.observers = observers

    def worker_started(self, worker_id: str) -> None:
        for o in self.observers:
            o.worker_started(worker_id)

    def loop_tick(self, state: str, in_flight: int) -> None:
        for o in self.observers:
            o.loop_tick(state, in_flight)

    def rows_claimed(self, count: int, seconds: float) -> None:
        for o in self.observers:
            o.rows_claimed(count, seconds)

    def copy_retrying(self, code: str) -> None:
        for o in self.observers:
            o.copy_retrying(code)

    def copy_succeeded(self, size: int, seconds: float) -> None:
        for o in self.observers:
            o.copy_succeeded(size, seconds)

    def rows_finished(self, outcomes: Sequence[Outcome], written: int) -> None:
        for o in self.observers:
            o.rows_finished(outcomes, written)

    def worker_stopped(self) -> None:
        for o in self.observers:
            o.worker_stopped()
