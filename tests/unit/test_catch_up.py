"""A catch-up never moves a row backwards: the judge's rule for a listed version that differs from the
ledger's row, the dates it compares (listing, inventory, plain CSV, HEAD), and what the seeder and the
worker write of them. The same rule guards the SQL requeue; tests/integration checks that one."""

import dataclasses
from datetime import UTC, datetime, timedelta, timezone

import pytest

from movers3 import routes
from movers3.exceptions import StorageError
from movers3.ledger.db import utc_text
from movers3.ledger.seeds import Known, KnownRow
from movers3.ledger.work import Outcome
from movers3.seed import manifest
from movers3.seed.judge import Listed, judge, newer
from movers3.settings import load
from movers3.transfer import s3

SETTINGS = load(
    {
        "MYSQL_URL": "mysql://u:p@h/db",
        "OLD_BUCKET": "legacy",
        "OLD_PREFIX": "images",
        "NEW_BUCKET": "production",
        "NEW_PREFIX": "avatar",
    }
)
COPIED = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)  # the LastModified of the version the row describes
SECOND = timedelta(seconds=1)


def row(modified=COPIED, *, deleted=False, etag="copied", size=6) -> KnownRow:
    """A done row of the copied version, whose source `delete-source` removed or not."""
    return KnownRow(b"avatar/a.png", size, etag, "done", modified, deleted)


def listed(modified, etag="listed", size=6) -> Listed:
    return Listed("images/a.png", size, etag, last_modified=modified)


@pytest.mark.parametrize(
    ("listed_at", "recorded", "deleted", "is_newer"),
    [
        (COPIED + SECOND, COPIED, False, True),  # written after the copied version
        (COPIED + SECOND, COPIED, True, True),  # written after delete-source removed the copied one
        (COPIED - SECOND, COPIED, False, False),  # an inventory older than the copy
        (COPIED - SECOND, COPIED, True, False),  # the previous version, current again after delete-source
        (COPIED, COPIED, False, True),  # one second, two writes: the later may be the listed one
        (COPIED, COPIED, True, False),  # one second, and the copied version deleted: the older came back
        (None, COPIED, True, True),  # a manifest without dates: it can't know, as before
        (COPIED - SECOND, None, True, True),  # a row seeded before schema version 5: as before
    ],
)
def test_a_listed_version_counts_as_a_change_only_when_newer_than_the_rows(listed_at, recorded, deleted, is_newer):
    assert newer(listed(listed_at), row(recorded, deleted=deleted)) is is_newer


def test_judge_sorts_older_versions_apart_and_writes_the_dates_it_has():
    # name -> (the row the ledger has, or None; the version listed: size, ETag, LastModified)
    cases = {
        "same.png": (row(etag="e"), (6, "e", COPIED - SECOND)),  # the version copied: unchanged
        "newer.png": (row(), (6, "n", COPIED + SECOND)),
        "older.png": (row(), (6, "o", COPIED - SECOND)),
        "resized.png": (row(etag="r", size=5), (6, "r", COPIED - SECOND)),  # another size: older too
        "undated.png": (row(), (6, "u", None)),
        "new.png": (None, (6, "new", COPIED + 5 * SECOND)),
    }
    entries = [Listed(f"images/{name}", *version[:2], last_modified=version[2]) for name, (_, version) in cases.items()]
    known = Known(
        {
            routes.to_db(f"images/{name}"): found._replace(new_key=f"avatar/{name}".encode())
            for name, (found, _) in cases.items()
            if found is not None
        },
        {},
    )
    result = judge(entries, SETTINGS, lambda old, new: known)

    def names(pairs):
        return sorted(e.key.removeprefix("images/") for e, _ in pairs)

    assert names(result.changed) == ["newer.png", "undated.png"]
    assert names(result.older) == ["older.png", "resized.png"]
    assert names(result.unchanged) == ["same.png"] and names(result.new) == ["new.png"]
    write = result.page_write(SETTINGS, entries, cursor=None, cursor_rows=0, parts=[])
    assert write.older == 2
    assert {c["etag"]: c["last_modified"] for c in write.changes} == {"n": "2026-03-01 12:00:01.000000", "u": None}
    assert [r[-1] for r in write.new_rows] == ["2026-03-01 12:00:05.000000"]


@pytest.mark.parametrize(
    ("given", "moment"),
    [
        ("2026-03-01T12:00:00.000Z", COPIED),  # ListObjectsV2 read as the server's text; S3 Inventory
        ("2026-03-01T12:00:00Z", COPIED),  # SeaweedFS's listing
        ("2026-03-01T13:00:00.999+01:00", COPIED),  # another zone; S3 keeps no fraction of a second
        ("Sun, 01 Mar 2026 12:00:00 GMT", COPIED),  # a HEAD's Last-Modified header
        (COPIED.astimezone(timezone(timedelta(hours=-5))), COPIED),  # a client that parses timestamps
        (datetime(2026, 3, 1, 12, 0, 0), COPIED),  # naive: UTC
        ("", None),
        (None, None),
    ],
)
def test_last_modified_reads_every_form_a_source_gives_to_the_second_in_utc(given, moment):
    found = s3.last_modified(given)
    assert found == moment and (found is None or found.tzinfo is UTC)


def test_a_manifest_row_gives_its_date_when_it_has_one():
    schema = ("Bucket", "Key", "Size", "LastModifiedDate", "ETag")
    inventory = manifest._inventory_row(schema)
    assert inventory(["b", "k+1", "6", "2026-03-01T12:00:00.000Z", "e"]).last_modified == COPIED
    assert manifest._inventory_row(("Bucket", "Key", "Size", "ETag"))(["b", "k", "6", "e"]).last_modified is None
    plain = manifest._plain_row()
    assert plain(["b", "k", "6", "e", "STANDARD", "2026-03-01T12:00:00Z"]).last_modified == COPIED
    assert plain(["b", "k", "6", "e"]).last_modified is None
    with pytest.raises(StorageError, match="not a date"):
        plain(["b", "k", "6", "e", "", "yesterday"])


def test_an_outcome_carries_the_newer_versions_date_as_ledger_text():
    assert utc_text(COPIED.astimezone(timezone(timedelta(hours=2)))) == "2026-03-01 12:00:00.000000"
    assert Outcome(1, "done", 1, source_last_modified=COPIED).as_json()["source_last_modified"] == (
        "2026-03-01 12:00:00.000000"
    )
    assert "source_last_modified" not in Outcome(1, "done", 1).as_json()  # JSON_TABLE reads it as NULL


def test_an_outcome_as_json_names_every_field_the_ledger_stores():
    every = Outcome(1, "failed", 2, 3, "e", COPIED, "d", "copy", "etag", "md5:x", "x" * 2000, True, "Code", 4).as_json()
    assert set(every) == {f.name for f in dataclasses.fields(Outcome)} - {"code"}  # code is never stored
    assert len(every["error"]) == 1000
