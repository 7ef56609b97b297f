"""Parallel seeding against a real SeaweedFS: any number of seeders, threads and split parts must give
exactly the ledger rows a plain listing gives, with hostile keys, flat and nested layouts, and more
than 1000 keys per level so that pagination and splitting are exercised."""

import dataclasses
import re
import signal
import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from movers3.ledger.db import Database, utc_text
from movers3.ledger.reads import Reads
from movers3.ledger.seeds import KnownRow, PageWrite, PartSpec, Seeds
from movers3.ledger.work import WorkQueue
from movers3.seed.judge import Listed, newer
from movers3.seed.seeder import Seeder
from movers3.settings import load
from movers3.transfer import s3
from tests.support.helpers import admin_exec, json_events, make_rows, run_cli, start_cli, wait_for
from tests.support.keys import HOSTILE, LONG
from tests.support.services import DATABASE, SeaweedFS

pytestmark = pytest.mark.integration

# Every column a seed writes; ids and timestamps differ from run to run by nature.
COLUMNS = (
    "old_bucket",
    "old_key",
    "new_bucket",
    "new_key",
    "size",
    "source_etag",
    "storage_class",
    "state",
    "attempts",
    "lease_owner",
    "last_error",
    "dest_etag",
    "source_version_id",
)
# Names whose order differs between S3 (UTF-8 bytes: 'x-y' < 'x/') and a file-tree server (SeaweedFS
# lists the folder 'x/' where 'x' sorts): a key range across folders would lose some of them.
ORDER_TRAPS = ["x/a", "x/b/c", "x-y", "x.z", "x!", "x-d/1", "x-d/2", "x0", "x /s", "x~"]


def ledger_rows(route) -> list[tuple]:
    with route.stack.db.admin(DATABASE) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT {', '.join(COLUMNS)} FROM movers3_objects ORDER BY old_key")
        return [tuple(r) for r in cur.fetchall()]


def plain_listing_rows(route) -> list[tuple]:
    """The rows a seed must produce, from a plain paginated listing (no delimiter, no split)."""
    client = route.stack.s3.client()
    rows = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=route.old_bucket, Prefix=route.old_folder):
        for obj in page.get("Contents", []):
            rest = obj["Key"][len(route.old_folder) :]
            rows.append(
                (
                    route.old_bucket,
                    obj["Key"].encode(),
                    route.new_bucket,
                    route.new(rest).encode(),
                    obj["Size"],
                    obj["ETag"].strip('"'),
                    obj.get("StorageClass"),
                    "pending",
                    0,
                    None,
                    None,
                    None,
                    None,
                )
            )
    return sorted(rows, key=lambda r: r[1])


def nested_layout():
    keys = [f"flat/{i:04x}.png" for i in range(1100)]  # one level past a page, split by hex digit
    keys += [f"IMG_{i:05d}.jpg" for i in range(1300)]  # root level: every name shares a long stem
    keys += [f"users/{u}/avatar-{j}.png" for u in range(40) for j in range(3)]
    keys += [f"deep/a/b/c/d/{i}" for i in range(5)]
    keys += HOSTILE + [LONG] + ORDER_TRAPS
    return keys


def seeders(route, count, threads, identity="seeder"):
    settings = load(route.env(identity, "m3_seeder"))
    return [
        Seeder(Seeds(Database(settings.mysql)), s3.client(settings.source, pool_size=32), settings, threads=threads)
        for _ in range(count)
    ]


def run_concurrently(all_seeders):
    results, errors = [], []

    def go(seeder):
        try:
            results.append(seeder.run())
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=go, args=(s,)) for s in all_seeders]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors, errors
    return results


def test_three_seeders_of_four_threads_give_exactly_the_plain_listings_rows(route):
    keys = nested_layout()
    route.put_many((k, k.encode()[:50]) for k in keys)
    expected = plain_listing_rows(route)
    assert len(expected) == len(set(keys))
    results = run_concurrently(seeders(route, 3, 4))
    assert ledger_rows(route) == expected
    assert sum(r.added for r in results) == len(expected)
    assert sum(r.parts for r in results) > 10  # folders and split levels really were parts
    assert sum(r.round_finished for r in results) == 1  # exactly one seeder ended the round
    with route.stack.db.admin(DATABASE) as conn, conn.cursor() as cur:
        cur.execute("SELECT state, listed, added, vanished FROM movers3_seeds")
        assert cur.fetchall() == (("finished", len(expected), len(expected), 0),)


