"""Every ledger write happens exactly once, even when the connection drops right after its COMMIT was
sent: the server has committed, the client never hears so, and `Database.transaction` runs the whole
transaction again on a new connection. A SQL proxy on loopback between movers3 and MariaDB
(tests/support/sqlproxy.py) drops that answer on cue; each test checks the ledger says what happened
once."""

import dataclasses
import threading
import time

import pytest

from movers3.exceptions import LedgerUnavailable
from movers3.ledger.db import Database
from movers3.ledger.seeds import PageWrite, PartSpec, Seeds
from movers3.ledger.uploads import UploadJournal
from movers3.ledger.work import Outcome, Upload, WorkQueue
from movers3.settings import load
from tests.support.helpers import admin_exec, make_rows, page_row
from tests.support.services import free_port
from tests.support.sqlproxy import SqlProxy

pytestmark = pytest.mark.integration


@pytest.fixture
def proxy(stack):
    proxy = SqlProxy("127.0.0.1", stack.db.port).start()
    yield proxy
    proxy.stop()


def through(proxy: SqlProxy, route, identity: str, role: str) -> Database:
    """A ledger connection of `role` that goes through the proxy."""
    url = load(route.env(identity, role)).mysql
    return Database(dataclasses.replace(url, host="127.0.0.1", port=proxy.port, unix_socket=None))


def test_a_claim_whose_commit_answer_is_lost_returns_the_rows_it_leased_and_no_more(route, seeder_ledger, proxy):
    make_rows(seeder_ledger, route, 9)
    work = WorkQueue(through(proxy, route, "worker", "m3_worker"))
    proxy.drop_after_commit(match="SET state = 'in_progress'")
    rows = work.claim_and_finish("w", 3, 60)[0]
    assert proxy.commits_dropped == 1
    held = admin_exec(route, "SELECT id, attempts, claim_token FROM movers3_objects WHERE state = 'in_progress'")
    # No second batch was leased (it would be orphaned until its lease ran out), and the rows returned
    # are the ones the lost COMMIT leased, their attempt counted once.
    print(
        f"ONCE claim: commit answers dropped={proxy.commits_dropped}; rows leased={len(held)} (batch of 3); "
        f"returned={len(rows)}"
    )
    assert sorted(r.id for r in rows) == sorted(i for i, _, _ in held) and len(rows) == 3
    assert {(a, t) for _, a, t in held} == {(1, rows[0].token)} and all(r.attempts == 1 for r in rows)


def test_a_finish_whose_commit_answer_is_lost_counts_what_it_wrote(route, seeder_ledger, proxy):
    make_rows(seeder_ledger, route, 3)
    work = WorkQueue(through(proxy, route, "worker", "m3_worker"))
    rows = work.claim_and_finish("w", 3, 60)[0]
    outcomes = [
        Outcome(rows[0].id, "done", 1, dest_etag="d", token=rows[0].token),
        Outcome(rows[1].id, "failed", 1, error="NoSuchKey", token=rows[1].token),
        Outcome(rows[2].id, "pending", 0, token=rows[2].token),
    ]
    proxy.drop_after_commit(match="JSON_TABLE")
    written = work.finish("w", outcomes)
    print(f"ONCE finish: commit answers dropped={proxy.commits_dropped}; outcomes written={written} of 3")
    assert written == 3  # none of them reported as a lease lost
    assert proxy.commits_dropped == 1
    states = dict(admin_exec(route, "SELECT id, state FROM movers3_objects"))
    assert [states[r.id] for r in rows] == ["done", "failed", "pending"]


def test_a_seed_page_whose_commit_answer_is_lost_moves_the_cursor_once(route, proxy):
    seeds = Seeds(through(proxy, route, "seeder", "m3_seeder"))
    seed = seeds.seed_round(route.old_bucket, route.old_prefix, route.new_bucket, route.new_prefix, input="m.csv")
    seeds.seed_plan(seed, [PartSpec(file="data.csv", ordinal=1)])
    part = seeds.part_claim(seed, "seeder", 60)
    rows = [page_row(route, f"{i}", storage_class=None) for i in range(4)]
    proxy.drop_after_commit()  # the seeder commits on its own (COMMIT alone): the next one
    added, taken = seeds.seed_page(part, 60, PageWrite(route.old_bucket, rows, [], [], None, 5, 4, 0), seed)
    assert proxy.commits_dropped == 1 and (added, taken) == (4, [])
    ((cursor_rows, pages, listed, added_there),) = admin_exec(
        route, "SELECT cursor_rows, pages, listed, added FROM movers3_seed_parts WHERE id = %s", (part.id,)
    )
    print(f"ONCE seed page: cursor rows={cursor_rows} (page ends at 5); pages={pages}; rows inserted={added_there}")
    # A manifest part resumes after 5 data rows, not 10; its counters count the page once.
    assert (cursor_rows, pages, listed, added_there) == (5, 1, 4, 4)
    assert len(route.rows()) == 4


