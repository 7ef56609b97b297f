"""The cut-over commands end to end, as separate processes with their least-privilege accounts:
`plan` (a dry run that writes nothing), `delete-source` (verified copies only, version-aware, bounded
by --max-deletes) and re-pointing the application's records as rows finish."""

import hashlib
import json
import time
import uuid

import pytest

from movers3 import routes
from movers3.ledger.db import Database
from movers3.ledger.repoint import parse
from movers3.ledger.work import Outcome, WorkQueue
from movers3.settings import load
from tests.support.helpers import Route, make_rows, run_cli
from tests.support.keys import HOSTILE, LONG
from tests.support.services import DATABASE

pytestmark = pytest.mark.acceptance


def snapshot(route) -> dict:
    with route.stack.db.admin(DATABASE) as conn, conn.cursor() as cur:
        out = {}
        for table in ("movers3_objects", "movers3_seeds", "movers3_seed_parts", "movers3_counts"):
            cur.execute(f"SELECT * FROM {table} ORDER BY 1, 2")
            out[table] = cur.fetchall()
        return out


def admin(route, sql, params=None):
    with route.stack.db.admin(DATABASE) as conn, conn.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall()


def source_keys(route) -> set[str]:
    client = route.stack.s3.client()
    found = set()
    for page in client.get_paginator("list_objects_v2").paginate(
        Bucket=route.old_bucket, Prefix=route.old_prefix + "/"
    ):
        found |= {o["Key"] for o in page.get("Contents", [])}
    return found


# -- plan ------------------------------------------------------------------------------------------


def test_plan_reports_what_a_seed_would_do_and_writes_nothing(route, stack):
    seeder_env = route.env("seeder", "m3_seeder")
    for name in ("a.png", "b.png", "sub/c.png", "sub/d.png", "gone.png"):
        route.put(name, body=b"12345")
    run_cli("seed", env=seeder_env)
    admin(
        route,
        "UPDATE movers3_objects SET state = 'done', done_at = NOW(6), dest_etag = 'x' WHERE old_key LIKE %s",
        (route.old("sub/%").encode(),),
    )
    route.put("a.png", body=b"changed!!")  # changed since seeded
    route.stack.s3.client().delete_object(Bucket=route.old_bucket, Key=route.old("gone.png"))  # vanished
    route.put("new.png", body=b"1")
    for cls in ("GLACIER", "DEEP_ARCHIVE", "GLACIER_IR", "INTELLIGENT_TIERING"):
        route.put(f"cold/{cls}", body=b"x" * 10, StorageClass=cls)
    # Another source seeded into the same new folder first: its new key 'clash.png' is taken.
    other = Route(stack, old_prefix=route.old_prefix.replace("images", "other"), new_prefix=route.new_prefix)
    other.put("clash.png")
    run_cli("seed", env=other.env("seeder", "m3_seeder"))
    route.put("clash.png")
    before = snapshot(route)

    result = run_cli("plan", "--json", env=seeder_env, check=False)
    assert result.returncode == 1, result.stderr  # a key would be skipped: the operator must decide
    plan = json.loads(result.stdout)
    assert snapshot(route) == before  # nothing written
    assert plan["listed"]["objects"] == 10
    assert plan["new"] == {"objects": 5, "bytes": 1 + 40}  # new.png and the 4 cold ones (clash.png is skipped)
    assert plan["changed"] == {"objects": 1, "bytes": 9}
    assert plan["unchanged_by_state"] == {"done": 2, "pending": 1}
    assert plan["by_storage_class"]["GLACIER"] == {"objects": 1, "bytes": 10}
    assert plan["needs_restore"] == {"objects": 2, "bytes": 20}  # GLACIER and DEEP_ARCHIVE, not GLACIER_IR
    assert plan["maybe_in_archive_access_tier"]["objects"] == 1
    assert plan["destination_taken"]["objects"] == 1 and "clash.png" in plan["samples"]["destination_taken"][0]
    assert plan["vanished"] == 1
    assert plan["blocking"] is True


