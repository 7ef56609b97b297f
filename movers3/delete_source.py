"""`movers3 delete-source`: remove the source of every verified copy, once, carefully.

A separate command, run by a role of its own (s3:DeleteObject and s3:DeleteObjectVersion on the old
bucket, s3:GetObject on both), because the production worker's role has no DeleteObject and should
keep not having it. It walks the done rows of this source whose copy was verified and whose source
is still recorded as present, and for each one:

1. HeadObject on the destination: the new object must be there with the size and ETag the copy
   recorded; otherwise the row is skipped (a lifecycle rule, a manual delete, a later overwrite).
2. HeadObject on the source with If-Match on the ETag that was copied: a 412 means the source changed
   after the copy (skipped: a catch-up seed will queue the new version); a 404 means it is already gone
   (recorded as deleted).
3. The delete, version-aware: when the source bucket returns a VersionId (versioning enabled or
   suspended), DeleteObject of exactly that version, which a newer upload can never be; otherwise
   DeleteObject with If-Match on the copied ETag (S3 supports conditional deletes on general purpose
   buckets), so an object overwritten between the HEAD and the DELETE is kept. A server that ignores
   If-Match on DELETE leaves that window open: docs/operations.md says so.
4. The row records source_deleted_at and the version deleted, guarded on the row still being done
   with the same ETag (a catch-up seed may have queued it again meanwhile).

`--max-deletes N` bounds the deletes of one run (a guard against a wrong OLD_PREFIX or a wrong
ledger); `--dry-run` does every check and deletes nothing. Other versions of a key (noncurrent
versions from before the copy) are not touched: a lifecycle rule on noncurrent versions removes them.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import botocore.exceptions
import structlog
from botocore.client import BaseClient

from movers3 import routes
from movers3.exceptions import CopyError, Interrupted, SourceChanged
from movers3.ledger.db import Database
from movers3.ledger.reads import DoneRow, Reads
from movers3.ledger.work import WorkQueue
from movers3.progress import Progress
from movers3.routes import folder_range
from movers3.settings import Settings
from movers3.transfer import s3

log = structlog.get_logger(__name__)

PAGE = 500
THREADS = 16


@dataclasses.dataclass
class DeleteStats:
    deleted: int = 0
    already_gone: int = 0
    would_delete: int = 0
    skipped: Counter = dataclasses.field(default_factory=Counter)  # reason -> rows
    examined: int = 0
    guard_reached: bool = False


class SourceDeleter:
    threads = THREADS

    def __init__(
        self,
        db: Database,
        source: BaseClient,
        dest: BaseClient,
        settings: Settings,
        *,
        max_deletes: int,
        dry_run: bool,
        stop_event: threading.Event | None = None,
    ) -> None:
        self.reads = Reads(db)
        self.work = WorkQueue(db)  # records each deleted source on its row
        self.source = source
        self.dest = dest
        self.settings = settings
        self.max_deletes = max_deletes
        self.dry_run = dry_run
        self.stopped = stop_event or threading.Event()
        self.stats = DeleteStats()
        self._lock = threading.Lock()
        self._reserved = 0  # deletes started: never more than max_deletes, whatever the threads do

    def run(self) -> DeleteStats:
        st = self.settings
        after = 0
        folder = folder_range(routes.folder(st.old_prefix))
        log.info(
            "delete_source_started",
            bucket=st.old_bucket,
            prefix=routes.folder(st.old_prefix),
            max_deletes=self.max_deletes,
            dry_run=self.dry_run,
        )
        progress = Progress("delete-source")
        with ThreadPoolExecutor(THREADS, thread_name_prefix="delete") as pool:
            while not self._guard_reached():
                progress.tick(self.stats.examined, deleted=self.stats.deleted, skipped=sum(self.stats.skipped.values()))
                if self.stopped.is_set():
                    raise Interrupted("delete-source stopped; run it again to go on")
                candidates = self.reads.deletable_page(st.old_bucket, folder, after, PAGE)
                if not candidates:
                    break
                after = candidates[-1].id
                outcomes = list(pool.map(self._one, candidates))
                self._record(
                    [
                        (c, version)
                        for c, (verdict, version) in zip(candidates, outcomes, strict=True)
                        if verdict in ("deleted", "gone")
                    ]
                )
        self.stats.guard_reached = self._guard_reached()
        progress.done(self.stats.examined, deleted=self.stats.deleted, skipped=sum(self.stats.skipped.values()))
        log.info(
            "delete_source_finished",
            **{k: v for k, v in dataclasses.asdict(self.stats).items() if k != "skipped"},
            skipped=dict(self.stats.skipped),
        )
        return self.stats

    def _guard_reached(self) -> bool:
        with self._lock:
            return self._reserved >= self.max_deletes

    def _one(self, c: DoneRow) -> tuple[str, str | None]:
        clog = log.bind(row_id=c.id, key=c.old_key)
        with self._lock:
            self.stats.examined += 1
        try:
            return self._check_and_delete(c, clog)
        except CopyError as exc:
            if exc.code == "AccessDenied" or exc.code in s3.SYSTEMIC_CODES:
                # The role, not this object: stop instead of skipping every row.
                self.stopped.set()
                raise s3.storage_error(exc.__cause__ or exc, f"delete-source on {c.old_bucket}") from exc
            return self._skip(clog, f"S3 error: {exc.code}", error=str(exc))

    def _check_and_delete(self, c: DoneRow, clog) -> tuple[str, str | None]:
        if self.stopped.is_set():
            return self._skip(clog, "stopped")
        dest = self._head(self.dest, c.new_bucket, c.new_key, None)
        if dest is None:
            return self._skip(clog, "destination missing")
        if int(dest["ContentLength"]) != c.size or (
            c.dest_etag and s3.bare_etag(dest.get("ETag")) != s3.bare_etag(c.dest_etag)
        ):
            return self._skip(clog, "destination differs from the recorded copy")
        try:
            head = self._head(self.source, c.old_bucket, c.old_key, c.source_etag)
        except SourceChanged:
            return self._skip(clog, "source changed after the copy")
        if head is None:
            clog.info("source_already_gone")
            with self._lock:
                self.stats.already_gone += 1
            return "gone", None
        version = head.get("VersionId")
        with self._lock:
            if self._reserved >= self.max_deletes:
                return "guard", None
            self._reserved += 1
        if self.dry_run:
            with self._lock:
                self.stats.would_delete += 1
            return "dry", version
        params = {"Bucket": c.old_bucket, "Key": c.old_key}
        if version:
            params["VersionId"] = version  # exactly the version that was copied
        else:
            params["IfMatch"] = s3.quoted_etag(c.source_etag)  # only if it is still the version copied
        try:
            self.source.delete_object(**params)
        except botocore.exceptions.ClientError as exc:
            if s3.status_code(exc) == 412:
                with self._lock:
                    self._reserved -= 1
                return self._skip(clog, "source changed after the copy")
            if s3.status_code(exc) == 404:
                with self._lock:
                    self._reserved -= 1
                    self.stats.already_gone += 1
                return "gone", None
            raise s3.classify(exc, "DeleteObject on the source") from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise s3.classify(exc, "DeleteObject on the source") from exc
        clog.info("source_deleted", version_id=version)
        with self._lock:
            self.stats.deleted += 1
        return "deleted", version

    def _head(self, client: BaseClient, bucket: str, key: str, if_match: str | None) -> dict | None:
        """HeadObject, None when the object is gone; `SourceChanged` when it no longer has `if_match`."""
        params = {"Bucket": bucket, "Key": key}
        if if_match:
            params["IfMatch"] = s3.quoted_etag(if_match)
        return s3.head_or_none(client, f"HeadObject {bucket}/{key}", **params)

    def _skip(self, clog, reason: str, **extra) -> tuple[str, None]:
        clog.warning("source_delete_skipped", reason=reason, **extra)
        with self._lock:
            self.stats.skipped[reason] += 1
        return "skipped", None

    def _record(self, done: list[tuple[DoneRow, str | None]]) -> None:
        if done and not self.dry_run:
            self.work.source_deleted([(c.id, c.source_etag, version) for c, version in done])
