"""One worker process: claim a batch of rows, copy them (one CopyObject sent from this thread and
finished by awscrt, hot_path.py, or a copy thread for everything else), write the outcomes back in
batches (completer.py), and keep going until told to stop (or, with --exit-when-done, until nothing
is left).

The loop's thread runs every claim, lease renewal, rescue and completion, on the worker's own
connection. Copy threads talk to S3 and hand back an `Outcome`; the one thing they write to the
ledger is the upload journal of a multipart copy (ledger/uploads.py), on a connection of its own,
guarded by the row's lease like every other write.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import queue
import secrets
import socket
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import cast

import structlog

from movers3.exceptions import CopyError, LedgerError
from movers3.ledger.uploads import UploadJournal
from movers3.ledger.work import Outcome, Row, WorkQueue
from movers3.settings import Settings
from movers3.transfer.copier import Copier
from movers3.worker.breaker import AccessDeniedBreaker
from movers3.worker.completer import FLUSH_SECONDS, Completer, Stats
from movers3.worker.copy_task import CopyTask
from movers3.worker.hot_path import Handoff, HotCopier, HotPath, Landed, Sender
from movers3.worker.housekeeping import Housekeeping
from movers3.worker.observer import DRAINING, IDLE, WORKING, WorkerObserver

log = structlog.get_logger(__name__)

POLL_MIN_SECONDS = 0.2
POLL_MAX_SECONDS = 10.0
# SIGTERM: in-flight copies get this long to finish before their rows are released (exit < 25 s).
DRAIN_SECONDS = 15.0


def new_worker_id() -> str:
    return f"{socket.gethostname()[:80]}-{os.getpid()}-{secrets.token_hex(3)}"


@dataclasses.dataclass(frozen=True)
class WorkerConfig:
    threads: int
    lease_seconds: int
    max_attempts: int
    claim_batch: int
    exit_when_done: bool = False

    @classmethod
    def from_settings(cls, settings: Settings, *, exit_when_done: bool = False) -> WorkerConfig:
        return cls(
            settings.worker_threads, settings.lease_seconds, settings.max_attempts, settings.claim_batch, exit_when_done
        )


class Worker:
    # Past 150 lines by its shutdown: the drain reads best beside the loop it ends.

    def __init__(
        self,
        work: WorkQueue,
        copier: Copier,
        config: WorkerConfig,
        *,
        worker_id: str,
        stop_event: threading.Event | None = None,
        journal: UploadJournal | None = None,
        observer: WorkerObserver | None = None,
        hot_sender: Sender | None = None,
    ) -> None:
        self.work = work
        self.copier = copier
        self.config = config
        self.id = worker_id
        self.stopped = stop_event or threading.Event()
        self.observer = observer or WorkerObserver()
        self.stats = Stats()
        self.fatal: CopyError | None = None  # what stopped the worker: every copy would fail the same way
        self.log = log.bind(worker=worker_id)
        self.completer = Completer(work, worker_id, self.stats, self.observer, journal, self.log)
        self.breaker = AccessDeniedBreaker()
        self._copy = CopyTask(
            copier,
            max_attempts=config.max_attempts,
            stopped=self.stopped,
            observer=self.observer,
            on_fatal=self._fail_fast,
            log=self.log,
        )
        self._fatal_lock = threading.Lock()  # copy threads and the loop may both find a fatal error
        # Rows in hand: on a copy thread (its future), or on the hot path (None).
        self._inflight: dict[int, tuple[Row, Future | None]] = {}
        # Finished copies announce themselves here: the loop never scans what is in flight.
        self._finished: queue.SimpleQueue[tuple[int, Future | Landed]] = queue.SimpleQueue()
        self._hot = None
        if hot_sender is not None:
            self._hot = HotPath(
                cast(HotCopier, copier),
                hot_sender,
                limit=config.threads,
                finished=self._finished,
                observer=self.observer,
                log=self.log,
            )
        self._housekeeping = Housekeeping(
            work, worker_id, config.lease_seconds, config.max_attempts, self.stats, self.log
        )

    def stop(self) -> None:
        self.stopped.set()

    def run(self) -> Stats:
        describe = getattr(self.copier, "describe", dict)
        self.log.info(
            "worker_started",
            threads=self.config.threads,
            lease_seconds=self.config.lease_seconds,
            max_attempts=self.config.max_attempts,
            exit_when_done=self.config.exit_when_done,
            hot_path=self._hot is not None,
            **describe(),
        )
        self.observer.worker_started(self.id)
        pool = ThreadPoolExecutor(self.config.threads, thread_name_prefix="copy")
        try:
            self._loop(pool)
        finally:
            self._shutdown(pool)
            self.observer.worker_stopped()
        self.log.info(
            "worker_stopped",
            **dataclasses.asdict(self.stats),
            hot_copies=self._hot.copied if self._hot is not None else 0,
            seconds=self._housekeeping.seconds(),
        )
        return self.stats

    # -- the loop ----------------------------------------------------------------------------

    def _loop(self, pool: ThreadPoolExecutor) -> None:
        idle = POLL_MIN_SECONDS
        while not self.stopped.is_set():
            self.observer.loop_tick(WORKING if self._inflight else IDLE, len(self._inflight))
            self._housekeeping.tick(self._held)
            if len(self._inflight) <= self.config.threads:
                self._claim(pool)
            if not self._inflight:
                self.completer.add(self.breaker.settle(release=False))
                self.completer.flush()
                if self.config.exit_when_done and not self.work.unfinished():
                    self.log.info("worker_drained")
                    return
                self.stopped.wait(idle)
                idle = min(idle * 2, POLL_MAX_SECONDS)
                continue
            idle = POLL_MIN_SECONDS
            self._collect(pool, timeout=FLUSH_SECONDS)
            if self._hot is not None:
                self._hot.expire()
            if self.completer.due():
                self.completer.flush()

    def _claim(self, pool: ThreadPoolExecutor) -> None:
        # Keep up to two batches' worth in hand so copy threads never wait on a claim.
        limit = min(self.config.claim_batch, 2 * self.config.threads - len(self._inflight))
        if limit <= 0:
            return
        lease = self.config.lease_seconds
        started, asked = time.monotonic(), time.time()
        # Outcomes waiting to be written ride along: one commit for both, two round trips a batch.
        rows = self.completer.write_with(
            lambda outcomes: self.work.claim_and_finish(self.id, limit, lease, outcomes, held=tuple(self._inflight))
        )
        self.observer.rows_claimed(len(rows), time.monotonic() - started)
        if not rows:
            return
        self.stats.claimed += len(rows)
        # The ledger sets each lease to its own NOW() + lease_seconds, never earlier than `asked` +
        # lease_seconds on one clock: with `rows_finished` and `leases_renewed`, this lets a reader of
        # the log (the chaos tests) bound when this worker held each row, at no extra query.
        self.log.debug("rows_claimed", ids=[r.id for r in rows], lease_until=round(asked + lease, 6))
        for row in rows:
            self._inflight[row.id] = (row, None)
            if self._hot is None or not self._hot.take(row):
                self._submit(pool, row)

    def _submit(self, pool: ThreadPoolExecutor, row: Row, tried: CopyError | None = None) -> None:
        future = pool.submit(self._copy, row, tried)
        self._inflight[row.id] = (row, future)
        future.add_done_callback(functools.partial(self._announce, row.id))

    def _held(self) -> list[tuple[int, int]]:
        return [(row.id, row.token) for row, _ in self._inflight.values()]

    def _announce(self, row_id: int, future: Future) -> None:
        self._finished.put((row_id, future))

    def _collect(self, pool: ThreadPoolExecutor, timeout: float) -> None:
        """Record the copies that finished: waits up to `timeout` for the first, takes the rest as they are."""
        try:
            row_id, finished = self._finished.get(timeout=timeout)
        except queue.Empty:
            return
        while True:
            entry = self._inflight.get(row_id)
            if entry is None:
                pass  # released at shutdown, already recorded
            elif isinstance(finished, Future):
                del self._inflight[row_id]
                self._record(finished.result())
            elif entry[1] is None:  # on the hot path; a late answer to a request given up on is ignored
                self._land(pool, entry[0], finished)
            try:
                row_id, finished = self._finished.get_nowait()
            except queue.Empty:
                return

    def _land(self, pool: ThreadPoolExecutor, row: Row, landed: Landed) -> None:
        assert self._hot is not None
        outcome = self._hot.outcome(row, landed)
        if outcome is None:
            return
        del self._inflight[row.id]
        if not isinstance(outcome, Handoff):
            self._record(outcome)
        elif outcome.tried is None and self.stopped.is_set():
            self._record(Outcome(row.id, "pending", attempts=row.attempts - 1, token=row.token))  # not tried
        else:
            # A copy thread sorts the failure out as if it had made the try: retries, or the outcome.
            self._submit(pool, row, outcome.tried)

    def _record(self, outcome: Outcome) -> None:
        self.completer.add(self.breaker.admit(outcome))
        if self.breaker.tripped:
            self._fail_fast(self.breaker.error(), self.log)

    def _fail_fast(self, exc: CopyError, olog: structlog.typing.FilteringBoundLogger) -> None:
        """Stop the worker: every copy would fail the same way. The first such error is the one told."""
        with self._fatal_lock:
            first = self.fatal is None
            if first:
                self.fatal = exc
        if first:
            olog.error("worker_misconfigured", code=exc.code, error=str(exc))
        self.stopped.set()

    # -- shutdown ----------------------------------------------------------------------------

    def _shutdown(self, pool: ThreadPoolExecutor) -> None:
        self.stopped.set()  # ends retry backoffs and interrupts multipart copies between parts
        unsent = {row.id for row in self._hot.waiting()} if self._hot is not None else set()
        for row_id, (row, future) in list(self._inflight.items()):
            if row_id in unsent or (future is not None and future.cancel()):
                del self._inflight[row_id]
                self._record(Outcome(row.id, "pending", attempts=row.attempts - 1, token=row.token))
        deadline = time.monotonic() + DRAIN_SECONDS
        while self._inflight and time.monotonic() < deadline:
            self.observer.loop_tick(DRAINING, len(self._inflight))
            self._collect(pool, timeout=min(0.5, max(0.0, deadline - time.monotonic())))
        if self._hot is not None:
            self._hot.cancel_all()
        for row, _ in self._inflight.values():
            self.log.warning("copy_abandoned", row_id=row.id, key=row.old_key)
            self._record(Outcome(row.id, "pending", attempts=row.attempts - 1, token=row.token))
        self.stats.abandoned = len(self._inflight)
        self._inflight.clear()
        self.completer.add(self.breaker.settle(release=self.fatal is not None))
        try:
            self.completer.flush()
        except LedgerError as exc:
            self.log.error("release_failed", error=str(exc), note="the rows come back when their lease expires")
        pool.shutdown(wait=False, cancel_futures=True)
