"""The ledger against a real MariaDB, with the production worker's account (SELECT and UPDATE only)."""

import random
import threading

import pytest

from movers3 import routes
from movers3.exceptions import LedgerError, SchemaError
from movers3.ledger import schema
from movers3.ledger.db import Database
from movers3.ledger.reads import Reads
from movers3.ledger.schema import SCHEMA_VERSION
from movers3.ledger.work import RESCUE_PAGE, Outcome, WorkQueue
from movers3.settings import load, parse_mysql_url
from tests.support.helpers import admin_exec, make_rows

pytestmark = pytest.mark.integration


def test_concurrent_claimers_never_share_a_row(route, seeder_ledger):
    make_rows(seeder_ledger, route, 600)
    claimed: dict[str, list[int]] = {}
    ready = threading.Barrier(4, timeout=30)

    def claimer(name):
        ledger = WorkQueue(Database(load(route.env("worker", "m3_worker")).mysql))
        schema.check(ledger.db)  # connected before the race starts
        mine = claimed.setdefault(name, [])
        ready.wait()
        while batch := ledger.claim_and_finish(name, 7, 60)[0]:
            mine.extend(r.id for r in batch)

    threads = [threading.Thread(target=claimer, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    everything = [i for ids in claimed.values() for i in ids]
    assert len(everything) == 600 and len(set(everything)) == 600
    assert sum(1 for ids in claimed.values() if ids) >= 2  # they really ran side by side
    owners = dict(admin_exec(route, "SELECT id, lease_owner FROM movers3_objects"))
    for name, ids in claimed.items():
        assert all(owners[i] == name for i in ids)
    assert route.states() == {"in_progress": 600}


def test_claim_returns_exact_keys_and_counts_the_attempt(route, seeder_ledger, ledger):
    make_rows(seeder_ledger, route, 3)
    batch = ledger.claim_and_finish("w", 10, 60)[0]
    assert [r.old_key for r in batch] == [route.old(f"{i:05d}") for i in range(3)]
    assert [r.new_key for r in batch] == [route.new(f"{i:05d}") for i in range(3)]
    assert all(r.attempts == 1 for r in batch)
    assert ledger.claim_and_finish("w", 10, 60)[0] == []


def test_finish_writes_only_rows_the_worker_still_owns(route, seeder_ledger, ledger):
    make_rows(seeder_ledger, route, 3)
    a, b, c = ledger.claim_and_finish("w1", 3, 60)[0]
    admin_exec(route, "UPDATE movers3_objects SET lease_owner = 'w2' WHERE id = %s", (b.id,))  # rescued and re-claimed
    written = ledger.finish(
        "w1",
        [
            Outcome(a.id, "done", 1, size=None, dest_etag="e1", copy_method="copy", verified_by="etag", token=a.token),
            Outcome(b.id, "done", 1, dest_etag="e2", token=b.token),
            Outcome(c.id, "failed", 3, error="NoSuchKey: gone " + "x" * 5000, token=c.token),
        ],
    )
    assert written == 2
    rows = {r["id"]: r for r in route.rows()}
    assert rows[a.id]["state"] == "done" and rows[a.id]["dest_etag"] == "e1" and rows[a.id]["size"] == 0
    assert rows[b.id]["state"] == "in_progress" and rows[b.id]["lease_owner"] == "w2"
    assert rows[c.id]["state"] == "failed" and rows[c.id]["attempts"] == 3
    assert rows[c.id]["last_error"].startswith("NoSuchKey") and len(rows[c.id]["last_error"]) <= 1024


def test_renew_extends_only_own_leases(route, seeder_ledger, ledger):
    make_rows(seeder_ledger, route, 2)
    a, b = ledger.claim_and_finish("w1", 2, 5)[0]
    admin_exec(route, "UPDATE movers3_objects SET lease_owner = 'w2' WHERE id = %s", (b.id,))
    assert ledger.renew("w1", [(a.id, a.token), (b.id, b.token)], 600) == 1
    expiry = dict(admin_exec(route, "SELECT id, lease_expires_at > NOW() + INTERVAL 500 SECOND FROM movers3_objects"))
    assert expiry == {a.id: 1, b.id: 0}


def test_expired_leases_are_rescued_or_failed_when_attempts_are_spent(route, seeder_ledger, ledger):
    make_rows(seeder_ledger, route, 3)
    a, b, c = ledger.claim_and_finish("dead", 3, 60)[0]
    admin_exec(
        route, "UPDATE movers3_objects SET lease_expires_at = NOW() - INTERVAL 1 SECOND WHERE id IN %s", ((a.id, b.id),)
    )
    admin_exec(route, "UPDATE movers3_objects SET attempts = 5 WHERE id = %s", (b.id,))
    assert ledger.rescue_expired(max_attempts=5) == (1, 1)
    rows = {r["id"]: r for r in route.rows()}
    assert rows[a.id]["state"] == "pending" and "lease expired" in rows[a.id]["last_error"]
    assert rows[b.id]["state"] == "failed" and "every attempt" in rows[b.id]["last_error"]
    assert rows[c.id]["state"] == "in_progress"  # its lease still runs
    again = ledger.claim_and_finish("alive", 10, 60)[0]
    assert [r.id for r in again] == [a.id] and again[0].attempts == 2


def test_more_expired_leases_than_a_rescue_page_all_come_back_a_page_at_a_time(route, seeder_ledger, ledger):
    """RESCUE_PAGE (1000) rows per statement and pass: 1,150 expired rows with attempts left and 1,050
    with none, all expired at once, come back (or fail) over a few passes, none twice."""
    make_rows(seeder_ledger, route, 2200)
    claimed = ledger.claim_and_finish("dead", 2200, 60)[0]
    assert len(claimed) == 2200
    spent = {r.id for r in claimed[1150:]}
    admin_exec(route, "UPDATE movers3_objects SET lease_expires_at = NOW(6) - INTERVAL 1 SECOND")
    admin_exec(route, "UPDATE movers3_objects SET attempts = 5 WHERE id IN %s", (tuple(spent),))
    passes = []
    while (found := ledger.rescue_expired(max_attempts=5)) != (0, 0):
        passes.append(found)
        assert len(passes) <= 3, passes
    assert all(requeued <= RESCUE_PAGE and failed <= RESCUE_PAGE for requeued, failed in passes)
    assert passes[0] == (RESCUE_PAGE, RESCUE_PAGE)  # a full page of each, then the rest
    assert (sum(p[0] for p in passes), sum(p[1] for p in passes)) == (1150, 1050)
    states = {
        i: (state, owner) for i, state, owner in admin_exec(route, "SELECT id, state, lease_owner FROM movers3_objects")
    }
    assert {i for i, (state, _) in states.items() if state == "failed"} == spent
    assert {i for i, (state, owner) in states.items() if state == "pending" and owner is None} == {
        r.id for r in claimed
    } - spent
    again = ledger.claim_and_finish("alive", 5000, 60)[0]
    assert sorted(r.id for r in again) == sorted({r.id for r in claimed} - spent)
    assert all(r.attempts == 2 for r in again)


def test_retry_puts_failed_rows_back(route, seeder_ledger, ledger):
    make_rows(seeder_ledger, route, 2)
    a, b = ledger.claim_and_finish("w", 2, 60)[0]
    ledger.finish(
        "w", [Outcome(a.id, "failed", 5, error="boom", token=a.token), Outcome(b.id, "done", 1, token=b.token)]
    )
    assert ledger.retry_failed() == (1, 0)
    assert {r["id"]: (r["state"], r["attempts"]) for r in route.rows()} == {a.id: ("pending", 0), b.id: ("done", 1)}


def test_unfinished_until_seeded_and_drained(route, seeder_ledger, ledger):
    assert ledger.unfinished()  # no seed has ever run
    make_rows(seeder_ledger, route, 1)
    assert ledger.unfinished()
    (row,) = ledger.claim_and_finish("w", 1, 60)[0]
    assert ledger.unfinished()
    ledger.finish("w", [Outcome(row.id, "done", 1, token=row.token)])
    assert not ledger.unfinished()


def test_counts_and_report(route, seeder_ledger, ledger):
    make_rows(seeder_ledger, route, 3)
    a, _b, _c = ledger.claim_and_finish("w", 1, 60)[0] + [None, None]
    ledger.finish("w", [Outcome(a.id, "done", 1, dest_etag="d", token=a.token)])
    counts = Reads(ledger.db).counts()
    assert counts.rows == {"pending": 2, "in_progress": 0, "done": 1, "failed": 0}
    assert counts.bytes["pending"] == 1 + 2 and counts.done_last_minute == 1
    report = list(Reads(ledger.db).report())
    assert [r["old_key"] for r in report] == [route.old(f"{i:05d}") for i in range(3)]
    assert report[0]["state"] == "done" and report[0]["dest_etag"] == "d"


def test_worker_account_can_not_insert_or_delete(route, ledger):
    with pytest.raises(LedgerError, match="lacks a privilege"):
        ledger.db.transaction(
            lambda tx: tx.executemany("rows_insert_if_new", [("b", b"k", "b", b"k", 1, "e", None, None)])
        )


def test_schema_missing_or_outdated_tells_to_run_init(route):
    route.stack.db.create_database("empty_ledger")
    admin_exec(route, "GRANT SELECT ON `empty_ledger`.* TO 'm3_worker'@'%'")
    empty = WorkQueue(Database(parse_mysql_url(route.stack.db.role_url("m3_worker", "empty_ledger"))))
    with pytest.raises(SchemaError, match="movers3 init"):
        schema.check(empty.db)
    admin_exec(route, "UPDATE movers3_schema SET version = 0")
    try:
        with pytest.raises(SchemaError, match="version 0.*movers3 init"):
            schema.check(Database(load(route.env("worker", "m3_worker")).mysql))
    finally:
        admin_exec(route, "UPDATE movers3_schema SET version = %s", (SCHEMA_VERSION,))


def test_init_is_idempotent(route):
    init = WorkQueue(Database(parse_mysql_url(route.stack.db.role_url("m3_init"))))
    assert schema.create(init.db) == schema.create(init.db) == SCHEMA_VERSION
    schema.check(init.db)


def test_init_upgrades_a_version_2_ledger_in_place_with_its_rows_and_counts(route):
    from pathlib import Path

    database = "upgrade_" + route.old_prefix.split("/")[0]
    with route.stack.db.admin() as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{database}`")
        cur.execute(f"GRANT CREATE, ALTER, INDEX, SELECT, INSERT, UPDATE, TRIGGER ON `{database}`.* TO 'm3_init'@'%'")
    try:
        v2 = Path(__file__).parents[1] / "support" / "schema_v2.sql"
        statements = [
            s
            for s in "\n".join(line for line in v2.read_text().splitlines() if not line.startswith("--")).split(";")
            if s.strip()
        ]
        with route.stack.db.admin(database) as conn, conn.cursor() as cur:
            for s in statements:
                cur.execute(s)
            cur.execute("INSERT INTO movers3_schema (singleton, version) VALUES (1, 2)")
            cur.executemany(
                "INSERT INTO movers3_objects (old_bucket, old_key, new_bucket, new_key, size, source_etag, "
                "state) VALUES ('b', %s, 'n', %s, %s, 'e', %s)",
                [(f"k{i}".encode(), f"n{i}".encode(), i, ("done", "pending", "failed")[i % 3]) for i in range(30)],
            )
            cur.execute(
                "INSERT INTO movers3_seeds (old_bucket, old_prefix, new_bucket, new_prefix, state, listed) "
                "VALUES ('b', 'k', 'n', 'n', 'finished', 30)"
            )
        url = route.stack.db.url("m3_init", "init-pass-0123456789", database)
        old = WorkQueue(Database(parse_mysql_url(url)))
        with pytest.raises(SchemaError):
            schema.check(old.db)
        assert schema.create(old.db) == SCHEMA_VERSION
        schema.check(old.db)
        with route.stack.db.admin(database) as conn, conn.cursor() as cur:
            # Version 5's column is there, of unknown date on every row seeded before it.
            cur.execute("SELECT COUNT(*) FROM movers3_objects WHERE source_last_modified IS NULL")
            assert cur.fetchone() == (30,)
        counts = Reads(old.db).counts()
        assert counts.rows == {"pending": 10, "in_progress": 0, "done": 10, "failed": 10}
        assert counts.bytes == Reads(old.db).counts(exact=True).bytes
        assert counts.seeds[0]["listed"] == 30 and counts.seeds[0]["round"] == 1
        assert (
            schema.create(old.db) == SCHEMA_VERSION and Reads(old.db).counts().rows == counts.rows
        )  # idempotent, recount included
    finally:
        with route.stack.db.admin() as conn, conn.cursor() as cur:
            cur.execute(f"DROP DATABASE `{database}`")


def test_status_counters_match_the_rows_through_claims_finishes_rescues_and_deletes(route, seeder_ledger):
    make_rows(seeder_ledger, route, 500)
    errors = []

    def claimer(name):
        try:
            ledger = WorkQueue(Database(load(route.env("worker", "m3_worker")).mysql))
            while batch := ledger.claim_and_finish(name, 16, 60)[0]:
                # Released once (back to pending, claimed again), else done or failed, sizes changing;
                # one in five stays in progress.
                states = ("done", "failed", "pending" if batch[0].attempts == 1 else "done", "done")
                ledger.finish(
                    name,
                    [
                        Outcome(r.id, states[r.id % 4], r.attempts, size=r.size + 1, token=r.token)
                        for r in batch
                        if r.id % 5
                    ],
                )
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=claimer, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    admin_exec(
        route,
        "UPDATE movers3_objects SET lease_expires_at = NOW() - INTERVAL 1 SECOND "
        "WHERE state = 'in_progress' AND id % 2 = 0",
    )
    ledger = WorkQueue(Database(load(route.env("worker", "m3_worker")).mysql))
    ledger.rescue_expired(max_attempts=5)  # back to pending
    admin_exec(route, "DELETE FROM movers3_objects WHERE id % 7 = 0")
    truth = {
        s: (int(n), int(b))
        for s, n, b in admin_exec(route, "SELECT state, COUNT(*), SUM(size) FROM movers3_objects GROUP BY state")
    }
    counts = Reads(ledger.db).counts()
    assert {s: (counts.rows[s], counts.bytes[s]) for s in counts.rows if counts.rows[s]} == truth
    assert len(truth) == 4


class CountingRandom(random.Random):
    """Counts the random points drawn: only the sampling branch of `done_rows` draws any."""

    draws = 0

    def randint(self, a, b):
        self.draws += 1
        return super().randint(a, b)


def test_a_verify_sample_is_of_distinct_rows_and_every_row_when_there_are_no_more(route, seeder_ledger, ledger):
    make_rows(seeder_ledger, route, 60)
    # Two rows in three done, the others pending in between: a random point that lands on a pending
    # row must move on to the next done one.
    admin_exec(
        route,
        "UPDATE movers3_objects SET state = 'done', done_at = NOW(6), dest_etag = CONCAT('d', id) WHERE id % 3 <> 0",
    )
    done = {
        i: (routes.from_db(k), routes.from_db(n))
        for i, k, n in admin_exec(
            route, "SELECT id, old_key, new_key FROM movers3_objects WHERE state = 'done' ORDER BY id"
        )
    }
    assert len(done) == 40

    # A sample smaller than the done rows: distinct done rows found at random points.
    rng = CountingRandom(7)
    some = list(Reads(ledger.db).done_rows(10, rng))
    assert len(some) == len({r.id for r in some}) == 10 and rng.draws >= 10
    for r in some:
        assert r.id in done and (r.old_key, r.new_key) == done[r.id] and r.dest_etag == f"d{r.id}"
    # Another sample draws other points: it is not simply the first rows.
    assert {r.id for r in some} != set(list(done)[:10])
    assert {r.id for r in Reads(ledger.db).done_rows(10, CountingRandom(8))} != {r.id for r in some}
    # One short of every done row is still a sample: distinct rows, a bounded number of draws.
    rng = CountingRandom(7)
    nearly = [r.id for r in Reads(ledger.db).done_rows(39, rng)]
    assert len(nearly) == len(set(nearly)) <= 39 and set(nearly) <= set(done) and 39 <= rng.draws <= 4 * 39

    # 0, or a sample at least as large as the done rows: every done row, once, in id order, no draws.
    for sample in (0, 40, 41):
        rng = CountingRandom(7)
        every = list(Reads(ledger.db).done_rows(sample, rng))
        assert [r.id for r in every] == list(done) and rng.draws == 0, sample
        assert all((r.old_key, r.new_key) == done[r.id] for r in every)


def test_the_rate_covers_the_time_its_rows_span_not_a_whole_minute(route, seeder_ledger, ledger):
    make_rows(seeder_ledger, route, 30)
    # Times are set from one instant of the server's clock and the status is bracketed by two readings
    # of it, so that however long a loaded machine takes between the statements, the bounds hold.
    ((anchor,),) = admin_exec(route, "SELECT NOW(6)")
    # 20 rows finished over the 9.5 s before the anchor, 10 still pending: about 2 rows/s, not 20 / 60.
    admin_exec(
        route,
        "UPDATE movers3_objects SET state = 'done', done_at = %s - INTERVAL MOD(id, 20) * 0.5 SECOND "
        "ORDER BY id LIMIT 20",
        (anchor,),
    )
    counts = Reads(ledger.db).counts(exact=True)
    ((after,),) = admin_exec(route, "SELECT NOW(6)")
    # While rows remain, the window runs from the first of them to now.
    elapsed = (after - anchor).total_seconds()
    assert counts.done_last_minute == 20 and 9.5 <= counts.window_seconds <= 9.5 + elapsed
    assert counts.objects_per_second == pytest.approx(20 / counts.window_seconds)
    assert counts.window_seconds < 60  # unless the machine stood still for 50 s between two statements
    # Once nothing remains, the rate is that of the work itself: from the first to the last row done.
    admin_exec(
        route,
        "UPDATE movers3_objects SET state = 'done', done_at = %s - INTERVAL 30 SECOND WHERE state = 'pending'",
        (anchor,),
    )
    counts = Reads(ledger.db).counts(exact=True)
    assert counts.done_last_minute == 30 and counts.window_seconds == pytest.approx(30.0, abs=1e-6)
    assert counts.objects_per_second == pytest.approx(1.0)