def test_a_flat_level_is_split_in_ranges_and_listed_exactly(route):
    keys = [f"{i:05x}" for i in range(2600)] + ["trailing ", "trailing", "Case", "case", "é", "😀"]
    route.put_many((k, b"x") for k in keys)
    expected = plain_listing_rows(route)
    (result,) = run_concurrently(seeders(route, 1, 4))
    assert ledger_rows(route) == expected
    assert result.parts >= 3  # the level was cut into ranges


def test_a_whole_bucket_is_seeded_from_its_root_level_down_by_parallel_seeders(route):
    """OLD_PREFIX=/ and NEW_PREFIX=/ on a bucket of the test's own (the shared ones hold other tests'
    folders), made and listed with the admin S3 identity, the seeder identity being scoped to the shared
    bucket: the files of the root level are rows, the flat root level is split into ranges, and every
    key keeps its whole path."""
    bucket = f"m3-root-{uuid.uuid4().hex[:12]}"
    SeaweedFS._create_bucket(route.stack.s3.client("admin"), bucket)
    whole = dataclasses.replace(route, old_bucket=bucket, old_prefix="/", new_prefix="/")
    keys = nested_layout()
    whole.put_many((k, k.encode()[:50]) for k in keys)
    expected = plain_listing_rows(whole)
    assert len(expected) == len(set(keys)) and all(row[1] == row[3] for row in expected)
    assert {b"IMG_00000.jpg", b"x!", b"flat/0000.png"} <= {row[1] for row in expected}
    results = run_concurrently(seeders(whole, 2, 4, identity="admin"))
    assert ledger_rows(route) == expected
    assert sum(r.parts for r in results) > 10  # folders and split ranges of the root level were parts
    assert admin_exec(
        route, "SELECT old_bucket, old_prefix, new_prefix, state, listed, vanished FROM movers3_seeds"
    ) == ((bucket, b"", b"", "finished", len(expected), 0),)


def test_a_catch_up_round_adds_new_requeues_changed_and_counts_vanished(route, seeder_ledger):
    for i in range(30):
        route.put(f"d{i % 3}/{i}.png", body=b"v1")
    run_concurrently(seeders(route, 1, 2))
    with route.stack.db.admin(DATABASE) as conn, conn.cursor() as cur:
        cur.execute("UPDATE movers3_objects SET state = 'done', dest_etag = 'e', done_at = NOW(6) WHERE id % 2 = 0")
        cur.execute(
            "UPDATE movers3_objects SET state = 'in_progress', lease_owner = 'w1', claim_token = 7, "
            "lease_expires_at = NOW() + INTERVAL 1 HOUR WHERE id % 2 = 1"
        )
    route.put("d0/0.png", body=b"v2 longer")  # changed while done
    route.put("d1/1.png", body=b"v2 longer")  # changed while a worker copies it
    route.put("d2/new.png", body=b"new")
    route.stack.s3.client().delete_object(Bucket=route.old_bucket, Key=route.old("d2/2.png"))
    (again,) = run_concurrently(seeders(route, 1, 2))
    assert (again.listed, again.added, again.changed, again.round) == (30, 1, 2, 2)
    rows = {r["old_key"].decode()[len(route.old_prefix) + 1 :]: r for r in route.rows()}
    for name in ("d0/0.png", "d1/1.png"):
        row = rows[name]
        assert (row["state"], row["size"], row["lease_owner"], row["attempts"]) == ("pending", 9, None, 0)
        assert row["dest_etag"] is None and "catch-up" in row["last_error"]
    assert rows["d2/new.png"]["state"] == "pending"
    assert rows["d2/2.png"]["state"] in ("done", "in_progress")  # vanished: left as it was
    # The worker that was copying the old version finds its lease gone: its result is dropped.
    ledger = WorkQueue(Database(load(route.env("worker", "m3_worker")).mysql))
    from movers3.ledger.work import Outcome

    assert ledger.finish("w1", [Outcome(rows["d1/1.png"]["id"], "done", 1, dest_etag="old", token=7)]) == 0
    status = Reads(ledger.db).counts()
    assert status.seeds[0]["vanished"] == 1 and status.seeds[0]["changed"] == 2


