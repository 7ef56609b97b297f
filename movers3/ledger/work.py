"""The worker's side of the ledger: claim a batch of rows, renew their leases, write their outcomes,
and rescue the rows of workers that vanished. Everything here is a SELECT or an UPDATE (sql/work.sql):
the worker's database role may do nothing else.

Rows are claimed in batches (SELECT ... FOR UPDATE SKIP LOCKED, then one UPDATE, then commit: no
transaction stays open during a copy), finished in batches by a single guarded UPDATE, and rescued
by any worker once their lease has expired. The other changes of a row's state live here too, each
made by its own command: `retry`, `verify --mark-failed` and `delete-source`.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import secrets
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from movers3 import routes
from movers3.ledger.db import Database, Tx, utc_text

if TYPE_CHECKING:  # sqlparse, which it imports, costs a worker's start a tenth of a second
    from movers3.ledger.repoint import Repoint

RESCUE_PAGE = 1000
MAX_ERROR_CHARS = 1000


@dataclasses.dataclass(frozen=True)
class Upload:
    """A multipart upload recorded on a row: its id, the source version its parts come from, the
    part size they were cut with, and the parts finished so far (number -> (ETag, MD5 or None))."""

    id: str
    source_etag: str
    part_size: int
    parts: dict[int, tuple[str, str | None]] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_columns(
        cls, upload_id: str | None, source_etag: str | None, part_size: int | None, parts: str | None
    ) -> Upload | None:
        if not upload_id:
            return None
        finished = {int(n): (etag, md5) for n, etag, md5 in json.loads(parts or "[]")}
        return cls(upload_id, source_etag or "", int(part_size or 0), finished)


@dataclasses.dataclass(frozen=True)
class RowRoute:
    """A row's object: its old and new route, and the source version the ledger recorded for it."""

    id: int
    old_bucket: str
    old_key: str
    new_bucket: str
    new_key: str
    size: int
    source_etag: str

    @staticmethod
    def columns(record: Sequence) -> tuple[int, str, str, str, str, int, str]:
        """The first seven columns of a row query (id, old route, new route, size, source ETag), keys decoded."""
        id_, old_bucket, old_key, new_bucket, new_key, size, source_etag = record[:7]
        return id_, old_bucket, routes.from_db(old_key), new_bucket, routes.from_db(new_key), size, source_etag


