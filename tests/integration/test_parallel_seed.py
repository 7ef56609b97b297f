"""Parallel seeding against a real SeaweedFS: any number of seeders, threads and split parts must give
exactly the ledger rows a plain listing gives, with hostile keys, flat and nested layouts, and more
than 1000 keys per level so that pagination and splitting are exercised."""

import threading

import pytest

from movers3.ledger.reads import Reads
from movers3.ledger.seeds import Seeds
from movers3.ledger.work import WorkQueue
from movers3.transfer import s3
from movers3.ledger.db import Database
from movers3.seed.seeder import Seeder
from movers3.settings import load
from tests.support.helpers import run_cli
from tests.support.keys import HOSTILE, LONG
from tests.support.services import DATABASE

pytestmark = pytest.mark.integration

# Every column a seed writes; ids and timestamps differ from run to run by nature.
COLUMNS = ("old_bucket", "old_key", "new_bucket", "new_key", "size", "source_etag", "storage_class", "state",
           "attempts", "lease_owner", "last_error", "dest_etag", "source_version_id")
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
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=route.old_bucket,
                                                                 Prefix=route.old_prefix + "/"):
        for obj in page.get("Contents", []):
            rest = obj["Key"][len(route.old_prefix) + 1:]
            rows.append((route.old_bucket, obj["Key"].encode(), route.new_bucket, route.new(rest).encode(),
                         obj["Size"], obj["ETag"].strip('"'), obj.get("StorageClass"), "pending", 0, None, None,
                         None, None))
    return sorted(rows, key=lambda r: r[1])


def nested_layout():
    keys = [f"flat/{i:04x}.png" for i in range(1100)]  # one level past a page, split by hex digit
    keys += [f"IMG_{i:05d}.jpg" for i in range(1300)]  # root level: every name shares a long stem
    keys += [f"users/{u}/avatar-{j}.png" for u in range(40) for j in range(3)]
    keys += [f"deep/a/b/c/d/{i}" for i in range(5)]
    keys += HOSTILE + [LONG] + ORDER_TRAPS
    return keys


def seeders(route, count, threads):
    settings = load(route.env("seeder", "m3_seeder"))
    return [Seeder(Seeds(Database(settings.mysql)), s3.client(settings.source, pool_size=32), settings,
                   threads=threads) for _ in range(count)]


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


def test_a_catch_up_round_adds_new_requeues_changed_and_counts_vanished(route, seeder_ledger):
    for i in range(30):
        route.put(f"d{i % 3}/{i}.png", body=b"v1")
    run_concurrently(seeders(route, 1, 2))
    with route.stack.db.admin(DATABASE) as conn, conn.cursor() as cur:
        cur.execute("UPDATE movers3_objects SET state = 'done', dest_etag = 'e', done_at = NOW(6) WHERE id % 2 = 0")
        cur.execute("UPDATE movers3_objects SET state = 'in_progress', lease_owner = 'w1', "
                    "lease_expires_at = NOW() + INTERVAL 1 HOUR WHERE id % 2 = 1")
    route.put("d0/0.png", body=b"v2 longer")  # changed while done
    route.put("d1/1.png", body=b"v2 longer")  # changed while a worker copies it
    route.put("d2/new.png", body=b"new")
    route.stack.s3.client().delete_object(Bucket=route.old_bucket, Key=route.old("d2/2.png"))
    (again,) = run_concurrently(seeders(route, 1, 2))
    assert (again.listed, again.added, again.changed, again.round) == (30, 1, 2, 2)
    rows = {r["old_key"].decode()[len(route.old_prefix) + 1:]: r for r in route.rows()}
    for name in ("d0/0.png", "d1/1.png"):
        row = rows[name]
        assert (row["state"], row["size"], row["lease_owner"], row["attempts"]) == ("pending", 9, None, 0)
        assert row["dest_etag"] is None and "catch-up" in row["last_error"]
    assert rows["d2/new.png"]["state"] == "pending"
    assert rows["d2/2.png"]["state"] in ("done", "in_progress")  # vanished: left as it was
    # The worker that was copying the old version finds its lease gone: its result is dropped.
    ledger = WorkQueue(Database(load(route.env("worker", "m3_worker")).mysql))
    from movers3.ledger.work import Outcome
    assert ledger.finish("w1", [Outcome(rows["d1/1.png"]["id"], "done", 1, dest_etag="old")]) == 0
    status = Reads(ledger.db).counts()
    assert status.seeds[0]["vanished"] == 1 and status.seeds[0]["changed"] == 2


def test_two_seed_processes_share_the_parts(route, tmp_path):
    route.put_many((f"p{i % 7}/{i:04d}", b"x") for i in range(1500))
    env = route.env("seeder", "m3_seeder", SEED_THREADS="2")
    from tests.support.helpers import start_cli
    procs = [start_cli("seed", env=env, log=tmp_path / f"seed{i}.log") for i in range(2)]
    for p in procs:
        assert p.wait(120) == 0, (tmp_path / "seed0.log").read_text()[-2000:]
    assert ledger_rows(route) == plain_listing_rows(route)
    out = run_cli("status", "--json", env=route.env("worker", "m3_worker")).stdout
    assert '"pending": 1500' in out


def test_a_killed_seeders_part_is_taken_over_after_its_lease(route, seeder_ledger):
    route.put_many((f"{i:04d}", b"x") for i in range(1200))
    settings = load(route.env("seeder", "m3_seeder", LEASE_SECONDS="5"))
    first = Seeder(seeder_ledger, s3.client(settings.source), settings, threads=1)
    seed = seeder_ledger.seed_round(settings.old_bucket, settings.old_prefix, settings.new_bucket,
                                    settings.new_prefix, input=None)
    seeder_ledger.seed_plan(seed, first._plan())
    # A seeder that claimed the only part and died without a word (SIGKILL): its lease runs out.
    assert seeder_ledger.part_claim(seed, "dead-seeder", 5) is not None
    result = Seeder(Seeds(Database(settings.mysql)), s3.client(settings.source), settings, threads=1).run()
    assert result.round_finished and result.listed == 1200
    assert len(ledger_rows(route)) == 1200
