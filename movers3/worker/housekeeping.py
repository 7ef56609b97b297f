"""The worker's periodic chores, run from its loop: renew the leases of the rows in flight (every third
of a lease), rescue rows whose worker vanished (every quarter of a lease, at least every second), and
log progress (every PROGRESS_SECONDS)."""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog

from movers3.ledger.work import WorkQueue
from movers3.progress import PROGRESS_SECONDS, Every
from movers3.worker.completer import Stats


class Housekeeping:
    def __init__(
        self,
        work: WorkQueue,
        owner: str,
        lease_seconds: int,
        max_attempts: int,
        stats: Stats,
        log: structlog.typing.FilteringBoundLogger,
    ) -> None:
        self.work = work
        self.owner = owner
        self.lease = lease_seconds
        self.max_attempts = max_attempts
        self.stats = stats
        self.log = log
        self._renew = Every(lease_seconds / 3, first=lease_seconds / 3)
        self._rescue = Every(max(1.0, lease_seconds / 4), first=0)
        self._progress = Every(PROGRESS_SECONDS, first=PROGRESS_SECONDS)
        self._started = time.monotonic()

    def seconds(self) -> float:
        return round(time.monotonic() - self._started, 3)

    def tick(self, in_flight: Callable[[], list[tuple[int, int]]]) -> None:
        """The chores that are due. `in_flight` gives the rows held now, (id, claim token) pairs: asked
        only when a chore needs them, not at every pass of the loop."""
        now = time.monotonic()
        if self._renew.due(now):
            held = in_flight()
            asked = time.time()
            renewed = self.work.renew(self.owner, held, self.lease)
            if renewed < len(held):
                self.log.warning("leases_lost", held=len(held), renewed=renewed)
            elif held:
                self.log.debug("leases_renewed", ids=[i for i, _ in held], lease_until=round(asked + self.lease, 6))
        if self._rescue.due(now):
            requeued, failed = self.work.rescue_expired(self.max_attempts)
            if requeued or failed:
                self.log.warning("leases_rescued", requeued=requeued, failed=failed)
        if self._progress.due(now):
            s = self.stats
            self.log.info(
                "progress",
                done=s.done,
                failed=s.failed,
                bytes=s.bytes,
                in_flight=len(in_flight()),
                objects_per_second=round(s.done / (now - self._started), 1),
            )