def test_plan_without_a_ledger_and_a_key_too_long_for_the_destination(stack):
    tag = "t" + uuid.uuid4().hex[:10]
    route = Route(stack, old_prefix=f"{tag}/i", new_prefix=f"{tag}/a-much-longer-destination-folder")
    long_key = "/".join(["k" * 200] * 4) + "/" + "z" * (1024 - len(route.old("")) - 805 - 5)
    route.put(long_key)
    route.put("fine.png")
    assert len(route.old(long_key).encode()) <= 1024 < len(route.new(long_key).encode())
    plan = json.loads(run_cli("plan", "--json", env=route.env("seeder", "m3_seeder"), check=False).stdout)
    assert plan["too_long_for_destination"]["objects"] == 1 and plan["new"]["objects"] == 1


# -- delete-source ---------------------------------------------------------------------------------


def copy_all(route, env, names):
    for name in names:
        route.put(name, body=name.encode())
    run_cli("seed", env=route.env("seeder", "m3_seeder"))
    run_cli("worker", "--exit-when-done", env=env, timeout=180)
    assert route.states() == {"done": len(names)}


def test_delete_source_removes_verified_copies_only_and_stops_at_the_guard(route, env):
    names = [f"{i}.png" for i in range(6)]
    copy_all(route, env, names)
    route.put("0.png", body=b"changed after the copy")
    route.stack.s3.client().delete_object(Bucket=route.new_bucket, Key=route.new("1.png"))
    deleter = route.env("deleter", "m3_deleter")

    dry = run_cli("delete-source", "--max-deletes", "100", "--dry-run", env=deleter, check=False)
    assert dry.returncode == 1 and "would delete 4 " in dry.stdout, dry.stdout + dry.stderr
    assert len(source_keys(route)) == 6

    first = run_cli("delete-source", "--max-deletes", "3", env=deleter, check=False)
    assert "deleted 3 " in first.stdout and "--max-deletes 3" in first.stdout, first.stdout
    assert len(source_keys(route)) == 3
    second = run_cli("delete-source", "--max-deletes", "100", env=deleter, check=False)
    assert "deleted 1 " in second.stdout, second.stdout
    assert "1 destination missing" in second.stdout and "1 source changed after the copy" in second.stdout
    assert source_keys(route) == {route.old("0.png"), route.old("1.png")}
    marked = admin(route, "SELECT old_key FROM movers3_objects WHERE source_deleted_at IS NOT NULL")
    assert {routes.from_db(k) for (k,) in marked} == {route.old(f"{i}.png") for i in range(2, 6)}
    assert "deleted 0 " in run_cli("delete-source", "--max-deletes", "100", env=deleter, check=False).stdout


def versioned_route(stack) -> Route:
    """A route whose source bucket keeps versions."""
    bucket = "legacy-versioned"
    admin_s3 = stack.s3.client()
    try:
        admin_s3.create_bucket(Bucket=bucket)
    except admin_s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    admin_s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    tag = "t" + uuid.uuid4().hex[:10]
    return Route(stack, old_prefix=f"{tag}/images", new_prefix=f"{tag}/avatar", old_bucket=bucket)


def test_delete_source_deletes_exactly_the_version_it_copied(stack):
    route = versioned_route(stack)
    admin_s3, bucket = stack.s3.client(), route.old_bucket
    with stack.db.admin(DATABASE) as conn, conn.cursor() as cur:
        cur.execute("DELETE FROM movers3_objects")
    older = route.put("kept.png", body=b"an older version")
    copied = route.put("kept.png", body=b"the version copied")
    route.put("plain.png", body=b"one version")
    env = route.env("admin", "m3_worker")
    run_cli("seed", env=route.env("admin", "m3_seeder"))
    run_cli("worker", "--exit-when-done", env=env, timeout=180)
    versions = {v["VersionId"]: v for v in admin_s3.list_object_versions(Bucket=bucket, Prefix=copied)["Versions"]}
    current = next(v for v in versions.values() if v["IsLatest"])["VersionId"]
    del older

    out = run_cli("delete-source", "--max-deletes", "10", env=route.env("admin", "m3_deleter")).stdout
    assert "deleted 2 " in out
    left = admin_s3.list_object_versions(Bucket=bucket, Prefix=route.old_prefix + "/").get("Versions", [])
    # The copied version is gone for good; the older one is untouched (docs/operations.md: a lifecycle rule on
    # noncurrent versions removes those) and is now the key's current version.
    assert current not in {v["VersionId"] for v in left} and len(left) == 1 and left[0]["Key"] == copied
    recorded = admin(route, "SELECT source_version_id FROM movers3_objects WHERE old_key = %s", (copied.encode(),))
    assert recorded == ((current,),)


