"""The hot path: a row whose copy is one CopyObject is sent from the worker loop's thread and
finished on awscrt's, with no copy thread in between.

Most rows of a migration of small objects are such rows. A copy thread that hands its request to
awscrt and sleeps until the answer costs two thread switches and a lock per object, more than the
request itself costs the client; here the loop starts up to WORKER_THREADS requests, awscrt calls
back when each lands, the callback queues the answer for the loop, and the loop turns it into the
row's outcome and starts the next. A try that fails goes to a copy thread (`CopyTask`) as the row's
first attempt, so that retries, backoff, a changed source, a systemic error and every error class
behave exactly as on the thread path; the hot path only ever finishes successes itself.

Used by the worker loop's thread only, except `_landed`, which awscrt calls.
"""

from __future__ import annotations

import collections
import functools
import itertools
import math
import queue
import time
from collections.abc import Callable
from typing import NamedTuple, Protocol

import structlog

from movers3.exceptions import CopyError
from movers3.ledger.work import Outcome, Row
from movers3.transfer.copier import Copied
from movers3.transfer.copy_object import CANCEL_GRACE_SECONDS, CopyRequest
from movers3.worker.copy_task import succeeded
from movers3.worker.observer import WorkerObserver


class HotCopier(Protocol):
    def hot_request(self, row: Row) -> CopyRequest | None: ...

    def copied_by_copy_object(self, row: Row, dest_etag: str) -> Copied: ...

    def hot_failure(self, row: Row, error: CopyError) -> CopyError | None: ...


class Sender(Protocol):
    """The engine's side: awscrt's (copy_object.CrtEngine)."""

    timeout: float

    def sends(self, request: CopyRequest) -> bool: ...

    def start(
        self, request: CopyRequest, done: Callable[[str | None, CopyError | None], None]
    ) -> Callable[[], None]: ...

    def timed_out(self) -> CopyError: ...


class Landed(NamedTuple):
    """A hot copy's answer, as awscrt's thread queues it for the loop; `ticket` names the request."""

    etag: str | None
    error: CopyError | None
    ticket: int


class Handoff(NamedTuple):
    """A hot copy that failed: the row goes to a copy thread with this try counted (`tried`), or
    with nothing counted when `tried` is None."""

    row: Row
    tried: CopyError | None


class _Running(NamedTuple):
    row: Row
    started: float
    deadline: float
    cancel: Callable[[], None]
    ticket: int
    sent: bool


def _nothing() -> None:
    pass


class HotPath:
    def __init__(
        self,
        copier: HotCopier,
        sender: Sender,
        *,
        limit: int,
        finished: queue.SimpleQueue,
        observer: WorkerObserver,
        log: structlog.typing.FilteringBoundLogger,
    ) -> None:
        self.copier = copier
        self.sender = sender
        self.limit = limit  # requests in flight at once: WORKER_THREADS, as on the thread path
        self.finished = finished  # the loop's queue of finished copies: (row id, Landed)
        self.observer = observer
        self.log = log
        self._waiting: collections.deque[tuple[Row, CopyRequest]] = collections.deque()
        # In start order, hence in deadline order: the first entry is the next one to time out.
        self._running: dict[int, _Running] = {}
        self._timed_out: set[int] = set()  # cancelled for their deadline
        self._given_up: set[int] = set()  # cancelled, and still unanswered after the grace
        self._tickets = itertools.count(1)
        self.copied = 0  # copies that succeeded here, for the worker's last log line

    def take(self, row: Row) -> bool:
        """True when `row` goes the hot path (started now, or when a request in flight lands)."""
        request = self.copier.hot_request(row)
        if request is None or not self.sender.sends(request):
            return False
        self._waiting.append((row, request))
        self._start_waiting()
        return True

    def outcome(self, row: Row, landed: Landed) -> Outcome | Handoff | None:
        """The loop's side of a landed request: the row's outcome when it succeeded, else where it
        goes; None for a late answer to a request already given up on (the row has moved on)."""
        running = self._running.get(row.id)
        if running is None or running.ticket != landed.ticket:
            return None
        del self._running[row.id]
        timed_out = row.id in self._timed_out
        self._timed_out.discard(row.id)
        self._given_up.discard(row.id)
        self._start_waiting()
        if not running.sent:  # the thread path will meet (and record) what stopped it
            return Handoff(row, None)
        error = self.sender.timed_out() if timed_out else landed.error
        if error is None:
            assert landed.etag is not None
            try:
                copied = self.copier.copied_by_copy_object(row, landed.etag)
            except CopyError as mismatch:
                return Handoff(row, mismatch)
            self.copied += 1
            return succeeded(row, copied, row.attempts, None, running.started, self.observer, self.log)
        return Handoff(row, self.copier.hot_failure(row, error))

    def expire(self) -> None:
        """Cancel the requests older than S3_TIMEOUT_SECONDS; each then lands as a timeout. One that
        awscrt still has not answered CANCEL_GRACE_SECONDS later is landed here, so that no row
        waits on a request forever."""
        now = time.monotonic()
        unanswered = []
        for row_id, running in self._running.items():
            if running.deadline > now:
                break
            if row_id not in self._timed_out:
                self._timed_out.add(row_id)
                running.cancel()
            elif row_id not in self._given_up and running.deadline + CANCEL_GRACE_SECONDS < now:
                unanswered.append(running)
        for running in unanswered:
            self._given_up.add(running.row.id)
            self.finished.put((running.row.id, Landed(None, None, running.ticket)))

    def waiting(self) -> list[Row]:
        """Stop starting requests: the rows not yet sent, to be released."""
        rows = [row for row, _ in self._waiting]
        self._waiting.clear()
        return rows

    def cancel_all(self) -> None:
        for running in self._running.values():
            running.cancel()

    def _start_waiting(self) -> None:
        while self._waiting and len(self._running) < self.limit:
            row, request = self._waiting.popleft()
            started, ticket = time.monotonic(), next(self._tickets)
            try:
                cancel = self.sender.start(request, functools.partial(self._landed, row.id, ticket))
            except Exception:
                self._running[row.id] = _Running(row, started, math.inf, _nothing, ticket, sent=False)
                self.finished.put((row.id, Landed(None, None, ticket)))
                continue
            self._running[row.id] = _Running(row, started, started + self.sender.timeout, cancel, ticket, sent=True)

    def _landed(self, row_id: int, ticket: int, etag: str | None, error: CopyError | None) -> None:
        self.finished.put((row_id, Landed(etag, error, ticket)))
