"""The ledger: one row per source object, its old and new route and what happened to it.

Rows are claimed in batches (SELECT ... FOR UPDATE SKIP LOCKED, then one UPDATE, then commit: no
transaction stays open during a copy), finished in batches by a single guarded UPDATE, and rescued
by any worker once their lease has expired.
"""

from __future__ import annotations

import dataclasses
import json
import random
import threading
from collections.abc import Iterator, Sequence
from datetime import datetime

import structlog

from movers3 import routes
from movers3.db import Database, Tx, schema_statements
from movers3.exceptions import LeaseLost, SchemaError

log = structlog.get_logger("movers3.ledger")

SCHEMA_VERSION = 2
STATES = ("pending", "in_progress", "done", "failed")
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
    def from_columns(cls, upload_id: str | None, source_etag: str | None, part_size: int | None,
                     parts: str | None) -> Upload | None:
        if not upload_id:
            return None
        finished = {int(n): (etag, md5) for n, etag, md5 in json.loads(parts or "[]")}
        return cls(upload_id, source_etag or "", int(part_size or 0), finished)


@dataclasses.dataclass(frozen=True)
class Row:
    """A claimed row: what a worker needs to copy one object."""

    id: int
    old_bucket: str
    old_key: str
    new_bucket: str
    new_key: str
    size: int
    source_etag: str
    attempts: int
    storage_class: str | None = None
    upload: Upload | None = None

    @classmethod
    def from_claim(cls, record: tuple) -> Row:
        (id_, old_bucket, old_key, new_bucket, new_key, size, etag, attempts, storage_class,
         upload_id, upload_etag, part_size, parts) = record
        # The claim UPDATE adds one attempt in the same transaction.
        return cls(id_, old_bucket, routes.from_db(old_key), new_bucket, routes.from_db(new_key), size, etag,
                   attempts + 1, storage_class, Upload.from_columns(upload_id, upload_etag, part_size, parts))


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What became of a claimed row; written back by `Ledger.finish`."""

    id: int
    state: str  # done | failed | pending (released unfinished, e.g. on shutdown)
    attempts: int
    size: int | None = None
    source_etag: str | None = None
    dest_etag: str | None = None
    copy_method: str | None = None
    verified_by: str | None = None
    checksum: str | None = None
    error: str | None = None
    clear_upload: bool = False  # the row's recorded multipart upload was aborted
    code: str | None = None  # the S3 error code, for the worker's judgement; not stored

    def as_json(self) -> dict:
        data = dataclasses.asdict(self)
        del data["code"]
        if data["error"] is not None:
            data["error"] = data["error"][:MAX_ERROR_CHARS]
        return data


@dataclasses.dataclass(frozen=True)
class DoneRow:
    """A done row, as `verify` re-checks it."""

    id: int
    old_bucket: str
    old_key: str
    new_bucket: str
    new_key: str
    size: int
    source_etag: str
    dest_etag: str | None
    copy_method: str | None

    @classmethod
    def from_record(cls, record: tuple) -> DoneRow:
        id_, old_bucket, old_key, new_bucket, new_key, size, source_etag, dest_etag, method = record
        return cls(id_, old_bucket, routes.from_db(old_key), new_bucket, routes.from_db(new_key), size, source_etag,
                   dest_etag, method)


@dataclasses.dataclass(frozen=True)
class Counts:
    rows: dict[str, int]
    bytes: dict[str, int]
    done_last_minute: int
    bytes_last_minute: int
    seeds: list[dict]

    @property
    def total(self) -> int:
        return sum(self.rows.values())


@dataclasses.dataclass(frozen=True)
class SeedCursor:
    id: int
    start_after: str | None


class Ledger:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- schema ------------------------------------------------------------------------------

    def create_schema(self) -> int:
        def work(tx: Tx) -> int:
            for statement in schema_statements():
                tx.raw(statement)
            tx.execute("schema_version_set", {"version": SCHEMA_VERSION})
            return SCHEMA_VERSION

        return self.db.transaction(work)

    def check_schema(self) -> None:
        row = self.db.transaction(lambda tx: tx.one("schema_version"))
        version = row[0] if row else 0
        if version < SCHEMA_VERSION:
            raise SchemaError(f"the ledger schema is version {version}, this movers3 needs {SCHEMA_VERSION}: "
                              "run `movers3 init` to upgrade it")
        if version > SCHEMA_VERSION:
            raise SchemaError(f"the ledger schema is version {version}, newer than this movers3 knows "
                              f"({SCHEMA_VERSION}): upgrade movers3")

    # -- workers -----------------------------------------------------------------------------

    def claim(self, owner: str, limit: int, lease_seconds: int) -> list[Row]:
        return self.claim_and_finish(owner, limit, lease_seconds)[0]

    def claim_and_finish(self, owner: str, limit: int, lease_seconds: int,
                         finished: Sequence[Outcome] = ()) -> tuple[list[Row], int]:
        """Lease up to `limit` pending rows to `owner`, and write the outcomes of `finished` rows in
        the same commit: two round trips for a claimed batch, results included. Returns the rows and
        how many outcomes were written (see `finish`)."""
        finish = self._finish_params(owner, finished)

        def work(tx: Tx) -> tuple[list[Row], int]:
            records = tx.all("rows_claimable_lock", {"limit": limit})
            statements = [("rows_finish_if_owned", finish)] if finish else []
            if records:
                ids = tuple(r[0] for r in records)
                statements.append(("rows_claim", {"owner": owner, "lease_seconds": lease_seconds, "ids": ids}))
            counts = tx.execute_and_commit(*statements)
            return [Row.from_claim(r) for r in records], counts[0] if finish else 0

        return self.db.transaction(work)

    def renew(self, owner: str, ids: Sequence[int], lease_seconds: int) -> int:
        if not ids:
            return 0
        params = {"owner": owner, "lease_seconds": lease_seconds, "ids": tuple(ids)}
        return self.db.transaction(lambda tx: tx.execute_and_commit(("rows_renew_if_owned", params))[0])

    def journal(self, owner: str) -> UploadJournal:
        """A journal of multipart uploads for this worker's copy threads, on a connection of its own."""
        return UploadJournal(Database(self.db.url, reconnect_seconds=self.db.reconnect_seconds), owner)

    def finish(self, owner: str, outcomes: Sequence[Outcome]) -> int:
        """Write outcomes of rows this worker still owns; returns how many were written. Fewer than
        given means some leases were lost (rescued by another worker): those results are dropped."""
        params = self._finish_params(owner, outcomes)
        if not params:
            return 0
        return self.db.transaction(lambda tx: tx.execute_and_commit(("rows_finish_if_owned", params))[0])

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
            listing, any_seed = tx.one("seeds_listing_any")
            if listing or not any_seed:
                return True
            return bool(tx.one("rows_unfinished_any")[0])

        return self.db.transaction(work)

    # -- operators ---------------------------------------------------------------------------

    def retry_failed(self) -> int:
        return self.db.transaction(lambda tx: tx.execute("rows_failed_retry"))

    def counts(self) -> Counts:
        def work(tx: Tx) -> Counts:
            rows = {state: 0 for state in STATES}
            sizes = {state: 0 for state in STATES}
            for state, count, size in tx.all("rows_count_by_state"):
                rows[state], sizes[state] = int(count), int(size)
            done, done_bytes = tx.one("rows_done_since", {"seconds": 60})
            seeds = [
                {"old_bucket": b, "old_prefix": routes.from_db(p), "state": s, "pages": pages, "listed": listed,
                 "added": added, "started_at": _iso(started), "finished_at": _iso(finished)}
                for b, p, s, pages, listed, added, started, finished in tx.all("seeds_all")
            ]
            return Counts(rows, sizes, int(done), int(done_bytes), seeds)

        return self.db.transaction(work)

    def report(self, state: str | None = None) -> Iterator[dict]:
        """Every row, or the rows in one state, fetched as they are written out."""
        if state is None:
            stream = self.db.stream("rows_report")
        else:
            stream = self.db.stream("rows_report_in_state", {"state": state})
        with stream as records:
            for (id_, old_bucket, old_key, new_bucket, new_key, state, size, attempts, error, source_etag,
                 dest_etag, copy_method, verified_by, checksum, done_at) in records:
                yield {
                    "id": id_, "old_bucket": old_bucket, "old_key": routes.from_db(old_key),
                    "new_bucket": new_bucket, "new_key": routes.from_db(new_key), "state": state, "size": size,
                    "attempts": attempts, "error": error or "", "source_etag": source_etag,
                    "dest_etag": dest_etag or "", "copy_method": copy_method or "", "verified_by": verified_by or "", "checksum": checksum or "",
                    "done_at": _iso(done_at) or "",
                }

    def done_rows(self, sample: int, rng: random.Random) -> Iterator[DoneRow]:
        """Done rows to re-check: `sample` drawn at random points of the id range (index seeks, not a
        scan), or every one of them, streamed, when `sample` is 0."""
        if sample == 0:
            with self.db.stream("rows_done_all") as records:
                yield from (DoneRow.from_record(r) for r in records)
            return
        low, high = self.db.transaction(lambda tx: tx.one("rows_done_id_range"))
        if low is None:
            return
        seen: set[int] = set()
        for _ in range(sample):
            found = self.db.transaction(lambda tx: tx.one("rows_done_from", {"id": rng.randint(low, high)}))
            if found is not None and found[0] not in seen:
                seen.add(found[0])
                yield DoneRow.from_record(found)

    def fail_done(self, row_id: int, error: str) -> bool:
        params = {"id": row_id, "error": error[:MAX_ERROR_CHARS]}
        return bool(self.db.transaction(lambda tx: tx.execute("rows_fail_if_done", params)))

    def failed_errors(self, limit: int) -> list[tuple[str, int]]:
        """The commonest `last_error` values of failed rows, with their counts."""
        return [(error or "", int(n)) for error, n in
                self.db.transaction(lambda tx: tx.all("rows_failed_top_errors", {"limit": limit}))]

    # -- seeding -----------------------------------------------------------------------------

    def seed_start(self, old_bucket: str, old_prefix: str, new_bucket: str, new_prefix: str) -> SeedCursor:
        """Resume an unfinished seed of this source, or start one (a finished one lists again)."""
        key = {"old_bucket": old_bucket, "old_prefix": routes.to_db(old_prefix)}

        def work(tx: Tx) -> SeedCursor:
            found = tx.one("seeds_get_for_update", key)
            if found is None:
                tx.execute("seeds_insert", {**key, "new_bucket": new_bucket, "new_prefix": routes.to_db(new_prefix)})
                return SeedCursor(tx.one("seeds_get_for_update", key)[0], None)
            seed_id, state, start_after = found
            if state == "finished":
                tx.execute("seeds_restart", {"id": seed_id})
                return SeedCursor(seed_id, None)
            return SeedCursor(seed_id, routes.from_db(start_after) if start_after is not None else None)

        return self.db.transaction(work)

    def seed_page(self, seed_id: int, rows: Sequence[tuple], last_key: str) -> int:
        """Insert one listed page and advance the cursor in the same transaction; returns rows added."""

        def work(tx: Tx) -> int:
            added = tx.executemany("rows_insert_if_new", rows)
            tx.execute("seeds_advance_if_forward", {"id": seed_id, "start_after": routes.to_db(last_key),
                                                    "listed": len(rows), "added": added})
            return added

        return self.db.transaction(work)

    def seed_finish(self, seed_id: int) -> None:
        self.db.transaction(lambda tx: tx.execute("seeds_finish", {"id": seed_id}))


