"""A page of the source compared with the ledger: which keys are new, changed, unchanged, or can't
be copied. The seeder writes what it finds; `plan` only counts it."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable

from movers3 import routes
from movers3.ledger.seeds import Known, PageWrite, PartSpec
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

    @classmethod
    def from_listing(cls, obj: dict) -> Listed:
        return cls(
            obj["Key"],
            int(obj.get("Size", 0)),
            s3.bare_etag(obj.get("ETag")),
            obj.get("StorageClass"),
            obj.get("RestoreStatus"),
        )


@dataclasses.dataclass
class Judgement:
    """A page compared with the ledger."""

    new: list[tuple[Listed, str]] = dataclasses.field(default_factory=list)
    changed: list[tuple[Listed, str]] = dataclasses.field(default_factory=list)
    unchanged: list[tuple[Listed, str]] = dataclasses.field(default_factory=list)
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
                (st.old_bucket, routes.to_db(e.key), st.new_bucket, routes.to_db(n), e.size, e.etag, e.storage_class)
                for e, n in self.new
            ],
            changes=[
                {"key": routes.to_db(e.key).hex(), "size": e.size, "etag": e.etag, "storage_class": e.storage_class}
                for e, _ in self.changed
            ],
            parts=parts,
            cursor=cursor,
            cursor_rows=cursor_rows,
            listed=len(entries),
            skipped=len(self.skipped),
        )


def judge(
    entries: Iterable[Listed], settings: Settings, lookup: Callable[[list[bytes], list[bytes]], Known]
) -> Judgement:
    """Sort a page into new, changed, unchanged and skipped keys. A key is skipped when it can't be
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
        if row[0] != new_db:
            result.retargeted += 1
        if row[1] != entry.size or row[2] != entry.etag:
            result.changed.append((entry, new))
        else:
            result.unchanged.append((entry, new))
            result.unchanged_states[row[3]] = result.unchanged_states.get(row[3], 0) + 1
    return result