@dataclasses.dataclass(frozen=True)
class Row(RowRoute):
    """A claimed row: what a worker needs to copy one object."""

    attempts: int
    storage_class: str | None = None
    upload: Upload | None = None
    token: int = 0  # the claim it is held under: every write about it carries this

    @classmethod
    def from_claim(cls, record: tuple, token: int) -> Row:
        attempts, storage_class, upload_id, upload_etag, part_size, parts = record[7:]
        # The claim UPDATE adds one attempt in the same transaction.
        upload = Upload.from_columns(upload_id, upload_etag, part_size, parts)
        return cls(*RowRoute.columns(record), attempts + 1, storage_class, upload, token)


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What became of a claimed row; written back by `Ledger.finish`."""

    id: int
    state: str  # done | failed | pending (released unfinished, e.g. on shutdown)
    attempts: int
    size: int | None = None
    source_etag: str | None = None
    source_last_modified: datetime | None = None  # a newer version found (SourceChanged): its LastModified
    dest_etag: str | None = None
    copy_method: str | None = None
    verified_by: str | None = None
    checksum: str | None = None
    error: str | None = None
    clear_upload: bool = False  # the row's recorded multipart upload was aborted
    code: str | None = None  # the S3 error code, for the worker's judgement; not stored
    token: int = 0  # the claim this outcome belongs to: written only while that claim holds the row

    def as_json(self) -> dict:
        """The fields `rows_finish_if_owned` reads; a field left out reads as NULL there, as None would.
        Built by hand: `dataclasses.asdict` copies every value deeply, once per object copied."""
        data = {
            "id": self.id,
            "state": self.state,
            "attempts": self.attempts,
            "size": self.size,
            "source_etag": self.source_etag,
            "source_last_modified": utc_text(self.source_last_modified),
            "dest_etag": self.dest_etag,
            "copy_method": self.copy_method,
            "verified_by": self.verified_by,
            "checksum": self.checksum,
            "error": self.error[:MAX_ERROR_CHARS] if self.error is not None else None,
            "clear_upload": self.clear_upload,
            "token": self.token,
        }
        return {name: value for name, value in data.items() if value is not None}


def new_token() -> int:
    """A claim token: 63 random bits, so that no two claims of any row by any worker share one."""
    return secrets.randbits(63) or 1


class WorkQueue:
    """The rows as a queue of work: one per worker process, on the main thread's connection."""

    def __init__(self, db: Database, *, repoint: Repoint | None = None) -> None:
        self.db = db
        self.repoint = repoint  # the application's UPDATE, run with each row finished as done

    def claim_and_finish(
        self,
        owner: str,
        limit: int,
        lease_seconds: int,
        finished: Sequence[Outcome] = (),
        held: Collection[int] = (),
    ) -> tuple[list[Row], int]:
        """Lease up to `limit` pending rows to `owner` under a fresh claim token, none of the rows it
        `held` already, and write the outcomes of `finished` rows in the same commit: two round trips
        for a claimed batch, results included. Returns the rows and how many outcomes were written
        (see `finish`). With re-pointing, the batch is claimed first and the outcomes follow in a
        transaction of their own (`finish`), which re-points the application's records with them.

        Safe to run twice: when the connection drops after the COMMIT was sent, the transaction runs
        again, finds the rows its token leased (the COMMIT landed) and returns those instead of
        claiming more; the finish it repeats writes what it wrote, alike (`rows_finish_if_owned`)."""
        if self.repoint is not None and finished:
            rows, _ = self.claim_and_finish(owner, limit, lease_seconds, held=held)
            return rows, self.finish(owner, finished)
        finish = self._finish_params(owner, finished)
        token = new_token()
        runs = itertools.count()

        def work(tx: Tx) -> tuple[list[Row], int]:
            landed = tx.all("rows_claimed_with_token", {"owner": owner, "token": token}) if next(runs) else []
            records = landed or tx.all("rows_claimable_lock", {"limit": limit, "held": tuple(held) or (0,)})
            statements = [("rows_finish_if_owned", finish)] if finish else []
            if records and not landed:
                ids = tuple(r[0] for r in records)
                claim = {"owner": owner, "token": token, "lease_seconds": lease_seconds, "ids": ids}
                statements.append(("rows_claim", claim))
            counts = tx.execute_and_commit(*statements)
            return [Row.from_claim(r, token) for r in records], counts[0] if finish else 0

        return self.db.transaction(work)

    def renew(self, owner: str, claims: Sequence[tuple[int, int]], lease_seconds: int) -> int:
        """Extend the leases of the rows this worker holds, each under its claim: (id, token) pairs."""
        if not claims:
            return 0
        ids = tuple(row_id for row_id, _ in claims)
        params = {"owner": owner, "lease_seconds": lease_seconds, "ids": ids, "claims": tuple(claims)}
        return self.db.transaction(lambda tx: tx.execute_and_commit(("rows_renew_if_owned", params))[0])

    def finish(self, owner: str, outcomes: Sequence[Outcome]) -> int:
        """Write outcomes of rows this worker still owns; returns how many were written. Fewer than
        given means some leases were lost (rescued by another worker): those results are dropped."""
        params = self._finish_params(owner, outcomes)
        if not params:
            return 0
        done = tuple((o.id, o.token) for o in outcomes if o.state == "done")
        if self.repoint is None or not done:
            return self.db.transaction(lambda tx: tx.execute_and_commit(("rows_finish_if_owned", params))[0])
        repoint = self.repoint

        def work(tx: Tx) -> int:
            # Lock the done rows this worker still owns: the finish below writes exactly those, and
            # the application's records follow exactly those, in this one transaction.
            owned = tx.all("rows_done_owned_lock", {"ids": tuple(i for i, _ in done), "claims": done, "owner": owner})
            written = tx.execute("rows_finish_if_owned", params)
            for _, old_bucket, old_key, new_bucket, new_key in owned:
                tx.operator(
                    repoint.statement,
                    repoint.params(old_bucket, routes.from_db(old_key), new_bucket, routes.from_db(new_key)),
                )
            return written

        return self.db.transaction(work)

    @staticmethod
    def _finish_params(owner: str, outcomes: Sequence[Outcome]) -> dict | None:
        if not outcomes:
            return None
        return {"owner": owner, "outcomes": json.dumps([o.as_json() for o in outcomes])}

    def rescue_expired(self, max_attempts: int) -> tuple[int, int]:
        """Expired leases back to pending (or failed once attempts are spent); one page of each."""
        params = {"max_attempts": max_attempts, "limit": RESCUE_PAGE}

        def work(tx: Tx) -> tuple[int, int]:
            requeued, failed = tx.execute_and_commit(("rows_expired_requeue", params), ("rows_expired_fail", params))
            return requeued, failed

        return self.db.transaction(work)

    def unfinished(self) -> bool:
        """True while seeding goes on, has never started, or any row is pending or in progress."""

        def work(tx: Tx) -> bool:
            listing, any_seed = tx.row("seeds_listing_any")
            if listing or not any_seed:
                return True
            return bool(tx.row("rows_unfinished_any")[0])

        return self.db.transaction(work)

    def retry_failed(self) -> tuple[int, int]:
        """Failed rows back to pending; and how many stay failed because their source was deleted."""

        def work(tx: Tx) -> tuple[int, int]:
            return tx.execute("rows_failed_retry"), int(tx.row("rows_failed_source_deleted")[0])

        return self.db.transaction(work)

    def fail_done(self, row_id: int, error: str) -> bool:
        params = {"id": row_id, "error": error[:MAX_ERROR_CHARS]}
        return bool(self.db.transaction(lambda tx: tx.execute("rows_fail_if_done", params)))

    def source_deleted(self, deleted: Sequence[tuple[int, str, str | None]]) -> None:
        """Record (id, copied source ETag, version id) of sources `delete-source` removed, guarded
        on each row still being done with that ETag (a catch-up seed may have queued it again)."""

        def work(tx: Tx) -> None:
            for row_id, etag, version in deleted:
                tx.execute("rows_source_deleted_if_unchanged", {"id": row_id, "etag": etag, "version_id": version})

        self.db.transaction(work)