def test_a_part_finish_whose_commit_answer_is_lost_is_no_lost_part(route, proxy):
    seeds = Seeds(through(proxy, route, "seeder", "m3_seeder"))
    seed = seeds.seed_round(route.old_bucket, route.old_prefix, route.new_bucket, route.new_prefix, input=None)
    seeds.seed_plan(seed, [PartSpec(prefix=route.old_prefix + "/")])
    part = seeds.part_claim(seed, "seeder", 60)
    proxy.drop_after_commit()
    assert seeds.part_finish(seed, part, route.old_bucket, route.old_prefix + "/") is True  # no PartLost
    assert proxy.commits_dropped >= 1
    ((state,),) = admin_exec(route, "SELECT state FROM movers3_seeds WHERE id = %s", (seed.id,))
    assert state == "finished"


def test_a_part_claim_whose_commit_answer_is_lost_returns_that_part(route, proxy):
    seeds = Seeds(through(proxy, route, "seeder", "m3_seeder"))
    seed = seeds.seed_round(route.old_bucket, route.old_prefix, route.new_bucket, route.new_prefix, input=None)
    seeds.seed_plan(seed, [PartSpec(prefix=route.old_prefix + "/"), PartSpec(prefix=route.old_prefix + "/b/")])
    proxy.drop_after_commit()
    part = seeds.part_claim(seed, "seeder", 60)
    assert proxy.commits_dropped == 1
    listing = admin_exec(route, "SELECT id, owner FROM movers3_seed_parts WHERE state = 'listing'")
    assert listing == ((part.id, part.owner),)  # the other part is still free for another seeder


def test_a_journal_write_whose_commit_answer_is_lost_is_no_lost_lease(route, seeder_ledger, proxy):
    make_rows(seeder_ledger, route, 1)
    work = WorkQueue(through(proxy, route, "worker", "m3_worker"))
    (row,) = work.claim_and_finish("w", 1, 60)[0]
    journal = UploadJournal.open(work.db, "w")
    proxy.drop_after_commit()  # the journal commits on its own: the next COMMIT is this write's
    journal.started(row, Upload("u-1", row.source_etag, 5 * 1024 * 1024))  # no LeaseLost
    proxy.drop_after_commit()
    journal.part_done(row, "u-1", 1, "etag-1", None)
    assert proxy.commits_dropped == 2
    ((upload_id, parts),) = admin_exec(route, "SELECT upload_id, upload_parts FROM movers3_objects")
    assert upload_id == "u-1" and Upload.from_columns(upload_id, row.source_etag, 1, parts).parts == {
        1: ("etag-1", None)
    }


def test_a_journal_whose_first_write_meets_an_outage_waits_it_out(route, seeder_ledger, stack):
    # A worker's upload journal has a connection of its own, opened at its first write: in CI's chaos
    # run that came during the MariaDB restart, was refused at once as if the ledger had never been
    # reached, and the row failed as an internal error. The worker's connection had reached it.
    make_rows(seeder_ledger, route, 1)
    proxy = SqlProxy("127.0.0.1", stack.db.port).start()
    work = WorkQueue(through(proxy, route, "worker", "m3_worker"))
    (row,) = work.claim_and_finish("w", 1, 60)[0]
    journal = UploadJournal.open(work.db, "w")
    proxy.stop()  # the ledger is gone; it comes back where it was a moment later
    back = SqlProxy("127.0.0.1", stack.db.port)
    timer = threading.Timer(1.5, back.start, kwargs={"port": proxy.port})
    timer.start()
    try:
        journal.started(row, Upload("u-2", row.source_etag, 5 * 1024 * 1024))
    finally:
        timer.join()
        back.stop()
    assert back.connections >= 1  # written through the proxy that came back
    assert admin_exec(route, "SELECT upload_id FROM movers3_objects") == (("u-2",),)

    # A ledger this process never reached is still told at once, not waited for.
    never = Database(dataclasses.replace(work.db.url, port=free_port()), reconnect_seconds=60)
    asked = time.monotonic()
    with pytest.raises(LedgerUnavailable):
        never.transaction(lambda tx: tx.query("account_who"))
    assert time.monotonic() - asked < 10  # not the 60 s of an outage waited out
