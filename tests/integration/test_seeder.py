"""Seeding a real SeaweedFS listing into a real MariaDB, with the seeder's least privileges."""

import pytest

from movers3.seed.seeder import Seeder
from movers3.settings import load
from movers3.transfer import s3
from tests.support.keys import HOSTILE, LONG

pytestmark = pytest.mark.integration


def seeder_for(route, **extra):
    settings = load(route.env("seeder", "m3_seeder", **extra))
    return settings, lambda ledger: Seeder(ledger, s3.client(settings.source), settings)


def test_only_the_folder_is_seeded_and_routes_are_mapped(route, seeder_ledger):
    route.put("a/b.png")
    route.put("top.png")
    client = route.stack.s3.client()
    client.put_object(Bucket=route.old_bucket, Key=route.old_prefix + "-old/x", Body=b"no")
    client.put_object(Bucket=route.old_bucket, Key=route.old_prefix + "X.png", Body=b"no")
    _, make = seeder_for(route)
    stats = make(seeder_ledger).run()
    assert (stats.listed, stats.added) == (2, 2)
    assert sorted((r["old_key"], r["new_key"]) for r in route.rows()) == sorted(
        [
            (route.old("a/b.png").encode(), route.new("a/b.png").encode()),
            (route.old("top.png").encode(), route.new("top.png").encode()),
        ]
    )


def test_keys_that_differ_only_in_case_spaces_or_normalisation_are_distinct_rows(route, seeder_ledger):
    keys = HOSTILE + [LONG]
    for k in keys:
        route.put(k, body=k.encode())
    _, make = seeder_for(route)
    make(seeder_ledger).run()
    stored = {r["old_key"] for r in route.rows()}
    assert stored == {route.old(k).encode("utf-8") for k in keys}
    assert len(stored) == len(keys)


def test_reseed_adds_only_new_keys_and_leaves_rows_alone(route, seeder_ledger):
    for i in range(5):
        route.put(f"{i}.png")
    _, make = seeder_for(route)
    assert make(seeder_ledger).run().added == 5
    with route.stack.db.admin("sketch") as conn, conn.cursor() as cur:
        cur.execute("UPDATE movers3_objects SET state = 'done'")
    again = make(seeder_ledger).run()
    assert (again.listed, again.added) == (5, 0)
    route.put("new.png")
    third = make(seeder_ledger).run()
    assert (third.listed, third.added) == (6, 1)
    assert route.states() == {"done": 5, "pending": 1}


class Crash(Exception):
    pass


def test_a_crashed_seed_resumes_after_the_last_committed_page(route, seeder_ledger, monkeypatch):
    route.put_many((f"{i:05d}", b"x") for i in range(2500))
    settings, _ = seeder_for(route)
    seeder = Seeder(seeder_ledger, s3.client(settings.source), settings, threads=1)
    real = seeder.client.list_objects_v2

    def dying_list(**params):
        # The first page request once two pages are committed dies (split probes ask for one key).
        if params["MaxKeys"] > 1 and len(route.rows()) >= 2000:
            raise Crash()
        return real(**params)

    monkeypatch.setattr(seeder.client, "list_objects_v2", dying_list)
    with pytest.raises(Crash):
        seeder.run()
    assert len(route.rows()) == 2000
    # The dying seeder handed its part back at once: a restart needs no lease to expire.
    resumed = Seeder(seeder_ledger, s3.client(settings.source), settings, threads=2).run()
    assert resumed.listed == 500 and resumed.added == 500 and resumed.round_finished
    keys = [r["old_key"] for r in route.rows()]
    assert len(keys) == len(set(keys)) == 2500
