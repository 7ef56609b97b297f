"""The reads of `report --summary` against a real MariaDB, as the worker's account (SELECT only is
needed): error codes found by the server exactly as `status` finds them, each read past its limit,
and the rate chart grouped by the server into a bounded number of intervals."""

from collections import Counter
from datetime import datetime, timedelta

import pytest

from movers3 import routes, summary
from movers3.ledger.db import Database
from movers3.ledger.reads import Reads
from movers3.settings import load
from movers3.status import error_code_of
from movers3.verify import MISMATCH_ERROR_PREFIX
from tests.support.helpers import admin_exec, make_rows

pytestmark = pytest.mark.integration

MESSAGES = [
    "CopyObject: NoSuchKey: The specified key does not exist.",
    "HeadObject on the source: SlowDown: Please reduce your request rate.",
    "internal error: ValueError: bad value: here",
    "lease expired: the worker holding this row stopped renewing it",
    "lease expired on every attempt: the workers holding this row stopped renewing it",
    "source changed after it was listed; a catch-up seed queued its new version",
    MISMATCH_ERROR_PREFIX + "size 8 != 6; ETag differs",
    "CopyObject: Access Denied.x: two\nlines: and more",
    "Ärger über: Código: unicode before and in the code",
    "no clause at all",
    ": starts with a separator: x",
    "x" * 100 + ": TooLongClause: x",
    "",
    None,
]


@pytest.fixture
def reads(route) -> Reads:
    return Reads(Database(load(route.env("worker", "m3_worker")).mysql))


def fail(route, ids, error):
    admin_exec(
        route,
        "UPDATE movers3_objects SET state = 'failed', last_error = %s WHERE id IN %s",
        (error, tuple(ids)),
    )


def ids_of(route) -> list[int]:
    return [i for (i,) in admin_exec(route, "SELECT id FROM movers3_objects ORDER BY id")]


def test_the_server_finds_each_failed_rows_code_as_status_does_with_a_few_first_rows(route, seeder_ledger, reads):
    make_rows(seeder_ledger, route, 200)
    ids = ids_of(route)
    expected: Counter[str] = Counter()
    first: dict[str, list[int]] = {}
    at = 0
    # Each message on 5 rows (more than EXAMPLES_PER_CODE); then 30 codes of one row each (more codes than MAX_CODES).
    for message in MESSAGES + [f"CopyObject: Rare{n:02d}: x" for n in range(30)]:
        count = 1 if message and "Rare" in message else 5
        fail(route, ids[at : at + count], message)
        code = error_code_of(message or "")
        expected[code] += count
        first.setdefault(code, []).extend(ids[at : at + count])
        at += count
    everything = reads.failures_by_code(summary.CODE_PATTERN, 1000, summary.EXAMPLES_PER_CODE)
    assert {f.code: f.rows for f in everything} == dict(expected)
    assert len(expected) > summary.MAX_CODES
    by_id = {i: routes.from_db(k) for i, k in admin_exec(route, "SELECT id, old_key FROM movers3_objects")}
    sizes = dict(admin_exec(route, "SELECT id, size FROM movers3_objects"))
    for f in everything:
        wanted = sorted(first[f.code])[: summary.EXAMPLES_PER_CODE]
        assert [key for _, key, _ in f.examples] == [by_id[i] for i in wanted], f.code
        assert all(error_code_of(error) == f.code for _, _, error in f.examples)
        assert f.bytes == sum(sizes[i] for i in first[f.code])
    top = reads.failures_by_code(summary.CODE_PATTERN, summary.MAX_CODES, summary.EXAMPLES_PER_CODE)
    assert len(top) == summary.MAX_CODES
    assert [f.rows for f in top] == sorted((f.rows for f in top), reverse=True)
    assert {f.code for f in top} >= {c for c, n in expected.items() if n > 1 and c != "(no message)"} - {"verify"}


