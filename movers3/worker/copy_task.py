"""One object on a copy thread: the copy and its retries, sorted into the `Outcome` the worker loop
writes back. A row released unfinished gives back the try in hand; a failed one keeps it."""

from __future__ import annotations

import dataclasses
import datetime
import threading
import time
from collections.abc import Callable

import structlog

from movers3.exceptions import CopyError, Interrupted, LeaseLost, LedgerConflict, LedgerUnavailable, SourceChanged
from movers3.ledger.work import Outcome, Row
from movers3.transfer import retry, s3
from movers3.transfer.copier import Copied, Copier
from movers3.worker.observer import WorkerObserver

Log = structlog.typing.FilteringBoundLogger


class CopyTask:
    def __init__(
        self,
        copier: Copier,
        *,
        max_attempts: int,
        stopped: threading.Event,
        observer: WorkerObserver,
        on_fatal: Callable[[CopyError, Log], None],
        log: Log,
    ) -> None:
        self.copier = copier
        self.max_attempts = max_attempts
        self.stopped = stopped
        self.observer = observer
        self.on_fatal = on_fatal  # an error every copy would meet (credentials, bucket): stop the worker
        self.log = log

    def __call__(self, row: Row, tried: CopyError | None = None) -> Outcome:
        """`tried`: how the row's first try failed, when the hot path (hot_path.py) made it; it counts
        as this claim's first attempt and the retries go on from there."""
        olog = self.log.bind(row_id=row.id, key=row.old_key)
        started = time.monotonic()
        current = row
        modified = None  # the LastModified of the version `current` describes, once a HEAD gave it
        attempts = retry.Attempts()

        replay = [tried] if tried is not None else []

        def attempt():
            nonlocal current, modified
            try:
                if replay:
                    raise replay.pop()
                return self.copier.copy(current)
            except SourceChanged:
                version = self.copier.describe_source(current)
                olog.info("source_changed", old_etag=current.source_etag, new_etag=version.etag, size=version.size)
                current = dataclasses.replace(current, size=version.size, source_etag=version.etag)
                modified = version.last_modified
                raise

        def spent() -> int:
            # `row.attempts` already counts this claim, whose tries are `attempts.used`.
            return row.attempts - 1 + attempts.used

        def released(error: str | None = None) -> Outcome:
            # Back to pending unfinished: the try in hand is given back.
            return Outcome(row.id, "pending", attempts=spent() - 1, error=error, token=row.token)

        try:
            copied = retry.call(
                attempt,
                tries=max(1, self.max_attempts - row.attempts + 1),
                stop=self.stopped,
                attempts=attempts,
                on_retry=self.observer.copy_retrying,
            )
        except Interrupted:
            return released()
        except LeaseLost as exc:
            # Another worker owns the row now; this outcome will not be written (the guard drops it).
            olog.warning("lease_lost", error=str(exc))
            return released()
        except CopyError as exc:
            if exc.code in s3.SYSTEMIC_CODES:
                self.on_fatal(exc, olog)
                return released(str(exc))
            if exc.retryable and self.stopped.is_set():
                return released(str(exc))
            olog.warning("copy_failed", code=exc.code, error=str(exc), attempts=spent())
            return Outcome(
                row.id,
                "failed",
                attempts=spent(),
                size=current.size,
                source_etag=current.source_etag,
                source_last_modified=modified,
                error=str(exc),
                code=exc.code,
                clear_upload=self._abandon(current),
                token=row.token,
            )
        except (LedgerUnavailable, LedgerConflict) as exc:
            # The upload journal could not write through a ledger outage (or lock waits) longer than
            # its reconnect window: passing, and not the object's fault. The row goes back unfinished
            # with its try; the loop writes that once it reaches the ledger, or the lease brings the
            # row back. Any other ledger error stays a failure, seen in the report.
            olog.warning("copy_interrupted", reason="ledger unavailable", error=str(exc))
            return released(str(exc))
        except Exception as exc:  # a bug, not a storage error: fail the row, keep the worker
            olog.exception("copy_crashed")
            return Outcome(
                row.id,
                "failed",
                attempts=max(spent(), row.attempts),
                error=f"internal error: {type(exc).__name__}: {exc}",
                token=row.token,
            )
        return succeeded(row, copied, spent(), modified, started, self.observer, self.log)

    def _abandon(self, row: Row) -> bool:
        """A row failed for good: abort its multipart upload, if it has one and the role may."""
        try:
            return self.copier.abandon(row)
        except Exception:  # cleanup must never lose the outcome
            self.log.exception("abandon_failed", row_id=row.id)
            return False


def succeeded(
    row: Row,
    copied: Copied,
    attempts: int,
    modified: datetime.datetime | None,
    started: float,
    observer: WorkerObserver,
    log: Log,
) -> Outcome:
    """The outcome of a copy that succeeded, told to the observer (and to the log at debug)."""
    observer.copy_succeeded(copied.size, time.monotonic() - started)
    log.debug(
        "object_copied",
        row_id=row.id,
        key=row.old_key,
        method=copied.method,
        size=copied.size,
        verified_by=copied.verified_by,
        new_key=row.new_key,
    )
    return Outcome(
        row.id,
        "done",
        attempts=attempts,
        size=copied.size,
        source_etag=copied.source_etag,
        source_last_modified=modified,
        dest_etag=copied.dest_etag,
        copy_method=copied.method,
        verified_by=copied.verified_by,
        checksum=copied.checksum,
        token=row.token,
    )
