"""The seeder's side of the ledger.

A seed of one source runs in rounds (the first listing; later ones catch up). A round is cut into
parts that any number of seeder threads and processes claim with SKIP LOCKED; each page commits its
rows together with its part's cursor, so a crashed seeder's part resumes.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import secrets
from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple

from movers3 import routes
from movers3.exceptions import ConfigError, PartLost
from movers3.ledger.db import Database, Tx, utc_moment
from movers3.routes import folder_range


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
        return (
            seed.id,
            seed.round,
            self.key(),
            _db_or_none(self.prefix),
            _db_or_none(self.after),
            _db_or_none(self.upto),
            self.file,
            self.file_md5,
        )


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
    owner: str  # this claim of the part: the seeder's name and a fresh token, carried by every write

    @classmethod
    def from_record(cls, record: tuple, owner: str) -> Part:
        id_, prefix, after, upto, file, md5, cursor, rows = record
        return cls(
            id_,
            _str_or_none(prefix),
            _str_or_none(after),
            _str_or_none(upto),
            file,
            md5,
            _str_or_none(cursor),
            int(rows),
            owner,
        )


@dataclasses.dataclass
class PageWrite:
    """One page of a part, written in one transaction with the part's cursor."""

    old_bucket: str
    new_rows: list[tuple]  # rows_insert_if_new parameters
    changes: list[dict]  # rows whose source changed: {key (hex), size, etag, storage_class, last_modified}
    parts: list[PartSpec]  # sub-folders met, or the rest of a split level
    cursor: str | None
    cursor_rows: int  # manifest data rows read up to the end of this page (file parts): where it resumes
    listed: int
    skipped: int
    narrow_to: str | None = None  # a split: this part now stops at this key
    older: int = 0  # keys listed with another version older than the row's: left alone (counted, not written)


class KnownRow(NamedTuple):
    """A ledger row a listed key already has: the version it describes, and where that stands."""

    new_key: bytes
    size: int
    source_etag: str
    state: str
    last_modified: datetime | None  # that version's LastModified (aware UTC), None when unknown
    source_deleted: bool  # `delete-source` removed that version's source


@dataclasses.dataclass(frozen=True)
class Known:
    """What the ledger already holds for a page: rows by old key, and owners of new keys."""

    by_old_key: dict[bytes, KnownRow]
    by_new_key: dict[bytes, tuple]  # new_key -> (old_bucket, old_key)


