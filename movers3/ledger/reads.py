"""Reads of the ledger for `status`, `report`, `verify` and `delete-source`: counters, streamed
reports and done rows. Nothing here writes."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterator
from datetime import datetime

from movers3 import routes
from movers3.ledger.db import Database, Tx
from movers3.ledger.schema import SOURCE_DELETED, STATES
from movers3.ledger.work import RowRoute

# `verify --sample N`: random points drawn per row wanted, at most, before it settles for fewer rows.
SAMPLE_DRAWS_PER_ROW = 4
# `verify --sample 0` reads the done rows this many at a time.
DONE_PAGE = 1000
# `status` shows the throughput of the rows finished within this many seconds.
RATE_WINDOW_SECONDS = 60


@dataclasses.dataclass(frozen=True)
class DoneRow(RowRoute):
    """A done row, as `verify` re-checks it and `delete-source` deletes its source."""

    dest_etag: str | None
    copy_method: str | None
    checksum: str | None = None  # what proved the copy, e.g. md5:<hex>
    source_deleted: bool = False  # `delete-source` removed its source on purpose

    @classmethod
    def from_record(cls, record: tuple) -> DoneRow:
        dest_etag, copy_method, checksum, source_deleted_at = record[7:]
        return cls(*RowRoute.columns(record), dest_etag, copy_method, checksum, source_deleted_at is not None)


@dataclasses.dataclass(frozen=True)
class Counts:
    rows: dict[str, int]
    bytes: dict[str, int]
    done_last_minute: int
    bytes_last_minute: int
    seeds: list[dict]
    source_deleted: int = 0  # done rows whose source `delete-source` removed on purpose
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
class FailureCode:
    """Failed rows of one error code, and the first few of them: (bucket, key, error)."""

    code: str
    rows: int
    bytes: int
    examples: list[tuple[str, str, str]]


@dataclasses.dataclass(frozen=True)
class SeedRoute:
    """A seed: the source it lists, where its objects go, and its current round."""

    old_bucket: str
    old_prefix: str
    new_bucket: str
    new_prefix: str
    state: str
    round: int
    input: str | None
    started_at: datetime
    finished_at: datetime | None
    skipped: int  # keys the current round could not map (logged as key_skipped)


class Reads:
    def __init__(self, db: Database) -> None:
        self.db = db

    def counts(self, *, exact: bool = False) -> Counts:
        """Rows and bytes per state from the trigger-kept counters (a few rows whatever the ledger's
        size), or with `exact` by counting every row (seconds on millions of rows)."""

        def work(tx: Tx) -> Counts:
            rows, sizes, source_deleted = _per_state(tx, exact=exact)
            done, done_bytes, to_now, to_last = tx.row("rows_done_since", {"seconds": RATE_WINDOW_SECONDS})
            seeds = [
                {
                    "old_bucket": b,
                    "old_prefix": routes.from_db(p),
                    "state": s,
                    "round": int(rnd),
                    "input": input_,
                    "pages": int(pages),
                    "listed": int(listed),
                    "added": int(added),
                    "changed": int(changed),
                    "skipped": int(skipped),
                    "vanished": int(vanished),
                    "parts": int(parts),
                    "parts_finished": int(finished_parts),
                    "started_at": _iso(started),
                    "finished_at": _iso(finished),
                }
                for (
                    b,
                    p,
                    s,
                    rnd,
                    input_,
                    pages,
                    listed,
                    added,
                    changed,
                    skipped,
                    vanished,
                    parts,
                    finished_parts,
                    started,
                    finished,
                ) in tx.all("seeds_all")
            ]
            remaining = rows["pending"] + rows["in_progress"]
            span = (to_now if remaining else to_last) or 0
            window = min(float(RATE_WINDOW_SECONDS), max(1.0, int(span) / 1e6))
            return Counts(rows, sizes, int(done), int(done_bytes), seeds, source_deleted, window)

        return self.db.transaction(work)

    def report(self, state: str | None = None) -> Iterator[dict]:
        """Every row, or the rows in one state, fetched as they are written out."""
        if state is None:
            stream = self.db.stream("rows_report")
        else:
            stream = self.db.stream("rows_report_in_state", {"state": state})
        with stream as records:
            for (
                id_,
                old_bucket,
                old_key,
                new_bucket,
                new_key,
                state,
                size,
                attempts,
                error,
                source_etag,
                dest_etag,
                copy_method,
                verified_by,
                checksum,
                done_at,
                source_deleted_at,
            ) in records:
                yield {
                    "id": id_,
                    "old_bucket": old_bucket,
                    "old_key": routes.from_db(old_key),
                    "new_bucket": new_bucket,
                    "new_key": routes.from_db(new_key),
                    "state": state,
                    "size": size,
                    "attempts": attempts,
                    "error": error or "",
                    "source_etag": source_etag,
                    "dest_etag": dest_etag or "",
                    "copy_method": copy_method or "",
                    "verified_by": verified_by or "",
                    "checksum": checksum or "",
                    "done_at": _iso(done_at) or "",
                    "source_deleted_at": _iso(source_deleted_at) or "",
                }

    def done_rows(self, sample: int, rng: random.Random) -> Iterator[DoneRow]:
        """Done rows to re-check: `sample` distinct rows found at random points of the id range (index
        seeks, not a scan), or every one of them, streamed, when `sample` is 0 or at least the number
        of done rows. Points that land on a row already drawn are drawn again, a bounded number of times."""
        if sample == 0 or self.done_count() <= sample:
            after = 0
            while page := self.done_page(after):
                yield from (DoneRow.from_record(r) for r in page)
                after = page[-1][0]
            return
        low, high = self.db.transaction(lambda tx: tx.row("rows_done_id_range"))
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

    def done_page(self, after: int) -> list[tuple]:
        params = {"after": after, "limit": DONE_PAGE}
        return self.db.transaction(lambda tx: tx.all("rows_done_page", params))

    def failed_errors(self, limit: int) -> list[tuple[str, int]]:
        """The commonest `last_error` values of failed rows, with their counts."""
        return [
            (error or "", int(n))
            for error, n in self.db.transaction(lambda tx: tx.all("rows_failed_top_errors", {"limit": limit}))
        ]

    def state_counts(self) -> tuple[dict[str, int], dict[str, int]]:
        """Rows and bytes per state from the trigger-kept counters alone: the worker's metrics read
        this every few seconds (SELECT on movers3_counts, which the worker role has)."""
        rows, sizes, _ = self.db.transaction(lambda tx: _per_state(tx, exact=False))
        return rows, sizes

    def seed_routes(self, limit: int) -> tuple[list[SeedRoute], datetime | None]:
        """The first `limit` seeds in the order they began, and when the first of all began."""

        def work(tx: Tx) -> tuple[list[SeedRoute], datetime | None]:
            found = [
                SeedRoute(
                    ob, routes.from_db(op), nb, routes.from_db(np), state, int(rnd), input_, start, end, int(skip)
                )
                for ob, op, nb, np, state, rnd, input_, start, end, skip in tx.all("seeds_routes", {"limit": limit})
            ]
            return found, tx.row("seeds_first_start")[0]

        return self.db.transaction(work)

    def done_span(self) -> tuple[datetime | None, datetime | None]:
        """The first and last finish of a copy (UTC), or Nones before any."""
        first, last = self.db.transaction(lambda tx: tx.row("rows_done_span"))
        return first, last

    def done_per_interval(self, start: datetime, end: datetime, width_us: int) -> list[tuple[int, int, int]]:
        """(interval number, rows, bytes) finished in each interval of `width_us` microseconds from
        `start` up to `end`, intervals without a row left out: grouped by the server."""
        params = {"start": start, "end": end, "width": width_us}
        return [
            (int(slot), int(n), int(size))
            for slot, n, size in self.db.transaction(lambda tx: tx.all("rows_done_per_interval", params))
        ]

    def failures_by_code(self, pattern: str, limit: int, examples: int) -> list[FailureCode]:
        """The `limit` commonest error codes of failed rows (the code: `pattern`'s first group, else the
        message's first clause), each with its rows, bytes and its first `examples` rows."""

        def work(tx: Tx) -> list[FailureCode]:
            found = []
            for code, n, size in tx.all("rows_failed_by_code", {"pattern": pattern, "limit": limit}):
                params = {"code": code, "pattern": pattern, "limit": examples}
                rows = [
                    (bucket, routes.from_db(key), error or "")
                    for bucket, key, error in tx.all("rows_failed_with_code", params)
                ]
                found.append(FailureCode(code, int(n), int(size), rows))
            return found

        return self.db.transaction(work)

    def done_by_proof(self) -> list[tuple[str, int, int]]:
        """(verified_by, rows, bytes) of the done rows: how each copy was proved."""
        return [
            (proof or "", int(n), int(size))
            for proof, n, size in self.db.transaction(lambda tx: tx.all("rows_done_by_proof"))
        ]

    def failed_with_error_prefix(self, prefix: str) -> tuple[int, int]:
        """Failed rows, and their bytes, whose error starts with `prefix`."""
        n, size = self.db.transaction(lambda tx: tx.row("rows_failed_with_error_prefix", {"prefix": _like(prefix)}))
        return int(n), int(size)

    def source_deletions(self) -> tuple[int, int, datetime | None, datetime | None]:
        """Rows whose source `delete-source` removed, their bytes, the first and the last deletion."""
        n, size, first, last = self.db.transaction(lambda tx: tx.row("rows_source_deleted_span"))
        return int(n), int(size), first, last

    def done_count(self) -> int:
        """Done rows, from the trigger-kept counters."""
        return self.db.transaction(lambda tx: _per_state(tx, exact=False))[0]["done"]

    def deletable_page(self, bucket: str, folder: dict[str, bytes], after: int, limit: int) -> list[DoneRow]:
        """Verified done rows under a folder whose source is still recorded as present, by id after `after`."""
        params = {"after": after, "bucket": bucket, "limit": limit, **folder}
        return [DoneRow.from_record(r) for r in self.db.transaction(lambda tx: tx.all("rows_deletable_page", params))]


def _per_state(tx: Tx, *, exact: bool) -> tuple[dict[str, int], dict[str, int], int]:
    """Rows and bytes per state, and the done rows whose source was deleted: from the trigger-kept
    counters, or with `exact` by counting every row."""
    rows = dict.fromkeys(STATES, 0)
    sizes = dict.fromkeys(STATES, 0)
    source_deleted = 0
    for state, count, size in tx.all("rows_count_by_state") if exact else tx.all("counts_by_state"):
        if state == SOURCE_DELETED:
            source_deleted = int(count)
        elif state in rows:
            rows[state], sizes[state] = int(count), int(size)
    return rows, sizes, source_deleted


def _like(prefix: str) -> str:
    """A LIKE pattern matching what starts with `prefix` (its own wildcards taken literally)."""
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat(sep=" ") if value is not None else None
