"""The seeder: list OLD_BUCKET/OLD_PREFIX/ page by page into the ledger.

Each page's rows and the listing cursor (the last key) are committed in one transaction, so a seeder
killed at any moment resumes after the last committed page and never adds a row twice (the ledger is
unique on the old route). Workers may claim rows while it lists.
"""

from __future__ import annotations

import dataclasses
import threading

import structlog
from botocore.client import BaseClient

from movers3 import retry, routes, s3
from movers3.exceptions import CopyError, Interrupted, StorageError
from movers3.ledger import Ledger
from movers3.settings import Settings

log = structlog.get_logger("movers3.seeder")

PAGE_SIZE = 1000


@dataclasses.dataclass
class SeedStats:
    pages: int = 0
    listed: int = 0
    added: int = 0
    skipped: int = 0
    resumed_after: str | None = None


class Seeder:
    def __init__(self, ledger: Ledger, client: BaseClient, settings: Settings,
                 stop_event: threading.Event | None = None) -> None:
        self.ledger = ledger
        self.client = client
        self.settings = settings
        self.stopped = stop_event or threading.Event()

    def run(self) -> SeedStats:
        st = self.settings
        cursor = self.ledger.seed_start(st.old_bucket, st.old_prefix, st.new_bucket, st.new_prefix)
        stats = SeedStats(resumed_after=cursor.start_after)
        log.info("seed_started", bucket=st.old_bucket, prefix=routes.folder(st.old_prefix),
                 resumed_after=cursor.start_after)
        params = {"Bucket": st.old_bucket, "Prefix": routes.folder(st.old_prefix), "MaxKeys": PAGE_SIZE}
        if cursor.start_after is not None:
            params["StartAfter"] = cursor.start_after
        while True:
            if self.stopped.is_set():
                raise Interrupted("seeding stopped; `movers3 seed` resumes where it stopped")
            page = self._list(params)
            contents = page.get("Contents") or []
            if contents:
                rows = self._rows(contents, stats)
                stats.added += self.ledger.seed_page(cursor.id, rows, contents[-1]["Key"])
                stats.pages += 1
                stats.listed += len(contents)
                log.info("seed_page", page=stats.pages, listed=stats.listed, added=stats.added)
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not contents:
                break
            if not token or token == params.get("ContinuationToken"):
                raise StorageError("ListObjectsV2: the server reported more keys but gave no new continuation token")
            params = {**params, "ContinuationToken": token}
            params.pop("StartAfter", None)
        self.ledger.seed_finish(cursor.id)
        log.info("seed_finished", **dataclasses.asdict(stats))
        return stats

    def _list(self, params: dict) -> dict:
        def attempt() -> dict:
            try:
                return self.client.list_objects_v2(**params)
            except Exception as exc:  # sorted by s3.classify; anything not botocore's is re-raised
                raise s3.classify(exc, f"ListObjectsV2 on bucket {params['Bucket']!r}") from exc

        try:
            return retry.call(attempt, tries=self.settings.max_attempts, stop=self.stopped,
                              attempts=retry.Attempts())
        except CopyError as exc:
            raise s3.storage_error(exc.__cause__ or exc, f"ListObjectsV2 on bucket {params['Bucket']!r}") from exc

    def _rows(self, contents: list[dict], stats: SeedStats) -> list[tuple]:
        st = self.settings
        rows = []
        for obj in contents:
            key = obj["Key"]
            try:
                target = routes.new_key(key, st.old_prefix, st.new_prefix)
            except ValueError as exc:
                stats.skipped += 1
                log.error("key_skipped", key=key, reason=str(exc))
                continue
            rows.append((st.old_bucket, routes.to_db(key), st.new_bucket, routes.to_db(target),
                         int(obj.get("Size", 0)), s3.bare_etag(obj.get("ETag")), obj.get("StorageClass")))
        return rows
