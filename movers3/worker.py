"""One worker process: claim a batch of rows, copy them on a thread pool, write the outcomes back in
batches, and keep going until told to stop (or, with --exit-when-done, until nothing is left).

Only the main thread talks to the database (claims, lease renewals, rescues, completions); the copy
threads talk only to S3 and hand back an `Outcome`. Completions are batched: a finished copy waits at
most FLUSH_SECONDS (or FLUSH_ROWS rows) before its row is marked done. That is safe here because a
row is only ever marked done after its copy succeeded, and if the worker dies inside the window the
row's lease expires and another worker copies the object again, which rewrites the same bytes.
"""

from __future__ import annotations

import dataclasses
import os
import queue
import secrets
import socket
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor

import structlog

from movers3 import retry, s3
from movers3.copier import Copier
from movers3.exceptions import CopyError, Interrupted, LeaseLost, LedgerError, SourceChanged
from movers3.ledger import Ledger, Outcome, Row, UploadJournal
from movers3.observer import DRAINING, IDLE, WORKING, WorkerObserver

log = structlog.get_logger("movers3.worker")

POLL_MIN_SECONDS = 0.2
POLL_MAX_SECONDS = 10.0
FLUSH_SECONDS = 0.25
FLUSH_ROWS = 256
# SIGTERM: in-flight copies get this long to finish before their rows are released (exit < 25 s).
DRAIN_SECONDS = 15.0
PROGRESS_SECONDS = 10.0
# A worker whose first copies are all AccessDenied is more likely misconfigured (no PutObject on the
# destination, wrong bucket) than facing that many forbidden objects: it holds those results back and,
# after this many with no success, releases them and stops instead of failing the whole ledger.
ACCESS_DENIED_BREAKER = 10


def new_worker_id() -> str:
    return f"{socket.gethostname()[:80]}-{os.getpid()}-{secrets.token_hex(3)}"


@dataclasses.dataclass
class Stats:
    claimed: int = 0
    done: int = 0
    failed: int = 0
    released: int = 0
    lost: int = 0
    bytes: int = 0
    abandoned: int = 0


