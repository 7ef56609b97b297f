"""Multipart uploads for large objects: cutting an object into parts within S3's limits, running the
parts concurrently, recording each finished part in the ledger so that another worker can resume the
upload, and checking what S3 assembled.

The parts themselves come from elsewhere (`PartSource`): UploadPartCopy for a server-side copy, a
ranged GET into an UploadPart for a streamed one. Memory is bounded by `buffers.Budget`, a
process-wide allowance of part buffers that parts take in order, so that a 2 GiB object costs a few
part sizes.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from typing import Any, Protocol

import botocore.exceptions
import structlog
from botocore.client import BaseClient

from movers3.exceptions import CopyError, Interrupted, LeaseLost, LedgerError
from movers3.ledger.uploads import UploadJournal
from movers3.ledger.work import Row, Upload
from movers3.transfer import s3
from movers3.transfer.buffers import Budget, OrderedMD5
from movers3.values import GIB, MIB

log = structlog.get_logger(__name__)

MIN_PART = 5 * MIB
MAX_PART = 5 * GIB
MAX_PARTS = 10_000
# How often the thread that feeds parts looks at the stop flag while parts are running.
WAIT_SLICE_SECONDS = 0.5


def part_size_for(size: int, chunksize: int) -> int:
    """The configured part size, grown in whole MiB until the object fits in 10,000 parts."""
    part = max(chunksize, MIN_PART)
    if size > part * MAX_PARTS:
        part = math.ceil(size / MAX_PARTS / MIB) * MIB
    return min(part, MAX_PART)


def plan_parts(size: int, part_size: int) -> list[tuple[int, int]]:
    """Inclusive byte ranges of `part_size` covering `size` bytes (one empty part for an empty object)."""
    if size == 0:
        return [(0, -1)]
    return [(start, min(start + part_size, size) - 1) for start in range(0, size, part_size)]


class PartSource(Protocol):
    """Produces one part of the destination's upload; returns (ETag, MD5 of the bytes or None).
    A streaming source owns the part's buffer space once called: it gives it back, or hands the bytes
    to the hasher, which does."""

    streams: bool  # parts pass through this process (and take buffer space)

    def __call__(
        self, upload_id: str, number: int, first: int, last: int, hasher: OrderedMD5 | None
    ) -> tuple[str, str | None]: ...


class Uploads:
    """Create, resume, complete and abort multipart uploads on the destination."""

    def __init__(
        self, dest: BaseClient, journal: UploadJournal, budget: Budget, *, concurrency: int, stop: threading.Event
    ) -> None:
        self.dest = dest
        self.journal = journal
        self.budget = budget
        self.concurrency = concurrency
        self.stop = stop

    def run(
        self,
        row: Row,
        part_size: int,
        create: Callable[[], dict[str, Any]],
        source: PartSource,
        expected_md5: str | None = None,
    ) -> tuple[str, list[str | None], str | None]:
        """Upload every part not yet recorded and complete. Returns the destination ETag, every part's
        MD5 (None where S3 made the part) and the whole object's MD5 when it could be computed (a
        fresh streamed upload). With `expected_md5`, that MD5 is checked before the upload is
        completed, so bytes that went wrong on the way from the source never become an object."""
        upload = self._resume_or_start(row, part_size, create)
        ranges = plan_parts(row.size, upload.part_size)
        todo = [(n, first, last) for n, (first, last) in enumerate(ranges, start=1) if n not in upload.parts]
        fresh = len(todo) == len(ranges)
        hasher = OrderedMD5(self.budget) if expected_md5 and source.streams and fresh else None
        log.info(
            "multipart_started" if len(todo) == len(ranges) else "multipart_resumed",
            row_id=row.id,
            upload_id=upload.id,
            parts=len(ranges),
            todo=len(todo),
            part_size=upload.part_size,
        )
        finished = dict(upload.parts)
        try:
            finished.update(self._parts(row, upload, todo, source, hasher))
            if hasher is not None and expected_md5 and hasher.hexdigest() != expected_md5:
                # Which part went wrong is unknown: drop the upload, the next attempt sends every part.
                if self.abort(row, log.warning):
                    log.info("multipart_aborted", row_id=row.id, upload_id=upload.id, reason="checksum mismatch")
                self.journal.forget(row)
                raise s3.mismatch("GetObject: bytes read from the source", hasher.hexdigest(), expected_md5)
            etag = self._complete(row, upload.id, [(n, finished[n][0]) for n in range(1, len(ranges) + 1)])
        except CopyError as exc:
            if exc.code == "NoSuchUpload":
                # Aborted by a lifecycle rule or an operator, or completed by a worker that lost its
                # lease: the next attempt starts a new upload.
                self.journal.forget(row)
                raise CopyError(
                    f"{exc} (the recorded upload is gone; starting a new one)", code=exc.code, retryable=True
                ) from exc
            raise
        finally:
            if hasher is not None:
                hasher.close()
        md5s = [finished[n][1] for n in range(1, len(ranges) + 1)]
        return etag, md5s, hasher.hexdigest() if hasher is not None else None

    def abort(self, row: Row, gaps_warn: Callable[..., None]) -> bool:
        """Abort the row's recorded upload; True when it is gone. The worker role may lack
        s3:AbortMultipartUpload: then the upload stays recorded on the row for `retry` to resume."""
        upload = self.journal.current(row)
        return upload is not None and self._abort(row, upload.id, gaps_warn)

    def _abort(self, row: Row, upload_id: str, gaps_warn: Callable[..., None], *, recorded: bool = True) -> bool:
        try:
            self.dest.abort_multipart_upload(Bucket=row.new_bucket, Key=row.new_key, UploadId=upload_id)
        except botocore.exceptions.ClientError as exc:
            if s3.error_code(exc) != "NoSuchUpload":
                gaps_warn(
                    "multipart_abort_failed",
                    code=s3.error_code(exc),
                    upload_id=upload_id,
                    hint=("the upload stays recorded on its row" if recorded else "the upload is recorded nowhere")
                    + "; grant s3:AbortMultipartUpload or add a lifecycle rule AbortIncompleteMultipartUpload on "
                    "the destination bucket",
                )
                return False
        except botocore.exceptions.BotoCoreError:
            return False
        return True

    # -- steps -----------------------------------------------------------------------------------

    def _resume_or_start(self, row: Row, part_size: int, create: Callable[[], dict[str, Any]]) -> Upload:
        upload = self.journal.current(row)
        if upload is not None and upload.source_etag == row.source_etag and upload.part_size:
            return upload
        if upload is not None:
            # Its parts and its metadata are of another version of the source: start over.
            log.info("multipart_restarted", row_id=row.id, upload_id=upload.id, reason="source changed")
            if not self.abort(row, log.warning):
                log.warning(
                    "multipart_upload_orphaned",
                    row_id=row.id,
                    key=row.new_key,
                    upload_id=upload.id,
                    hint="a lifecycle rule AbortIncompleteMultipartUpload on the destination cleans it up",
                )
        created = s3.request(
            self.dest.create_multipart_upload,
            "CreateMultipartUpload",
            Bucket=row.new_bucket,
            Key=row.new_key,
            **create(),
        )
        upload = Upload(created["UploadId"], row.source_etag, part_size)
        try:
            self.journal.started(row, upload)
        except (LedgerError, LeaseLost):
            # Not recorded, so no attempt would ever resume it: aborted now when the role may, not left
            # to the bucket's lifecycle rule.
            self._abort(row, upload.id, log.warning, recorded=False)
            raise
        return upload

    def _parts(
        self, row: Row, upload: Upload, todo: list[tuple[int, int, int]], source: PartSource, hasher: OrderedMD5 | None
    ) -> dict[int, tuple[str, str | None]]:
        done: dict[int, tuple[str, str | None]] = {}

        def one(number: int, first: int, last: int) -> None:
            etag, md5 = source(upload.id, number, first, last, hasher)
            self.journal.part_done(row, upload.id, number, etag, md5)
            done[number] = (etag, md5)

        futures: list[Future] = []
        running: set[Future] = set()
        failed = False
        with ThreadPoolExecutor(max(1, min(self.concurrency, len(todo))), thread_name_prefix="part") as pool:
            try:
                for number, first, last in todo:
                    while len(running) >= self.concurrency and not failed:
                        finished, running = wait(running, timeout=WAIT_SLICE_SECONDS, return_when=FIRST_EXCEPTION)
                        failed = any(f.exception() for f in finished)
                    if self.stop.is_set() or failed:
                        break
                    if source.streams:
                        # Taken here, in part order, so the part the hash waits for is never starved.
                        self.budget.acquire(last - first + 1, self.stop.is_set)
                    future = pool.submit(one, number, first, last)
                    futures.append(future)
                    running.add(future)
            finally:
                wait(futures)
        for future in futures:
            error = future.exception()
            if error is not None:
                raise error
        if len(done) != len(todo):
            raise Interrupted("stopped during a multipart upload; it stays recorded for the next worker")
        return done

    def _complete(self, row: Row, upload_id: str, parts: list[tuple[int, str]]) -> str:
        response = s3.request(
            self.dest.complete_multipart_upload,
            "CompleteMultipartUpload",
            Bucket=row.new_bucket,
            Key=row.new_key,
            UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in parts]},
        )
        return s3.bare_etag(response.get("ETag"))