# -- re-pointing -----------------------------------------------------------------------------------


@pytest.fixture
def app_table(route):
    """The application's table, in the ledger's database, with the case-insensitive PAD SPACE
    collation real applications use; the worker may UPDATE it."""
    table = "app_" + route.old_prefix.split("/")[0]
    admin(
        route,
        f"CREATE TABLE {table} (id INT AUTO_INCREMENT PRIMARY KEY, avatar VARCHAR(1100) CHARACTER SET "
        f"utf8mb4 COLLATE utf8mb4_unicode_ci NOT NULL, KEY avatar (avatar(191)))",
    )
    admin(route, f"GRANT SELECT, UPDATE ON `{DATABASE}`.`{table}` TO 'm3_worker'@'%'")
    yield table
    admin(route, f"DROP TABLE {table}")


def exact_update(table: str) -> str:
    # The first comparison uses the index; the second makes it exact (case, trailing spaces, NFC/NFD).
    return (
        f"UPDATE {table} SET avatar = %(new_key)s\n"
        f"WHERE avatar = %(old_key)s AND CAST(avatar AS BINARY) = CAST(%(old_key)s AS BINARY);\n"
    )


def test_finish_repoints_exactly_the_rows_the_worker_still_owned(route, seeder_ledger, app_table):

    make_rows(seeder_ledger, route, 3)
    for i in range(3):
        admin(route, f"INSERT INTO {app_table} (avatar) VALUES (%s)", (route.old(f"{i:05d}"),))
    admin(route, f"INSERT INTO {app_table} (avatar) VALUES (%s)", (route.old("00000 "),))  # a PAD SPACE twin
    ledger = WorkQueue(Database(load(route.env("worker", "m3_worker")).mysql), repoint=parse(exact_update(app_table)))
    a, b, c = ledger.claim_and_finish("w1", 3, 60)[0]
    admin(route, "UPDATE movers3_objects SET lease_owner = 'w2' WHERE id = %s", (b.id,))
    assert (
        ledger.finish(
            "w1",
            [Outcome(r.id, "done", 1, dest_etag="e", token=r.token) for r in (a, b)]
            + [Outcome(c.id, "failed", 1, error="x", token=c.token)],
        )
        == 2
    )
    avatars = [r[0] for r in admin(route, f"SELECT avatar FROM {app_table} ORDER BY id")]
    assert avatars == [route.new("00000"), route.old("00001"), route.old("00002"), route.old("00000 ")]


def test_a_worker_repoints_hostile_keys_exactly_and_refuses_a_bad_statement(route, env, app_table, tmp_path):
    keys = HOSTILE + [LONG]
    for k in keys:
        route.put(k, body=b"x")
    decoys = [route.old("CASE.PNG"), route.old("trailing  "), route.old("other.png")]
    for value in [route.old(k) for k in keys] + decoys:
        admin(route, f"INSERT INTO {app_table} (avatar) VALUES (%s)", (value,))
    bad = tmp_path / "bad.sql"
    bad.write_text(f"UPDATE {app_table} SET avatr = %(new_key)s WHERE avatar = %(old_key)s")
    refused = run_cli("worker", "--exit-when-done", env={**env, "REPOINT_SQL_FILE": str(bad)}, check=False)
    assert refused.returncode == 2 and "REPOINT_SQL_FILE" in refused.stderr and "avatr" in refused.stderr
    assert refused.stderr.count("\n") == 1
    good = tmp_path / "repoint.sql"
    good.write_text(exact_update(app_table))
    run_cli("seed", env=route.env("seeder", "m3_seeder"))
    run_cli("worker", "--exit-when-done", env={**env, "REPOINT_SQL_FILE": str(good)}, timeout=180)
    assert route.states() == {"done": len(keys)}
    avatars = [r[0] for r in admin(route, f"SELECT avatar FROM {app_table} ORDER BY id")]
    assert avatars == [route.new(k) for k in keys] + decoys