class Worker:
    def __init__(self, ledger: Ledger, copier: Copier, *, worker_id: str, threads: int, lease_seconds: int,
                 max_attempts: int, claim_batch: int, exit_when_done: bool = False,
                 stop_event: threading.Event | None = None, journal: UploadJournal | None = None,
                 observer: WorkerObserver | None = None) -> None:
        self.ledger = ledger
        self.copier = copier
        self.journal = journal
        self.id = worker_id
        self.threads = threads
        self.lease_seconds = lease_seconds
        self.max_attempts = max_attempts
        self.claim_batch = claim_batch
        self.exit_when_done = exit_when_done
        self.stopped = stop_event or threading.Event()
        self.observer = observer or WorkerObserver()
        self.stats = Stats()
        self.fatal: CopyError | None = None
        self.log = log.bind(worker=worker_id)
        self._inflight: dict[int, tuple[Row, Future]] = {}
        # Finished copies announce themselves here: the loop never scans the futures in flight.
        self._finished: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._outcomes: list[Outcome] = []
        self._suspects: list[Outcome] = []  # AccessDenied failures held until a copy succeeds
        self._proven = False
        self._oldest_outcome = 0.0
        now = time.monotonic()
        self._next_renew = now + lease_seconds / 3
        self._next_rescue = now
        self._next_progress = now + PROGRESS_SECONDS
        self._started = now

    def stop(self) -> None:
        self.stopped.set()

    def run(self) -> Stats:
        describe = getattr(self.copier, "describe", dict)
        self.log.info("worker_started", threads=self.threads, lease_seconds=self.lease_seconds,
                      max_attempts=self.max_attempts, exit_when_done=self.exit_when_done, **describe())
        self.observer.worker_started(self.id)
        pool = ThreadPoolExecutor(self.threads, thread_name_prefix="copy")
        try:
            self._loop(pool)
        finally:
            self._shutdown(pool)
            self.observer.worker_stopped()
        self.log.info("worker_stopped", **dataclasses.asdict(self.stats),
                      seconds=round(time.monotonic() - self._started, 3))
        return self.stats

    # -- the loop ----------------------------------------------------------------------------

    def _loop(self, pool: ThreadPoolExecutor) -> None:
        idle = POLL_MIN_SECONDS
        while not self.stopped.is_set():
            self.observer.loop_tick(WORKING if self._inflight else IDLE, len(self._inflight))
            self._housekeeping()
            if len(self._inflight) <= self.threads:
                self._claim(pool)
            if not self._inflight:
                self._settle_suspects(release=False)
                self._flush()
                if self.exit_when_done and not self.ledger.unfinished():
                    self.log.info("worker_drained")
                    return
                self.stopped.wait(idle)
                idle = min(idle * 2, POLL_MAX_SECONDS)
                continue
            idle = POLL_MIN_SECONDS
            self._collect(timeout=FLUSH_SECONDS)
            if len(self._outcomes) >= FLUSH_ROWS or time.monotonic() - self._oldest_outcome >= FLUSH_SECONDS:
                self._flush()

    def _claim(self, pool: ThreadPoolExecutor) -> None:
        # Keep up to two batches' worth in hand so copy threads never wait on a claim.
        limit = min(self.claim_batch, 2 * self.threads - len(self._inflight))
        if limit <= 0:
            return
        # Outcomes waiting to be written ride along: one commit for both, two round trips a batch.
        outcomes, self._outcomes = self._outcomes, []
        started, asked = time.monotonic(), time.time()
        try:
            rows, written = self.ledger.claim_and_finish(self.id, limit, self.lease_seconds, outcomes)
        except BaseException:
            self._outcomes = outcomes + self._outcomes
            raise
        self.observer.rows_claimed(len(rows), time.monotonic() - started)
        self._written(outcomes, written, asked)
        if not rows:
            return
        self.stats.claimed += len(rows)
        # The ledger sets each lease to its own NOW() + lease_seconds, never earlier than `asked` +
        # lease_seconds on one clock: with `rows_finished` and `leases_renewed`, this lets a reader of
        # the log (the chaos tests) bound when this worker held each row, at no extra query.
        self.log.debug("rows_claimed", ids=[r.id for r in rows], lease_until=round(asked + self.lease_seconds, 6))
        for row in rows:
            future = pool.submit(self._copy_one, row)
            self._inflight[row.id] = (row, future)
            future.add_done_callback(lambda _, row_id=row.id: self._finished.put(row_id))

    def _collect(self, timeout: float) -> None:
        """Record the copies that finished: waits up to `timeout` for the first, takes the rest as they are."""
        try:
            row_id = self._finished.get(timeout=timeout)
        except queue.Empty:
            return
        while True:
            entry = self._inflight.pop(row_id, None)
            if entry is not None:  # None: cancelled at shutdown, already recorded as released
                self._record(entry[1].result())
            try:
                row_id = self._finished.get_nowait()
            except queue.Empty:
                return

    def _record(self, outcome: Outcome) -> None:
        if outcome.state == "done" and not self._proven:
            self._proven = True
            self._settle_suspects(release=False)
        elif outcome.state == "failed" and outcome.code == "AccessDenied" and not self._proven:
            self._suspects.append(outcome)
            if len(self._suspects) >= ACCESS_DENIED_BREAKER and self.fatal is None:
                self.fatal = CopyError(
                    f"AccessDenied on the first {len(self._suspects)} copies and no success: check that the "
                    "credentials may GetObject on OLD_BUCKET and PutObject on NEW_BUCKET",
                    code="AccessDenied", retryable=False)
                self.log.error("worker_misconfigured", code="AccessDenied", error=str(self.fatal))
                self.stopped.set()
            return
        self._append(outcome)

    def _settle_suspects(self, *, release: bool) -> None:
        """Held AccessDenied results: failed as they are once the worker has proven it can copy (or has
        nothing else to try), released unfinished when the breaker tripped."""
        suspects, self._suspects = self._suspects, []
        for o in suspects:
            if release:
                self._append(Outcome(o.id, "pending", attempts=o.attempts - 1, error=o.error))
            else:
                self._append(o)

    def _append(self, outcome: Outcome) -> None:
        if not self._outcomes:
            self._oldest_outcome = time.monotonic()
        self._outcomes.append(outcome)

    def _flush(self) -> None:
        if not self._outcomes:
            return
        outcomes, self._outcomes = self._outcomes, []
        asked = time.time()
        try:
            written = self.ledger.finish(self.id, outcomes)
        except BaseException:
            self._outcomes = outcomes + self._outcomes
            raise
        self._written(outcomes, written, asked)

    def _written(self, outcomes: list[Outcome], written: int, asked: float) -> None:
        if not outcomes:
            return
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
            self.log.warning("results_dropped_lease_lost", count=len(outcomes) - written,
                             ids=[o.id for o in outcomes][:50])

    def _housekeeping(self) -> None:
        now = time.monotonic()
        if now >= self._next_renew:
            self._next_renew = now + self.lease_seconds / 3
            held, asked = list(self._inflight), time.time()
            renewed = self.ledger.renew(self.id, held, self.lease_seconds)
            if renewed < len(held):
                self.log.warning("leases_lost", held=len(held), renewed=renewed)
            elif held:
                self.log.debug("leases_renewed", ids=held, lease_until=round(asked + self.lease_seconds, 6))
        if now >= self._next_rescue:
            self._next_rescue = now + max(1.0, self.lease_seconds / 4)
            requeued, failed = self.ledger.rescue_expired(self.max_attempts)
            if requeued or failed:
                self.log.warning("leases_rescued", requeued=requeued, failed=failed)
        if now >= self._next_progress:
            self._next_progress = now + PROGRESS_SECONDS
            elapsed = now - self._started
            self.log.info("progress", done=self.stats.done, failed=self.stats.failed, bytes=self.stats.bytes,
                          in_flight=len(self._inflight), objects_per_second=round(self.stats.done / elapsed, 1))

    # -- one object, on a copy thread -------------------------------------------------------

    def _copy_one(self, row: Row) -> Outcome:
        olog = self.log.bind(row_id=row.id, key=row.old_key)
        started = time.monotonic()
        current = row
        attempts = retry.Attempts()

        def attempt():
            nonlocal current
            try:
                return self.copier.copy(current)
            except SourceChanged:
                size, etag = self.copier.describe_source(current)
                olog.info("source_changed", old_etag=current.source_etag, new_etag=etag, size=size)
                current = dataclasses.replace(current, size=size, source_etag=etag)
                raise

        # `row.attempts` already counts this claim; the retries below spend what is left.
        tries = max(1, self.max_attempts - row.attempts + 1)
        spent_before = row.attempts - 1
        try:
            copied = retry.call(attempt, tries=tries, stop=self.stopped, attempts=attempts,
                                on_retry=self.observer.copy_retrying)
        except Interrupted:
            return Outcome(row.id, "pending", attempts=spent_before + attempts.used - 1)
        except LeaseLost as exc:
            # Another worker owns the row now; this outcome will not be written (the guard drops it).
            olog.warning("lease_lost", error=str(exc))
            return Outcome(row.id, "pending", attempts=spent_before + attempts.used - 1)
        except CopyError as exc:
            if exc.code in s3.SYSTEMIC_CODES:
                if self.fatal is None:
                    self.fatal = exc
                    olog.error("worker_misconfigured", code=exc.code, error=str(exc))
                self.stopped.set()
                return Outcome(row.id, "pending", attempts=spent_before + attempts.used - 1, error=str(exc))
            if exc.retryable and self.stopped.is_set():
                return Outcome(row.id, "pending", attempts=spent_before + attempts.used - 1, error=str(exc))
            olog.warning("copy_failed", code=exc.code, error=str(exc), attempts=spent_before + attempts.used)
            return Outcome(row.id, "failed", attempts=spent_before + attempts.used, size=current.size,
                           source_etag=current.source_etag, error=str(exc), code=exc.code,
                           clear_upload=self._abandon(current))
        except Exception as exc:  # a bug, not a storage error: fail the row, keep the worker
            olog.exception("copy_crashed")
            return Outcome(row.id, "failed", attempts=spent_before + max(1, attempts.used),
                           error=f"internal error: {type(exc).__name__}: {exc}")
        self.observer.copy_succeeded(copied.size, time.monotonic() - started)
        olog.debug("object_copied", method=copied.method, size=copied.size, verified_by=copied.verified_by,
                   new_key=row.new_key)
        return Outcome(row.id, "done", attempts=spent_before + attempts.used, size=copied.size,
                       source_etag=copied.source_etag, dest_etag=copied.dest_etag, copy_method=copied.method,
                       verified_by=copied.verified_by)

    def _abandon(self, row: Row) -> bool:
        """A row failed for good: abort its multipart upload, if it has one and the role may."""
        try:
            return self.copier.abandon(row)
        except Exception:  # cleanup must never lose the outcome
            self.log.exception("abandon_failed", row_id=row.id)
            return False

    # -- shutdown ----------------------------------------------------------------------------

    def _shutdown(self, pool: ThreadPoolExecutor) -> None:
        self.stopped.set()  # ends retry backoffs and interrupts multipart copies between parts
        for row_id, (row, future) in list(self._inflight.items()):
            if future.cancel():
                del self._inflight[row_id]
                self._record(Outcome(row.id, "pending", attempts=row.attempts - 1))
        deadline = time.monotonic() + DRAIN_SECONDS
        while self._inflight and time.monotonic() < deadline:
            self.observer.loop_tick(DRAINING, len(self._inflight))
            self._collect(timeout=min(0.5, max(0.0, deadline - time.monotonic())))
        for row, _ in self._inflight.values():
            self.log.warning("copy_abandoned", row_id=row.id, key=row.old_key)
            self._record(Outcome(row.id, "pending", attempts=row.attempts - 1))
        self.stats.abandoned = len(self._inflight)
        self._inflight.clear()
        self._settle_suspects(release=self.fatal is not None)
        try:
            self._flush()
        except LedgerError as exc:
            self.log.error("release_failed", error=str(exc), note="the rows come back when their lease expires")
        pool.shutdown(wait=False, cancel_futures=True)
