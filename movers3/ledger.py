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
from movers3.exceptions import ConfigError, LeaseLost, PartLost, SchemaError
from movers3.repoint import Repoint

log = structlog.get_logger("movers3.ledger")

SCHEMA_VERSION = 3
COUNTER_SLOTS = 16  # movers3_counts rows per state; the triggers use CONNECTION_ID() % 16
STATES = ("pending", "in_progress", "done", "failed")
RESCUE_PAGE = 1000
MAX_ERROR_CHARS = 1000
# `verify --sample N`: random points drawn per row wanted, at most, before it settles for fewer rows.
SAMPLE_DRAWS_PER_ROW = 4
# `status` shows the throughput of the rows finished within this many seconds.
RATE_WINDOW_SECONDS = 60


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
    # The seconds the last minute's rows span: up to now while rows remain, up to the last of them
    # once none does; at least one second. A run younger than a minute is not averaged over 60 s.
    window_seconds: float = float(RATE_WINDOW_SECONDS)

    @property
    def total(self) -> int:
        return sum(self.rows.values())

    @property
    def objects_per_second(self) -> float:
        return self.done_last_minute / self.window_seconds

    @property
    def bytes_per_second(self) -> float:
        return self.bytes_last_minute / self.window_seconds


@dataclasses.dataclass(frozen=True)
class SeedRound:
    """One round of a seed (the first listing, or a catch-up): its parts are claimed by seeders."""

    id: int
    round: int
    input: str | None  # a manifest, or None for a listing
    planned: bool
    start_after: str | None = None  # a version-2 seed stopped here: keys up to it are in


@dataclasses.dataclass(frozen=True)
class PartSpec:
    """A part to add to a round: one folder level (its files in (after, upto]) or one data file."""

    prefix: str | None = None
    after: str | None = None
    upto: str | None = None
    file: str | None = None
    file_md5: str | None = None
    ordinal: int = 0

    def key(self) -> bytes:
        if self.file is not None:
            return b"F%010d" % self.ordinal
        return b"L" + routes.to_db(self.prefix or "") + b"\0" + routes.to_db(self.after or "")

    def row(self, seed: SeedRound) -> tuple:
        return (seed.id, seed.round, self.key(), _db_or_none(self.prefix), _db_or_none(self.after),
                _db_or_none(self.upto), self.file, self.file_md5)


@dataclasses.dataclass(frozen=True)
class Part:
    """A claimed part and where it resumes."""

    id: int
    prefix: str | None
    after: str | None
    upto: str | None
    file: str | None
    file_md5: str | None
    cursor: str | None
    cursor_rows: int

    @classmethod
    def from_record(cls, record: tuple) -> Part:
        id_, prefix, after, upto, file, md5, cursor, rows = record
        return cls(id_, _str_or_none(prefix), _str_or_none(after), _str_or_none(upto), file, md5,
                   _str_or_none(cursor), int(rows))


@dataclasses.dataclass
class PageWrite:
    """One page of a part, written in one transaction with the part's cursor."""

    old_bucket: str
    new_rows: list[tuple]  # rows_insert_if_new parameters
    changes: list[dict]  # rows whose source changed: {key (hex), size, etag, storage_class}
    parts: list[PartSpec]  # sub-folders met, or the rest of a split level
    cursor: str | None
    consumed: int  # manifest data rows read (file parts)
    listed: int
    skipped: int
    narrow_to: str | None = None  # a split: this part now stops at this key


@dataclasses.dataclass(frozen=True)
class Known:
    """What the ledger already holds for a page: rows by old key, and owners of new keys."""

    by_old_key: dict[bytes, tuple]  # old_key -> (new_key, size, source_etag, state)
    by_new_key: dict[bytes, tuple]  # new_key -> (old_bucket, old_key)