def test_the_requeue_itself_never_moves_a_row_back(route, seeder_ledger):
    """The guard of `rows_requeue_if_changed` settles every case as `judge.newer` does: the seeder
    judged the page before its write, and a worker may have recorded a newer version in between."""
    copied = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
    second = timedelta(seconds=1)
    # (listed LastModified, row's LastModified, row's source deleted): the cases of tests/unit/test_catch_up.py
    cases = [
        (copied + second, copied, False),
        (copied + second, copied, True),
        (copied - second, copied, False),
        (copied - second, copied, True),
        (copied, copied, False),
        (copied, copied, True),
        (None, copied, True),
        (copied - second, None, True),
    ]
    make_rows(seeder_ledger, route, len(cases))
    for i, (_, recorded, deleted) in enumerate(cases):
        admin_exec(
            route,
            "UPDATE movers3_objects SET state = 'done', dest_etag = 'd', done_at = NOW(6), source_last_modified = %s,"
            " source_deleted_at = IF(%s, NOW(6), NULL) WHERE old_key = %s",
            (utc_text(recorded), deleted, route.old(f"{i:05d}").encode()),
        )
    seed = seeder_ledger.seed_round(route.old_bucket, route.old_prefix, route.new_bucket, route.new_prefix, input=None)
    seeder_ledger.seed_plan(seed, [PartSpec(prefix=route.old_prefix + "/")])
    part = seeder_ledger.part_claim(seed, "guard", 60)
    listed = [Listed(route.old(f"{i:05d}"), i, f"v2-{i}", last_modified=at) for i, (at, _, _) in enumerate(cases)]
    changes = [
        {"key": e.key.encode().hex(), "size": e.size, "etag": e.etag, "last_modified": utc_text(e.last_modified)}
        for e in listed
    ]
    seeder_ledger.seed_page(part, 60, PageWrite(route.old_bucket, [], changes, [], None, 0, len(cases), 0), seed)
    found = {
        bytes(k).decode(): (state, etag, modified)
        for k, state, etag, modified in admin_exec(
            route, "SELECT old_key, state, source_etag, source_last_modified FROM movers3_objects"
        )
    }
    for i, (entry, (listed_at, recorded, deleted)) in enumerate(zip(listed, cases, strict=True)):
        row = KnownRow(b"", i, f"{i:032x}", "done", recorded, deleted)
        if newer(entry, row):
            # the new version, dated when the listing gave a date, else still the last date known
            expected = ("pending", entry.etag, (listed_at or recorded).replace(tzinfo=None))
        else:
            expected = ("done", f"{i:032x}", recorded.replace(tzinfo=None))
        assert found[entry.key] == expected, (i, cases[i])
    assert sum(state == "pending" for state, _, _ in found.values()) == 5  # the newer, the tie, the undated


def stopped(pid: int) -> bool:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(") ", 1)[1].startswith("T")


