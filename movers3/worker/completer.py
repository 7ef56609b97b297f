"""Outcomes on their way to the ledger, written in batches.

A finished copy waits at most FLUSH_SECONDS (or FLUSH_ROWS rows) before its row is marked done, and
usually rides on the next claim's commit (`WorkQueue.claim_and_finish`): two round trips a batch.
That is safe here because a row is only ever marked done after its copy succeeded, and if the
worker dies inside the window the row's lease expires and another worker copies the object again,
which rewrites the same bytes. The worker flushes what is left when it stops.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import TypeVar

import structlog

from movers3.ledger.uploads import UploadJournal
from movers3.ledger.work import Outcome, WorkQueue
from movers3.worker.observer import WorkerObserver

T = TypeVar("T")

FLUSH_SECONDS = 0.25
FLUSH_ROWS = 256


@dataclasses.dataclass
class Stats:
    """What one worker process did, as the ledger accepted it."""

    claimed: int = 0
    done: int = 0
    failed: int = 0
    released: int = 0
    lost: int = 0
    bytes: int = 0
    abandoned: int = 0


class Completer:
    """Used by the worker loop's thread only."""

    def __init__(
        self,
        work: WorkQueue,
        owner: str,
        stats: Stats,
        observer: WorkerObserver,
        journal: UploadJournal | None,
        log: structlog.typing.FilteringBoundLogger,
    ) -> None:
        self.work = work
        self.owner = owner
        self.stats = stats
        self.observer = observer
        self.journal = journal
        self.log = log
        self._outcomes: list[Outcome] = []
        self._oldest = 0.0

    def add(self, outcomes: list[Outcome]) -> None:
        if outcomes and not self._outcomes:
            self._oldest = time.monotonic()
        self._outcomes.extend(outcomes)

    def due(self) -> bool:
        return len(self._outcomes) >= FLUSH_ROWS or (
            bool(self._outcomes) and time.monotonic() - self._oldest >= FLUSH_SECONDS
        )

    def flush(self) -> None:
        if self._outcomes:
            self.write_with(lambda outcomes: (None, self.work.finish(self.owner, outcomes)))

    def write_with(self, write: Callable[[list[Outcome]], tuple[T, int]]) -> T:
        """Hand the waiting outcomes to `write` (a claim that carries them, or a finish), which returns
        its own result and how many it wrote; if it fails, they wait for the next one."""
        outcomes, self._outcomes = self._outcomes, []
        asked = time.time()
        try:
            result, written = write(outcomes)
        except BaseException:
            self._outcomes = outcomes + self._outcomes
            raise
        if outcomes:
            self._count(outcomes, written, asked)
        return result

    def _count(self, outcomes: list[Outcome], written: int, asked: float) -> None:
        self.log.debug("rows_finished", ids=[o.id for o in outcomes], written=written, asked=round(asked, 6))
        self.observer.rows_finished(outcomes, written)
        for o in outcomes:
            if self.journal is not None:
                self.journal.release(o.id)
            if o.state == "done":
                self.stats.done += 1
                self.stats.bytes += o.size or 0
            elif o.state == "failed":
                self.stats.failed += 1
            else:
                self.stats.released += 1
        if written < len(outcomes):
            # Another worker rescued these rows after our lease ran out; its result stands.
            self.stats.lost += len(outcomes) - written
            self.log.warning(
                "results_dropped_lease_lost", count=len(outcomes) - written, ids=[o.id for o in outcomes][:50]
            )
