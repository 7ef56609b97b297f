"""A page of the source compared with the ledger: which keys are new, changed, unchanged, older than
the version the ledger has, or can't be copied. The seeder writes what it finds; `plan` only counts it.

A catch-up never moves a row backwards: another ETag or size is a change only when the version listed
is newer than the one the row describes (`newer`). An S3 Inventory older than the copy lists versions
that were overwritten since, and on a versioned source `delete-source` deletes the copied version, so
that S3 makes the previous one current again: neither is copied over the newer destination."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from datetime import datetime

from movers3 import routes
from movers3.ledger.db import utc_text
from movers3.ledger.seeds import Known, KnownRow, PageWrite, PartSpec
from movers3.settings import Settings
from movers3.transfer import s3


@dataclasses.dataclass(frozen=True)
class Listed:
    """One object as a listing or a manifest gives it."""

    key: str
    size: int
    etag: str
    storage_class: str | None = None
    restore: dict | None = None
    last_modified: datetime | None = None  # aware UTC, to the second; None: the input gave none

    @classmethod
    def from_listing(cls, obj: dict) -> Listed:
        try:
            modified = s3.last_modified(obj.get("LastModified"))
        except ValueError:  # a server's date movers3 can't read: unknown, as a manifest without dates
            modified = None
        return cls(
            obj["Key"],
            int(obj.get("Size", 0)),
            s3.bare_etag(obj.get("ETag")),
            obj.get("StorageClass"),
            obj.get("RestoreStatus"),
            modified,
        )


@dataclasses.dataclass
class Judgement:
    """A page compared with the ledger."""

    new: list[tuple[Listed, str]] = dataclasses.field(default_factory=list)
    changed: list[tuple[Listed, str]] = dataclasses.field(default_factory=list)
    unchanged: list[tuple[Listed, str]] = dataclasses.field(default_factory=list)
    # another ETag or size, but not newer than the version the row describes: left alone
    older: list[tuple[Listed, str]] = dataclasses.field(default_factory=list)
    skipped: list[tuple[Listed, str]] = dataclasses.field(default_factory=list)  # (object, reason)
    collisions: list[tuple[Listed, str]] = dataclasses.field(default_factory=list)  # also skipped
    retargeted: int = 0  # in the ledger with another destination (NEW_PREFIX changed): left as it is
    unchanged_states: dict[str, int] = dataclasses.field(default_factory=dict)  # ledger state -> count

    def page_write(
        self, settings: Settings, entries: list[Listed], *, cursor: str | None, cursor_rows: int, parts: list[PartSpec]
    ) -> PageWrite:
        """What the seeder writes for this page, with its part's cursor, in one transaction."""
        st = settings
        return PageWrite(
            old_bucket=st.old_bucket,
            new_rows=[
                (
                    st.old_bucket,
                    routes.to_db(e.key),
                    st.new_bucket,
                    routes.to_db(n),
                    e.size,
                    e.etag,
                    e.storage_class,
                    utc_text(e.last_modified),
                )
                for e, n in self.new
            ],
            changes=[
                {
                    "key": routes.to_db(e.key).hex(),
                    "size": e.size,
                    "etag": e.etag,
                    "storage_class": e.storage_class,
                    "last_modified": utc_text(e.last_modified),
                }
                for e, _ in self.changed
            ],
            parts=parts,
            cursor=cursor,
            cursor_rows=cursor_rows,
            listed=len(entries),
            skipped=len(self.skipped),
            older=len(self.older),
        )


def newer(listed: Listed, row: KnownRow) -> bool:
    """Whether a listed version that differs from the row's (ETag or size) is newer than it: the one
    rule of a catch-up, also the guard of `rows_requeue_if_changed` (which must say the same).

    Later LastModified: newer. Earlier: older (left alone). Either date unknown (a manifest without
    dates, a row seeded before schema version 5): newer, as before, since nothing says otherwise. The
    same second (S3 keeps LastModified to the second; two writes in one second are common): newer,
    so that an overwrite landing in the copied version's second is still copied (were the listed one
    the older while the copied one is still current, the worker's copy, pinned to the listed ETag,
    finds the source changed and copies the current version again: wasted, not wrong), unless
    `delete-source` removed the copied version's source: whatever is listed in that second then is
    an older version made current again."""
    if listed.last_modified is None or row.last_modified is None:
        return True
    if listed.last_modified != row.last_modified:
        return listed.last_modified > row.last_modified
    return not row.source_deleted


def judge(
    entries: Iterable[Listed], settings: Settings, lookup: Callable[[list[bytes], list[bytes]], Known]
) -> Judgement:
    """Sort a page into new, changed, unchanged, older and skipped keys. A key is skipped when it can't be
    mapped (its new key would exceed 1024 bytes) or when its new key already belongs to another
    source's row: two objects must never be copied onto one destination key."""
    st = settings
    result = Judgement()
    mapped: list[tuple[Listed, str]] = []
    for entry in entries:
        try:
            mapped.append((entry, routes.new_key(entry.key, st.old_prefix, st.new_prefix)))
        except ValueError as exc:
            result.skipped.append((entry, str(exc)))
    known = lookup([routes.to_db(e.key) for e, _ in mapped], [routes.to_db(n) for _, n in mapped])
    for entry, new in mapped:
        old_db, new_db = routes.to_db(entry.key), routes.to_db(new)
        owner = known.by_new_key.get(new_db)
        if owner is not None and owner != (st.old_bucket, old_db):
            reason = f"its new key already belongs to {owner[0]}/{routes.from_db(owner[1])}"
            result.skipped.append((entry, reason))
            result.collisions.append((entry, reason))
            continue
        row = known.by_old_key.get(old_db)
        if row is None:
            result.new.append((entry, new))
            continue
        if row.new_key != new_db:
            result.retargeted += 1
        if row.size == entry.size and row.source_etag == entry.etag:
            result.unchanged.append((entry, new))
            result.unchanged_states[row.state] = result.unchanged_states.get(row.state, 0) + 1
        elif newer(entry, row):
            result.changed.append((entry, new))
        else:
            result.older.append((entry, new))
    return result