def test_two_seed_processes_share_the_parts(route, seeder_ledger, tmp_path):
    """Which process claims which part is a race, and one process can list everything before the other
    has started. So the share is made by construction: the first process is held (SIGSTOP) once it has
    listed the parts it may take, the second takes the others, then the first resumes and ends."""
    keys = [f"p{i % 7}/{i:04d}" for i in range(1500)]
    route.put_many((k, b"x") for k in keys)
    folder = route.old_prefix + "/"
    # The round is planned as the first seeder plans it (the root folder), with its seven folders
    # already added as parts (the root's listing adds them again, which the ledger ignores), so that
    # three of them can be held back from the first process: leased to nobody that runs, for an hour.
    seed = seeder_ledger.seed_round(route.old_bucket, route.old_prefix, route.new_bucket, route.new_prefix, input=None)
    seeder_ledger.seed_plan(seed, [PartSpec(prefix=folder)] + [PartSpec(prefix=f"{folder}p{i}/") for i in range(7)])
    later = tuple(f"{folder}p{i}/".encode() for i in (4, 5, 6))
    admin_exec(
        route,
        "UPDATE movers3_seed_parts SET state = 'listing', owner = 'held-by-the-test', "
        "lease_expires_at = NOW(6) + INTERVAL 1 HOUR WHERE prefix IN %s",
        (later,),
    )
    env = route.env("seeder", "m3_seeder", SEED_THREADS="2")
    logs = [tmp_path / "first.log", tmp_path / "second.log"]
    first = start_cli("seed", env=env, log=logs[0])
    second = None
    try:

        def first_listed_its_share():
            assert first.poll() is None, logs[0].read_text()[-3000:]  # it waits for the held parts
            return admin_exec(route, "SELECT COUNT(*) FROM movers3_seed_parts WHERE state = 'finished'")[0][0] == 5

        wait_for(first_listed_its_share, timeout=120, what="the first seeder to finish the root and p0-p3")
        # Stopped while it only polls for a part: it holds no part and no lock (READ COMMITTED, nothing
        # is claimable), so the second process finds the released parts free and nothing in its way.
        first.send_signal(signal.SIGSTOP)
        wait_for(lambda: stopped(first.pid), timeout=10, what="the first seeder to be stopped")
        admin_exec(
            route,
            "UPDATE movers3_seed_parts SET state = 'pending', owner = NULL, lease_expires_at = NULL "
            "WHERE owner = 'held-by-the-test'",
        )
        second = start_cli("seed", env=env, log=logs[1])
        assert second.wait(120) == 0, logs[1].read_text()[-3000:]
        first.send_signal(signal.SIGCONT)  # it finds the round finished and ends
        assert first.wait(60) == 0, logs[0].read_text()[-3000:]
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:  # the test failed: SIGKILL ends a stopped process too
                proc.kill()
                proc.wait(10)

    def share(log):
        text = log.read_text()
        # The log holds the JSON events (stderr) and, last, the one summary line the command prints (stdout).
        *events, printed = text.rstrip("\n").split("\n")
        assert printed.startswith("seeded "), printed
        (summary,) = [e for e in json_events("\n".join(events) + "\n") if e.get("event") == "seed_finished"]
        listed = int(re.search(r"seeded .*: ([\d,]+) listed", text).group(1).replace(",", ""))
        return summary["parts"], summary["listed"], listed

    in_first = sum(1 for k in keys if int(k[1]) < 4)
    # Each process listed its share, and says so: the parts it claimed, the keys it listed.
    assert share(logs[0]) == (5, in_first, in_first)  # the root, p0-p3
    assert share(logs[1]) == (3, len(keys) - in_first, len(keys) - in_first)  # p4-p6
    assert ledger_rows(route) == plain_listing_rows(route)
    out = run_cli("status", "--json", env=route.env("worker", "m3_worker")).stdout
    assert '"pending": 1500' in out
    with route.stack.db.admin(DATABASE) as conn, conn.cursor() as cur:
        cur.execute("SELECT state, listed, added FROM movers3_seeds")
        assert cur.fetchall() == (("finished", 1500, 1500),)


def test_a_killed_seeders_part_is_taken_over_after_its_lease(route, seeder_ledger):
    route.put_many((f"{i:04d}", b"x") for i in range(1200))
    # 5 s is for the dead seeder's lease, which the test waits out; the live seeder is alone, so its own
    # lease running out between two pages on a loaded machine takes nothing from it.
    settings = load(route.env("seeder", "m3_seeder", LEASE_SECONDS="5"))
    first = Seeder(seeder_ledger, s3.client(settings.source), settings, threads=1)
    seed = seeder_ledger.seed_round(
        settings.old_bucket, settings.old_prefix, settings.new_bucket, settings.new_prefix, input=None
    )
    seeder_ledger.seed_plan(seed, first._plan())
    # A seeder that claimed the only part and died without a word (SIGKILL): its lease runs out.
    assert seeder_ledger.part_claim(seed, "dead-seeder", 5) is not None
    result = Seeder(Seeds(Database(settings.mysql)), s3.client(settings.source), settings, threads=1).run()
    assert result.round_finished and result.listed == 1200
    assert len(ledger_rows(route)) == 1200