class Ledger:
    def __init__(self, db: Database, *, repoint: Repoint | None = None) -> None:
        self.db = db
        self.repoint = repoint  # the application's UPDATE, run with each row finished as done

    # -- schema ------------------------------------------------------------------------------

    def create_schema(self) -> int:
        def work(tx: Tx) -> int:
            for statement in schema_statements():
                tx.raw(statement)
            tx.execute("schema_version_set", {"version": SCHEMA_VERSION})
            return SCHEMA_VERSION

        version = self.db.transaction(work)
        self.recount()
        return version

    def recount(self) -> None:
        """Set the trigger-kept counters from the rows themselves: the upgrade from a version without
        them, and the repair after rows were changed with the triggers absent (e.g. TRUNCATE)."""

        def work(tx: Tx) -> None:
            tx.executemany("counts_slot_create", [(state, slot) for state in STATES for slot in range(COUNTER_SLOTS)])
            tx.execute("counts_zero")
            tx.execute("counts_recount")

        self.db.transaction(work)

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
        how many outcomes were written (see `finish`). With re-pointing, the outcomes go first in a
        transaction of their own (`finish`), which re-points the application's records with them."""
        if self.repoint is not None and finished:
            return self.claim_and_finish(owner, limit, lease_seconds)[0], self.finish(owner, finished)
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
        done = tuple(o.id for o in outcomes if o.state == "done")
        if self.repoint is None or not done:
            return self.db.transaction(lambda tx: tx.execute_and_commit(("rows_finish_if_owned", params))[0])
        repoint = self.repoint

        def work(tx: Tx) -> int:
            # Lock the done rows this worker still owns: the finish below writes exactly those, and
            # the application's records follow exactly those, in this one transaction.
            owned = tx.all("rows_done_owned_lock", {"ids": done, "owner": owner})
            written = tx.execute("rows_finish_if_owned", params)
            for _, old_bucket, old_key, new_bucket, new_key in owned:
                tx.operator(repoint.statement, repoint.params(old_bucket, routes.from_db(old_key), new_bucket,
                                                              routes.from_db(new_key)))
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
            listing, any_seed = tx.one("seeds_listing_any")
            if listing or not any_seed:
                return True
            return bool(tx.one("rows_unfinished_any")[0])

        return self.db.transaction(work)

    # -- operators ---------------------------------------------------------------------------

    def retry_failed(self) -> int:
        return self.db.transaction(lambda tx: tx.execute("rows_failed_retry"))

    def counts(self, *, exact: bool = False) -> Counts:
        """Rows and bytes per state from the trigger-kept counters (a few rows whatever the ledger's
        size), or with `exact` by counting every row (seconds on millions of rows)."""

        def work(tx: Tx) -> Counts:
            rows, sizes = _per_state(tx, exact=exact)
            done, done_bytes, to_now, to_last = tx.one("rows_done_since", {"seconds": RATE_WINDOW_SECONDS})
            seeds = [
                {"old_bucket": b, "old_prefix": routes.from_db(p), "state": s, "round": int(rnd), "input": input_,
                 "pages": int(pages), "listed": int(listed), "added": int(added), "changed": int(changed),
                 "skipped": int(skipped), "vanished": int(vanished), "parts": int(parts),
                 "parts_finished": int(finished_parts), "started_at": _iso(started), "finished_at": _iso(finished)}
                for (b, p, s, rnd, input_, pages, listed, added, changed, skipped, vanished, parts, finished_parts,
                     started, finished) in tx.all("seeds_all")
            ]
            remaining = rows["pending"] + rows["in_progress"]
            span = (to_now if remaining else to_last) or 0
            window = min(float(RATE_WINDOW_SECONDS), max(1.0, int(span) / 1e6))
            return Counts(rows, sizes, int(done), int(done_bytes), seeds, window)

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
        """Done rows to re-check: `sample` distinct rows found at random points of the id range (index
        seeks, not a scan), or every one of them, streamed, when `sample` is 0 or at least the number
        of done rows. Points that land on a row already drawn are drawn again, a bounded number of times."""
        if sample == 0 or self.db.transaction(lambda tx: _per_state(tx, exact=False))[0]["done"] <= sample:
            with self.db.stream("rows_done_all") as records:
                yield from (DoneRow.from_record(r) for r in records)
            return
        low, high = self.db.transaction(lambda tx: tx.one("rows_done_id_range"))
        if low is None:
            return
        seen: set[int] = set()
        for _ in range(SAMPLE_DRAWS_PER_ROW * sample):
            if len(seen) == sample:
                return
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

    # -- seeding ---------------------------------------------------------------------------
    # A seed of one source runs in rounds (the first listing; later ones catch up). A round is cut
    # into parts that any number of seeder threads and processes claim with SKIP LOCKED; each page
    # commits its rows together with its part's cursor, so a crashed seeder's part resumes.

    def seed_round(self, old_bucket: str, old_prefix: str, new_bucket: str, new_prefix: str, *,
                   input: str | None, restart: bool = False) -> SeedRound:
        """Join the unfinished round of this source, or start a new one (after a finished round,
        or with `restart`, which abandons an unfinished one)."""
        key = {"old_bucket": old_bucket, "old_prefix": routes.to_db(old_prefix)}

        def work(tx: Tx) -> SeedRound:
            found = tx.one("seeds_get_for_update", key)
            if found is None:
                # Two seeders may start together: the second one's insert waits for the first's and
                # is ignored, and it joins the round the first one started.
                if tx.execute("seeds_insert", {**key, "new_bucket": new_bucket,
                                               "new_prefix": routes.to_db(new_prefix), "input": input}):
                    return SeedRound(tx.one("seeds_get_for_update", key)[0], 1, input, planned=False)
                found = tx.one("seeds_get_for_update", key)
            seed_id, state, start_after, round_, current = found
            if state == "finished" or restart:
                tx.execute("seeds_new_round", {"id": seed_id, "input": input})
                return SeedRound(seed_id, round_ + 1, input, planned=False)
            if current != input:
                raise ConfigError(f"a seed of {old_bucket}/{old_prefix}/ from {current or 'the listing'} is "
                                  "unfinished: run it again to finish it, or pass --restart to abandon it")
            planned = tx.one("parts_count", {"seed_id": seed_id, "round": round_})[0] > 0
            resume = routes.from_db(start_after) if start_after is not None and not planned else None
            return SeedRound(seed_id, round_, input, planned, resume)

        return self.db.transaction(work)

    def seed_plan(self, seed: SeedRound, parts: Sequence[PartSpec]) -> bool:
        """Add the first parts of a round, unless another seeder already did."""

        def work(tx: Tx) -> bool:
            tx.one("seeds_lock", {"id": seed.id})
            if tx.one("parts_count", {"seed_id": seed.id, "round": seed.round})[0] > 0:
                return False
            tx.executemany("parts_insert", [p.row(seed) for p in parts])
            return True

        return self.db.transaction(work)

    def part_claim(self, seed: SeedRound, owner: str, lease_seconds: int) -> Part | None:
        def work(tx: Tx) -> Part | None:
            found = tx.one("parts_claimable_lock", {"seed_id": seed.id, "round": seed.round})
            if found is None:
                return None
            tx.execute("parts_claim", {"id": found[0], "owner": owner, "lease_seconds": lease_seconds})
            return Part.from_record(found)

        return self.db.transaction(work)

    def known(self, old_bucket: str, old_keys: Sequence[bytes], new_bucket: str, new_keys: Sequence[bytes]) -> Known:
        """The ledger's rows for a page's old keys, and the rows that own its new keys."""
        if not old_keys:
            return Known({}, {})

        def work(tx: Tx) -> Known:
            by_old = {bytes(k): (bytes(n), int(size), etag, state) for k, n, size, etag, state in
                      tx.all("rows_known_by_old_route", {"bucket": old_bucket, "keys": tuple(old_keys)})}
            by_new = {bytes(n): (b, bytes(k)) for n, b, k in
                      tx.all("rows_known_by_new_route", {"bucket": new_bucket, "keys": tuple(new_keys)})}
            return Known(by_old, by_new)

        return self.db.transaction(work)

    def seed_page(self, part: Part, owner: str, lease_seconds: int, page: PageWrite, seed: SeedRound) -> int:
        """Insert a page's new rows, queue its changed ones again, add the parts it met, and move the
        part's cursor, all in one transaction; returns the rows added. Raises PartLost (and writes
        nothing) when another seeder took the part over."""

        def work(tx: Tx) -> int:
            added = tx.executemany("rows_insert_if_new", page.new_rows) if page.new_rows else 0
            if page.changes:
                tx.execute("rows_requeue_if_changed", {"bucket": page.old_bucket, "changes": json.dumps(page.changes)})
            if page.parts:
                tx.executemany("parts_insert", [p.row(seed) for p in page.parts])
            if page.narrow_to is not None:
                tx.execute("parts_narrow_if_owned", {"id": part.id, "owner": owner,
                                                     "upto_key": routes.to_db(page.narrow_to)})
            moved = tx.execute("parts_advance_if_owned", {
                "id": part.id, "owner": owner, "lease_seconds": lease_seconds,
                "cursor_key": _db_or_none(page.cursor), "rows": page.consumed, "listed": page.listed,
                "added": added, "changed": len(page.changes), "skipped": page.skipped})
            if not moved:
                raise PartLost(f"seed part {part.id}: another seeder took it over")
            return added

        return self.db.transaction(work)

    def part_finish(self, seed: SeedRound, part: Part, owner: str, old_bucket: str, folder: str) -> bool:
        """End a part; the seeder that ends a round's last part finishes the round (and counts the
        rows it did not list). True when this call finished the round."""

        def work(tx: Tx) -> bool:
            tx.one("seeds_lock", {"id": seed.id})
            if not tx.execute("parts_finish_if_owned", {"id": part.id, "owner": owner}):
                raise PartLost(f"seed part {part.id}: another seeder took it over")
            unfinished, _ = tx.one("parts_unfinished", {"seed_id": seed.id, "round": seed.round})
            if unfinished:
                return False
            pages, listed, added, changed, skipped, parts = tx.one("seeds_progress",
                                                                   {"seed_id": seed.id, "round": seed.round})
            in_ledger = tx.one("rows_count_in_folder", {"bucket": old_bucket, **folder_range(folder)})[0]
            vanished = max(0, int(in_ledger) - (int(listed) - int(skipped))) if seed.input is None else 0
            tx.execute("seeds_finish", {"id": seed.id, "round": seed.round, "vanished": vanished})
            return True

        return self.db.transaction(work)

    def part_release(self, part: Part, owner: str) -> None:
        self.db.transaction(lambda tx: tx.execute("parts_release_if_owned", {"id": part.id, "owner": owner}))

    def parts_unfinished(self, seed: SeedRound) -> tuple[int, int]:
        """Parts of the round not finished yet, and how many of them other seeders hold now."""
        found = self.db.transaction(lambda tx: tx.one("parts_unfinished", {"seed_id": seed.id, "round": seed.round}))
        return int(found[0]), int(found[1])

    def seed_progress(self, seed: SeedRound) -> dict:
        pages, listed, added, changed, skipped, parts = self.db.transaction(
            lambda tx: tx.one("seeds_progress", {"seed_id": seed.id, "round": seed.round}))
        return {"pages": int(pages), "listed": int(listed), "added": int(added), "changed": int(changed),
                "skipped": int(skipped), "parts": int(parts)}

    def rows_in_folder(self, old_bucket: str, folder: str) -> int:
        return int(self.db.transaction(
            lambda tx: tx.one("rows_count_in_folder", {"bucket": old_bucket, **folder_range(folder)})[0]))


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


def folder_range(folder: str) -> dict[str, bytes]:
    """The keys under a folder as a byte range: `images/` <= key < `images0` ('/' + 1 is '0')."""
    start = routes.to_db(folder)
    return {"folder": start, "folder_end": start[:-1] + bytes([start[-1] + 1])}


def _db_or_none(value: str | None) -> bytes | None:
    return routes.to_db(value) if value is not None else None


def _str_or_none(value: bytes | None) -> str | None:
    return routes.from_db(value) if value is not None else None


def _per_state(tx: Tx, *, exact: bool) -> tuple[dict[str, int], dict[str, int]]:
    """Rows and bytes per state: from the trigger-kept counters, or with `exact` by counting every row."""
    rows = {state: 0 for state in STATES}
    sizes = {state: 0 for state in STATES}
    for state, count, size in tx.all("rows_count_by_state") if exact else tx.all("counts_by_state"):
        rows[state], sizes[state] = int(count), int(size)
    return rows, sizes

def _iso(value: datetime | None) -> str | None:
    return value.isoformat(sep=" ") if value is not None else None