class UploadJournal:
    """Where copy threads record multipart uploads as they go, so that a worker that dies mid-object
    leaves an upload the next worker resumes instead of one nobody knows about. Writes are guarded by
    the lease like every other write; `LeaseLost` tells the copy to stop. It also remembers, for this
    process, the latest upload of each row, so that a retried attempt continues its own upload."""

    def __init__(self, db: Database | None, owner: str) -> None:
        self.db = db  # None: remembered in this process only (a copy outside any ledger)
        self.owner = owner
        self._lock = threading.Lock()  # one connection, shared by the copy threads
        self._latest: dict[int, Upload | None] = {}

    def current(self, row: Row) -> Upload | None:
        with self._lock:
            return self._latest[row.id] if row.id in self._latest else row.upload

    def started(self, row: Row, upload: Upload) -> None:
        self._write(row, "rows_upload_start_if_owned", {"upload_id": upload.id, "source_etag": upload.source_etag,
                                                        "part_size": upload.part_size})
        with self._lock:
            self._latest[row.id] = dataclasses.replace(upload, parts={})

    def part_done(self, row: Row, upload_id: str, number: int, etag: str, md5: str | None) -> None:
        self._write(row, "rows_upload_part_if_owned", {"upload_id": upload_id, "number": number, "etag": etag,
                                                       "md5": md5})
        with self._lock:
            upload = self._latest.get(row.id)
            if upload is not None and upload.id == upload_id:
                upload.parts[number] = (etag, md5)

    def forget(self, row: Row) -> None:
        self._write(row, "rows_upload_forget_if_owned", {})
        with self._lock:
            self._latest[row.id] = None

    def release(self, row_id: int) -> None:
        """The row's outcome is written: its upload, if any, is the ledger's business again."""
        with self._lock:
            self._latest.pop(row_id, None)

    def _write(self, row: Row, query: str, params: dict) -> None:
        if self.db is None:
            return
        with self._lock:
            written = self.db.transaction(lambda tx: tx.execute(query, {**params, "id": row.id, "owner": self.owner}))
        if not written:
            raise LeaseLost(f"row {row.id}: lease lost while recording its multipart upload")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat(sep=" ") if value is not None else None
