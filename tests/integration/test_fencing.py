"""Every claim is fenced: a write carries the owner and the token of the claim it belongs to, and the
ledger refuses it once that claim no longer holds the row, whoever writes it (another worker, or the
same one that claimed the row again). One row per destination object, whatever seeds race. Leases in
UTC, whatever the server's time zone does."""

import pytest

from movers3 import routes
from movers3.exceptions import LeaseLost, SchemaError
from movers3.ledger import schema
from movers3.ledger.db import Database
from movers3.ledger.seeds import PageWrite, PartSpec, Seeds
from movers3.ledger.uploads import UploadJournal
from movers3.ledger.work import Outcome, Upload, WorkQueue
from movers3.settings import load, parse_mysql_url
from tests.support.helpers import admin_exec, make_rows

pytestmark = pytest.mark.integration


def expire_and_rescue(route, ledger: WorkQueue) -> None:
    admin_exec(route, "UPDATE movers3_objects SET lease_expires_at = NOW(6) - INTERVAL 1 SECOND")
    assert ledger.rescue_expired(max_attempts=5)[0] >= 1


def test_an_older_claim_of_the_same_owner_is_refused_every_write(route, seeder_ledger, ledger):
    make_rows(seeder_ledger, route, 1)
    (first,) = ledger.claim_and_finish("w", 1, 60)[0]
    # Its lease runs out while its copy still runs; the same worker (same name) claims the row again.
    expire_and_rescue(route, ledger)
    (second,) = ledger.claim_and_finish("w", 1, 60)[0]
    assert second.id == first.id and second.token != first.token

    # The first claim's renewal, journal writes and outcome are all refused, and counted as such.
    assert ledger.renew("w", [(first.id, first.token)], 600) == 0
    journal = UploadJournal(ledger.db, "w")
    with pytest.raises(LeaseLost):
        journal.started(first, Upload("old-upload", first.source_etag, 5 * 1024 * 1024))
    stale = ledger.finish("w", [Outcome(first.id, "done", 1, dest_etag="stale", token=first.token)])
    print(f"FENCING same owner, older claim: outcome written={stale} of 1 (refused)")
    assert stale == 0
    (row,) = route.rows()
    assert (row["state"], row["dest_etag"], row["upload_id"]) == ("in_progress", None, None)

    # The second claim's are written.
    assert ledger.renew("w", [(second.id, second.token)], 600) == 1
    journal.started(second, Upload("new-upload", second.source_etag, 5 * 1024 * 1024))
    assert ledger.finish("w", [Outcome(second.id, "done", 2, dest_etag="fresh", token=second.token)]) == 1
    (row,) = route.rows()
    assert (row["state"], row["dest_etag"], row["attempts"]) == ("done", "fresh", 2)


def test_a_worker_never_claims_a_row_it_still_has_in_flight(route, seeder_ledger, ledger):
    make_rows(seeder_ledger, route, 3)
    held = ledger.claim_and_finish("w", 1, 60)[0]
    expire_and_rescue(route, ledger)  # back to pending while its copy runs on
    again = ledger.claim_and_finish("w", 3, 60, held={r.id for r in held})[0]
    assert len(again) == 2 and held[0].id not in {r.id for r in again}
    # Once the copy is over, the row is claimable by it again.
    assert [r.id for r in ledger.claim_and_finish("w", 3, 60)[0]] == [held[0].id]


def test_two_sources_racing_for_one_destination_key_get_one_row(route, stack):
    """Two seeds of different sources into one destination folder judged their pages at the same time
    (neither saw the other's row): the ledger's unique key keeps the first, and the second seed is
    told which key it skipped and which source has it."""
    settings = load(route.env("seeder", "m3_seeder"))
    seeds = Seeds(Database(settings.mysql))
    other_prefix = route.old_prefix + "-other"
    inserted = {}
    for prefix in (route.old_prefix, other_prefix):
        seed = seeds.seed_round(route.old_bucket, prefix, route.new_bucket, route.new_prefix, input=None)
        seeds.seed_plan(seed, [PartSpec(prefix=prefix + "/")])
        part = seeds.part_claim(seed, "racer", 60)
        old_key = f"{prefix}/x.png"
        row = (
            route.old_bucket,
            routes.to_db(old_key),
            route.new_bucket,
            routes.to_db(route.new("x.png")),
            1,
            "e",
            None,
            None,
        )
        page = PageWrite(route.old_bucket, [row], [], [], old_key, 0, 1, 0)
        inserted[prefix] = seeds.seed_page(part, 60, page, seed)
    assert inserted[route.old_prefix] == (1, [])
    assert inserted[other_prefix] == (0, [(f"{other_prefix}/x.png", f"{route.old_bucket}/{route.old('x.png')}")])
    rows = admin_exec(route, "SELECT old_key FROM movers3_objects WHERE new_key = %s", (route.new("x.png").encode(),))
    print(f"FENCING two sources, one new key: rows for it={len(rows)}; second seed told={inserted[other_prefix][1]}")
    assert [bytes(k).decode() for (k,) in rows] == [route.old("x.png")]
    skipped = admin_exec(route, "SELECT SUM(skipped) FROM movers3_seed_parts WHERE owner LIKE 'racer/%%'")
    assert int(skipped[0][0]) == 1