def test_the_rate_chart_is_grouped_by_the_server_into_bounded_intervals(route, seeder_ledger, reads):
    make_rows(seeder_ledger, route, 1000)
    start = datetime(2024, 3, 1, 8, 0, 0, 250_000)
    # Done over about three hours and a half, unevenly; one row in the last microsecond of the span.
    admin_exec(
        route,
        "UPDATE movers3_objects SET state = 'done', verified_by = IF(MOD(id, 3) = 0, 'etag', NULL),"
        " done_at = %s + INTERVAL MOD(id * 7919, 12345) SECOND + INTERVAL MOD(id, 1000) * 1000 MICROSECOND",
        (start,),
    )
    rows = admin_exec(route, "SELECT done_at, size FROM movers3_objects")
    first, last = reads.done_span()
    assert (first, last) == (min(d for d, _ in rows), max(d for d, _ in rows))
    s = summary.gather(reads)
    assert s.width_us == 120_000_000 and s.first_done == first and s.last_done == last
    assert all(0 <= slot < summary.MAX_INTERVALS for slot, _, _ in s.intervals)
    mine: Counter[int] = Counter()
    mine_bytes: Counter[int] = Counter()
    for done_at, size in rows:
        slot = (done_at - first) // timedelta(microseconds=s.width_us)
        mine[slot] += 1
        mine_bytes[slot] += size
    assert {slot: (n, b) for slot, n, b in s.intervals} == {k: (mine[k], mine_bytes[k]) for k in mine}
    assert sum(n for _, n, _ in s.intervals) == 1000
    proofs = {proof: n for proof, n, _ in s.proofs}
    by_etag = sum(i % 3 == 0 for i in ids_of(route))
    assert proofs == {"": 1000 - by_etag, "etag": by_etag} and 0 < by_etag < 1000


def test_deletions_verify_marks_and_seeds_past_the_pages_limit(route, seeder_ledger, reads, stack):
    make_rows(seeder_ledger, route, 50)
    ids = ids_of(route)
    admin_exec(route, "UPDATE movers3_objects SET state = 'done', done_at = NOW(6), verified_by = 'etag'")
    admin_exec(
        route,
        "UPDATE movers3_objects SET source_deleted_at = NOW(6) - INTERVAL id SECOND WHERE id IN %s",
        (tuple(ids[:12]),),
    )
    fail(route, ids[40:43], MISMATCH_ERROR_PREFIX + "size 1 != 2")
    fail(route, ids[43:44], "verify_ like prefix: not one of them")  # LIKE's wildcards taken literally
    fail(route, ids[44:45], "verify%: not one of them either")
    sizes = dict(admin_exec(route, "SELECT id, size FROM movers3_objects"))
    assert reads.failed_with_error_prefix(MISMATCH_ERROR_PREFIX) == (3, sum(sizes[i] for i in ids[40:43]))
    n, size, first, last = reads.source_deletions()
    assert (n, size) == (12, sum(sizes[i] for i in ids[:12]))
    assert first < last
    for i in range(summary.MAX_SEEDS + 1):  # the factory's seed, and these: one more than the page shows
        admin_exec(
            route,
            "INSERT INTO movers3_seeds (old_bucket, old_prefix, new_bucket, new_prefix, started_at)"
            " VALUES (%s, %s, %s, %s, NOW(6) + INTERVAL %s SECOND)",
            (route.old_bucket, f"{route.old_prefix}-{i}".encode(), route.new_bucket, f"n-{i}".encode(), i + 1),
        )
    s = summary.gather(reads)
    assert len(s.seeds) == summary.MAX_SEEDS + 1 and s.seeds[0].old_prefix == route.old_prefix
    assert s.started == s.seeds[0].started_at
    page = summary.render(s)
    assert f"And more seeds after these {summary.MAX_SEEDS}." in page
    assert "found 3 copies wrong" in page and "12 source objects deleted" in page