class Seeds:
    """Seed rounds, their parts and the pages of rows they insert: one per seeder thread (a
    `Database` is one connection, used by one thread)."""

    # Past 150 lines: every statement of the seeder's role, each safe to run twice, in one place.

    def __init__(self, db: Database) -> None:
        self.db = db

    def for_another_thread(self) -> Seeds:
        return Seeds(self.db.another())

    def seed_round(
        self,
        old_bucket: str,
        old_prefix: str,
        new_bucket: str,
        new_prefix: str,
        *,
        input: str | None,
        restart: bool = False,
    ) -> SeedRound:
        """Join the unfinished round of this source, or start a new one (after a finished round,
        or with `restart`, which abandons an unfinished one)."""
        key = {"old_bucket": old_bucket, "old_prefix": routes.to_db(old_prefix)}

        def work(tx: Tx) -> SeedRound:
            found = tx.one("seeds_get_for_update", key)
            if found is None:
                # Two seeders may start together: the second one's insert waits for the first's and
                # is ignored, and it joins the round the first one started.
                if tx.execute(
                    "seeds_insert",
                    {**key, "new_bucket": new_bucket, "new_prefix": routes.to_db(new_prefix), "input": input},
                ):
                    return SeedRound(tx.row("seeds_get_for_update", key)[0], 1, input, planned=False)
                found = tx.row("seeds_get_for_update", key)
            seed_id, state, start_after, round_, current = found
            if state == "finished" or restart:
                tx.execute("seeds_new_round", {"id": seed_id, "input": input})
                return SeedRound(seed_id, round_ + 1, input, planned=False)
            if current != input:
                raise ConfigError(
                    f"a seed of {routes.route(old_bucket, old_prefix)} from {current or 'the listing'} is "
                    "unfinished: run it again to finish it, or pass --restart to abandon it"
                )
            planned = tx.row("parts_count", {"seed_id": seed_id, "round": round_})[0] > 0
            resume = routes.from_db(start_after) if start_after is not None and not planned else None
            return SeedRound(seed_id, round_, input, planned, resume)

        return self.db.transaction(work)

    def seed_plan(self, seed: SeedRound, parts: Sequence[PartSpec]) -> bool:
        """Add the first parts of a round, unless another seeder already did."""

        def work(tx: Tx) -> bool:
            tx.one("seeds_lock", {"id": seed.id})
            if tx.row("parts_count", {"seed_id": seed.id, "round": seed.round})[0] > 0:
                return False
            tx.executemany("parts_insert", [p.row(seed) for p in parts])
            return True

        return self.db.transaction(work)

    def part_claim(self, seed: SeedRound, owner: str, lease_seconds: int) -> Part | None:
        """Lease the next part to `owner` under a claim of its own. Safe to run twice: run again after a
        dropped COMMIT, it finds the part that claim leased instead of leasing another."""
        claim = f"{owner}/{secrets.token_hex(8)}"
        runs = itertools.count()

        def work(tx: Tx) -> Part | None:
            found = tx.one("parts_claimed_by", {"owner": claim}) if next(runs) else None
            if found is None:
                found = tx.one("parts_claimable_lock", {"seed_id": seed.id, "round": seed.round})
                if found is None:
                    return None
                tx.execute("parts_claim", {"id": found[0], "owner": claim, "lease_seconds": lease_seconds})
            return Part.from_record(found, claim)

        return self.db.transaction(work)

    def known(self, old_bucket: str, old_keys: Sequence[bytes], new_bucket: str, new_keys: Sequence[bytes]) -> Known:
        """The ledger's rows for a page's old keys, and the rows that own its new keys."""
        if not old_keys:
            return Known({}, {})

        def work(tx: Tx) -> Known:
            by_old = {
                bytes(k): KnownRow(bytes(n), int(size), etag, state, utc_moment(modified), bool(deleted))
                for k, n, size, etag, state, modified, deleted in tx.all(
                    "rows_known_by_old_route", {"bucket": old_bucket, "keys": tuple(old_keys)}
                )
            }
            by_new = {
                bytes(n): (b, bytes(k))
                for n, b, k in tx.all("rows_known_by_new_route", {"bucket": new_bucket, "keys": tuple(new_keys)})
            }
            return Known(by_old, by_new)

        return self.db.transaction(work)

    def seed_page(
        self, part: Part, lease_seconds: int, page: PageWrite, seed: SeedRound
    ) -> tuple[int, list[tuple[str, str]]]:
        """Insert a page's new rows, queue its changed ones again, add the parts it met, and move the
        part's cursor to where the page ends, all in one transaction. Returns the rows added, and the
        keys skipped because another source's row took their new key first (old key, that source),
        which a seed judging its page at the same time can't see. Raises PartLost (and writes
        nothing) when another seeder took the part over. Safe to run twice: run again after a
        dropped COMMIT, it finds the cursor already there and writes nothing more."""
        owner = part.owner
        cursor = {"cursor_key": _db_or_none(page.cursor), "cursor_rows": page.cursor_rows}
        runs = itertools.count()
        added: int = 0
        taken: list[tuple[str, str]] = []

        def work(tx: Tx) -> tuple[int, list[tuple[str, str]]]:
            nonlocal added, taken
            if next(runs) and tx.one("parts_at_if_owned", {"id": part.id, "owner": owner, **cursor}):
                return added, taken  # the first run committed before its answer was lost
            added = tx.executemany("rows_insert_if_new", page.new_rows) if page.new_rows else 0
            taken = _taken(tx, page.new_rows) if added < len(page.new_rows) else []
            if page.changes:
                tx.execute("rows_requeue_if_changed", {"bucket": page.old_bucket, "changes": json.dumps(page.changes)})
            if page.parts:
                tx.executemany("parts_insert", [p.row(seed) for p in page.parts])
            if page.narrow_to is not None:
                tx.execute(
                    "parts_narrow_if_owned", {"id": part.id, "owner": owner, "upto_key": routes.to_db(page.narrow_to)}
                )
            moved = tx.execute(
                "parts_advance_if_owned",
                {
                    "id": part.id,
                    "owner": owner,
                    "lease_seconds": lease_seconds,
                    **cursor,
                    "listed": page.listed,
                    "added": added,
                    "changed": len(page.changes),
                    "skipped": page.skipped + len(taken),
                },
            )
            if not moved:
                raise PartLost(f"seed part {part.id}: another seeder took it over")
            return added, taken

        return self.db.transaction(work)

    def part_finish(self, seed: SeedRound, part: Part, old_bucket: str, folder: str) -> bool:
        """End a part; the seeder that ends a round's last part finishes the round (and counts the
        rows it did not list). True when this call finished the round. Safe to run twice: a part
        finished under this very claim counts as finished by it."""

        def work(tx: Tx) -> bool:
            tx.one("seeds_lock", {"id": seed.id})
            if not tx.execute("parts_finish_if_owned", {"id": part.id, "owner": part.owner}):
                raise PartLost(f"seed part {part.id}: another seeder took it over")
            unfinished, _ = tx.row("parts_unfinished", {"seed_id": seed.id, "round": seed.round})
            if unfinished:
                return False
            pages, listed, added, changed, skipped, parts = tx.row(
                "seeds_progress", {"seed_id": seed.id, "round": seed.round}
            )
            in_ledger = tx.row("rows_count_in_folder", {"bucket": old_bucket, **folder_range(folder)})[0]
            vanished = max(0, int(in_ledger) - (int(listed) - int(skipped))) if seed.input is None else 0
            tx.execute("seeds_finish", {"id": seed.id, "round": seed.round, "vanished": vanished})
            return True

        return self.db.transaction(work)

    def part_release(self, part: Part) -> None:
        self.db.transaction(lambda tx: tx.execute("parts_release_if_owned", {"id": part.id, "owner": part.owner}))

    def parts_unfinished(self, seed: SeedRound) -> tuple[int, int]:
        """Parts of the round not finished yet, and how many of them other seeders hold now."""
        found = self.db.transaction(lambda tx: tx.row("parts_unfinished", {"seed_id": seed.id, "round": seed.round}))
        return int(found[0]), int(found[1])

    def rows_in_folder(self, old_bucket: str, folder: str) -> int:
        return int(
            self.db.transaction(
                lambda tx: tx.row("rows_count_in_folder", {"bucket": old_bucket, **folder_range(folder)})[0]
            )
        )


def _taken(tx: Tx, rows: list[tuple]) -> list[tuple[str, str]]:
    """Of rows just inserted with IGNORE, those whose new key another source's row holds: (old key, owner)."""
    owners = {
        bytes(new_key): (bucket, bytes(old_key))
        for new_key, bucket, old_key in tx.all(
            "rows_known_by_new_route", {"bucket": rows[0][2], "keys": tuple(r[3] for r in rows)}
        )
    }
    taken = []
    for old_bucket, old_key, _, new_key, *_ in rows:
        owner = owners.get(bytes(new_key))
        if owner is not None and owner != (old_bucket, bytes(old_key)):
            taken.append((routes.from_db(old_key), f"{owner[0]}/{routes.from_db(owner[1])}"))
    return taken


def _db_or_none(value: str | None) -> bytes | None:
    return routes.to_db(value) if value is not None else None


def _str_or_none(value: bytes | None) -> str | None:
    return routes.from_db(value) if value is not None else None