@pytest.fixture
def zones(route):
    """The server's time zone tables, and its global zone put back afterwards."""
    route.stack.db.load_time_zones()
    (before,) = admin_exec(route, "SELECT @@GLOBAL.time_zone")[0]
    yield
    admin_exec(route, "SET GLOBAL time_zone = %s", (before,))


def test_leases_outlive_a_daylight_saving_change_of_the_server_zone(route, seeder_ledger, zones):
    """A server whose zone observes daylight saving: the spring change moves its local time an hour
    ahead at once. The change is simulated by moving the global zone from CET's offset to CEST's
    (UTC+1 to UTC+2, as Europe/Berlin does on the last Sunday of March); sessions opened after it see
    local time an hour later, as they would. Leases counted in UTC don't move."""
    admin_exec(route, "SET GLOBAL time_zone = 'Europe/Berlin'")  # the zone loaded and usable
    admin_exec(route, "SET GLOBAL time_zone = 'Etc/GMT-1'")  # CET: UTC+1
    make_rows(seeder_ledger, route, 2)
    worker = WorkQueue(Database(load(route.env("worker", "m3_worker")).mysql))
    claimed = worker.claim_and_finish("w", 2, 600)[0]
    admin_exec(route, "SET GLOBAL time_zone = 'Etc/GMT-2'")  # CEST: UTC+2, an hour later
    rescuer = WorkQueue(Database(load(route.env("worker", "m3_worker")).mysql))  # a session opened after
    rescued = rescuer.rescue_expired(max_attempts=5)
    print(f"FENCING spring change (UTC+1 -> UTC+2): leases of 600 s requeued/failed by a new session={rescued}")
    assert rescued == (0, 0)
    assert {r["state"] for r in route.rows()} == {"in_progress"}
    # The worker's own session is unaffected too: its renewals and its outcomes are written.
    assert worker.renew("w", [(r.id, r.token) for r in claimed], 600) == 2
    (expires,) = admin_exec(
        route, "SELECT MAX(TIMESTAMPDIFF(SECOND, UTC_TIMESTAMP(), lease_expires_at)) FROM movers3_objects"
    )[0]
    assert 500 <= expires <= 600  # stored in UTC


def test_init_refuses_to_make_the_new_route_unique_over_rows_that_share_one(route):
    """An older ledger where two sources already share a destination key: `init` names how many and
    what to do, instead of failing half-way with a duplicate-key error."""
    name = "shared_" + route.old_prefix.split("/")[0]
    with route.stack.db.admin() as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}`")
        cur.execute(f"GRANT CREATE, ALTER, INDEX, SELECT, INSERT, UPDATE, TRIGGER ON `{name}`.* TO 'm3_init'@'%'")
    try:
        url = route.stack.db.url("m3_init", "init-pass-0123456789", name)
        db = Database(parse_mysql_url(url))
        schema.create(db)
        with route.stack.db.admin(name) as conn, conn.cursor() as cur:
            cur.execute("DROP INDEX one_row_per_destination ON movers3_objects")  # as version 3 had it
            cur.executemany(
                "INSERT INTO movers3_objects (old_bucket, old_key, new_bucket, new_key, size, source_etag) "
                "VALUES ('b', %s, 'n', %s, 1, 'e')",
                [(b"a/x", b"x"), (b"c/x", b"x"), (b"a/y", b"y")],
            )
        with pytest.raises(SchemaError, match=r"1 destination keys belong to more than one row"):
            schema.create(db)
    finally:
        with route.stack.db.admin() as conn, conn.cursor() as cur:
            cur.execute(f"DROP DATABASE `{name}`")