def test_a_catch_up_after_delete_source_never_copies_the_previous_version_back(stack):
    """On a versioned source: `delete-source` deletes the copied (current) version and S3
    makes the previous one current again, older than the copy: the next catch-up leaves the row and
    the destination alone. `w.png` was copied after a SourceChanged: the worker recorded the date of
    the version it found, so the version between the one listed and the one copied is older too. A
    version written after the copy is still caught up."""
    route = versioned_route(stack)
    admin_s3, bucket = stack.s3.client(), route.old_bucket
    admin(route, "DELETE FROM movers3_objects")
    admin(route, "DELETE FROM movers3_seeds")
    admin(route, "DELETE FROM movers3_seed_parts")
    seeder, worker = route.env("admin", "m3_seeder"), route.env("admin", "m3_worker")

    def seed() -> str:
        return run_cli("seed", env=seeder).stdout

    def copy() -> None:
        run_cli("worker", "--exit-when-done", env=worker, timeout=180)

    def rows() -> dict[str, tuple]:
        found = admin(
            route, "SELECT old_key, state, source_etag, source_deleted_at IS NOT NULL, last_error FROM movers3_objects"
        )
        return {routes.from_db(k).rsplit("/", 1)[1]: tuple(rest) for k, *rest in found}

    def copied(name: str) -> bytes:
        return route.read_new(name)["Body"].read()

    def later() -> None:
        time.sleep(1.1)  # S3 keeps LastModified to the second

    def etag(body: bytes) -> str:
        return hashlib.md5(body).hexdigest()

    route.put("k.png", body=b"k one")
    route.put("w.png", body=b"w one")
    seed()  # lists both first versions
    later()
    route.put("w.png", body=b"w two")
    later()
    route.put("w.png", body=b"w three")
    copy()  # k's first version; w's listed version is gone: the worker copies the current one, w three
    later()
    route.put("k.png", body=b"k two")
    assert " 1 changed" in seed()
    copy()
    assert (copied("k.png"), copied("w.png")) == (b"k two", b"w three")

    out = run_cli("delete-source", "--max-deletes", "10", env=route.env("admin", "m3_deleter")).stdout
    assert "deleted 2 " in out, out
    current = {
        o["Key"].rsplit("/", 1)[1]: o["ETag"].strip('"')
        for o in admin_s3.list_objects_v2(Bucket=bucket, Prefix=route.old_prefix + "/")["Contents"]
    }
    assert current == {"k.png": etag(b"k one"), "w.png": etag(b"w two")}  # the previous versions, current again

    plan = json.loads(run_cli("plan", "--json", env=seeder).stdout)
    assert plan["changed"]["objects"] == 0 and plan["older_than_copied"]["objects"] == 2, plan
    out = seed()
    assert " 0 changed, 2 older than the version copied (left alone)" in out, out
    assert rows() == {"k.png": ("done", etag(b"k two"), 1, None), "w.png": ("done", etag(b"w three"), 1, None)}
    copy()
    assert (copied("k.png"), copied("w.png")) == (b"k two", b"w three")

    later()
    route.put("k.png", body=b"k three")
    assert " 1 changed, 1 older than the version copied" in seed()
    copy()
    assert rows()["k.png"] == ("done", etag(b"k three"), 0, None) and copied("k.png") == b"k three"
