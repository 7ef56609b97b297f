"""Seeding from a manifest instead of a listing: an S3 Inventory report (manifest.json and gzip'd CSV
data files, generated here the way S3 writes them) read from SeaweedFS or from a local copy, and a
plain CSV. Each must give exactly the ledger rows a plain listing gives."""

import csv
import gzip
import hashlib
import io
import json
import time
from datetime import UTC
from urllib.parse import quote_plus

import pytest

from movers3.ledger.db import Database
from movers3.ledger.seeds import Seeds
from movers3.seed.seeder import Seeder
from movers3.settings import load
from movers3.transfer import s3
from tests.integration.test_parallel_seed import ledger_rows, plain_listing_rows
from tests.support.faultproxy import FaultProxy
from tests.support.helpers import admin_exec, json_events, run_cli
from tests.support.keys import HOSTILE, LONG
from tests.support.services import DATABASE, INVENTORY_BUCKET

pytestmark = pytest.mark.integration

SCHEMA = [
    "Bucket",
    "Key",
    "VersionId",
    "IsLatest",
    "IsDeleteMarker",
    "Size",
    "LastModifiedDate",
    "ETag",
    "StorageClass",
]


def put_source(route):
    keys = (
        HOSTILE
        + [LONG, "with space/a b+c.png", "plus+sign", "pct%2Fnot-a-slash"]
        + [f"n/{i:04d}.png" for i in range(1500)]
    )
    route.put_many((k, k.encode()[:30]) for k in keys)
    route.put("cold.png", body=b"cold", StorageClass="GLACIER")
    # Outside the folder: in the inventory, never in the ledger.
    route.stack.s3.client().put_object(Bucket=route.old_bucket, Key=route.old_prefix + "-old/x", Body=b"no")


def inventory(route, files: int = 3) -> tuple[dict, dict[str, bytes]]:
    """manifest.json and its data files for the whole old bucket, as S3 Inventory writes them:
    URL-encoded keys ('+' for space), quoted CSV, gzip, MD5 of each file in the manifest."""
    client = route.stack.s3.client()
    records = []
    for page in client.get_paginator("list_objects_v2").paginate(
        Bucket=route.old_bucket, Prefix=route.old_prefix.split("/")[0] + "/"
    ):
        for o in page.get("Contents", []):
            records.append(
                [
                    route.old_bucket,
                    quote_plus(o["Key"], safe="/"),
                    "v1",
                    "true",
                    "false",
                    str(o["Size"]),
                    o["LastModified"].isoformat(),
                    o["ETag"].strip('"'),
                    o.get("StorageClass", "STANDARD"),
                ]
            )
    # An old version and a delete marker of a key in the folder: neither is seeded.
    records.append(
        [
            route.old_bucket,
            quote_plus(route.old("n/0001.png"), safe="/"),
            "v0",
            "false",
            "false",
            "9",
            "2020-01-01T00:00:00.000Z",
            "0" * 32,
            "STANDARD",
        ]
    )
    records.append(
        [
            route.old_bucket,
            quote_plus(route.old("deleted.png"), safe="/"),
            "v2",
            "true",
            "true",
            "",
            "2020-01-01T00:00:00.000Z",
            "",
            "",
        ]
    )
    return inventory_of(route, records, files)


def inventory_of(route, records: list[list[str]], files: int = 1) -> tuple[dict, dict[str, bytes]]:
    """manifest.json and its data files for these records (columns of SCHEMA)."""
    prefix = f"inv/{route.old_bucket}/{route.old_prefix.split('/')[0]}"
    data, entries = {}, []
    for i in range(files):
        text = io.StringIO()
        csv.writer(text, quoting=csv.QUOTE_ALL, lineterminator="\n").writerows(records[i::files])
        body = gzip.compress(text.getvalue().encode())
        key = f"{prefix}/data/part-{i}.csv.gz"
        data[key] = body
        entries.append({"key": key, "size": len(body), "MD5checksum": hashlib.md5(body).hexdigest()})
    manifest = {
        "sourceBucket": route.old_bucket,
        "destinationBucket": f"arn:aws:s3:::{INVENTORY_BUCKET}",
        "version": "2016-11-30",
        "creationTimestamp": "1700000000000",
        "fileFormat": "CSV",
        "fileSchema": ", ".join(SCHEMA),
        "files": entries,
    }
    return manifest, data


def upload(route, manifest, data) -> str:
    client = route.stack.s3.client()
    for key, body in data.items():
        client.put_object(Bucket=INVENTORY_BUCKET, Key=key, Body=body)
    key = data and next(iter(data)).rsplit("/data/", 1)[0] + "/2026-01-01T00-00Z/manifest.json"
    client.put_object(Bucket=INVENTORY_BUCKET, Key=key, Body=json.dumps(manifest).encode())
    return f"s3://{INVENTORY_BUCKET}/{key}"


def reset_ledger(route):
    with route.stack.db.admin(DATABASE) as conn, conn.cursor() as cur:
        cur.execute("DELETE FROM movers3_objects")
        cur.execute("DELETE FROM movers3_seeds")


def test_an_inventory_on_s3_and_its_local_copy_give_the_plain_listings_rows(route, tmp_path):
    put_source(route)
    expected = plain_listing_rows(route)
    manifest, data = inventory(route)
    uri = upload(route, manifest, data)
    env = route.env("seeder", "m3_seeder", SEED_THREADS="3")
    out = run_cli("seed", "--manifest", uri, env=env).stdout
    assert f"{len(expected):,} added" in out
    assert ledger_rows(route) == expected

    # The same report copied to disk (as `aws s3 sync` leaves it): data files found above the manifest.
    for key, body in data.items():
        (tmp_path / key).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / key).write_bytes(body)
    local = tmp_path / next(iter(data)).rsplit("/data/", 1)[0] / "2026-01-01T00-00Z" / "manifest.json"
    local.parent.mkdir(parents=True)
    local.write_text(json.dumps(manifest))
    reset_ledger(route)
    run_cli("seed", "--manifest", str(local), env=env)
    assert ledger_rows(route) == expected
    # A listing seed after a manifest seed is a catch-up round: nothing new, nothing changed.
    again = run_cli("seed", env=env).stdout
    assert " 0 added, 0 changed" in again
    assert ledger_rows(route) == expected


def test_a_corrupt_data_file_is_refused_and_other_formats_are_refused_with_a_reason(route, tmp_path):
    route.put("a.png")
    manifest, data = inventory(route, files=1)
    key = next(iter(data))
    manifest["files"][0]["MD5checksum"] = "0" * 32
    uri = upload(route, manifest, data)
    env = route.env("seeder", "m3_seeder")
    bad = run_cli("seed", "--manifest", uri, env=env, check=False)
    last = bad.stderr.strip().splitlines()[-1]
    assert bad.returncode == 5 and last.startswith("movers3: error: ") and "MD5" in last, bad.stderr
    parquet = dict(manifest, fileFormat="Parquet")
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(parquet))
    (tmp_path / key.rsplit("/", 1)[1]).write_bytes(data[key])
    refused = run_cli("seed", "--manifest", str(path), "--restart", env=env, check=False)
    assert refused.returncode == 2 and "Parquet" in refused.stderr


def test_a_plain_csv_with_and_without_sizes_gives_the_plain_listings_rows(route, tmp_path):
    keys = HOSTILE + [LONG] + [f"c/{i}" for i in range(40)]
    route.put_many((k, k.encode()[:20]) for k in keys)
    expected = plain_listing_rows(route)
    listed = {r[1].decode(): r for r in expected}
    path = tmp_path / "objects.csv"
    with open(path, "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["bucket", "key", "size", "etag", "storage_class"])
        for i, (key, row) in enumerate(sorted(listed.items())):
            if i % 2:
                writer.writerow([route.old_bucket, key, row[4], row[5], row[6]])
            else:
                writer.writerow([route.old_bucket, key])  # completed with a HeadObject
        writer.writerow(["another-bucket", "x/y", "1", "e"])  # not this source
    # HeadObject needs s3:GetObject on the source: the worker's S3 identity has it.
    settings = load(route.env("worker", "m3_seeder"))
    stats = Seeder(
        Seeds(Database(settings.mysql)), s3.client(settings.source), settings, manifest_uri=str(path), threads=1
    ).run()
    assert stats.added == len(expected)
    assert ledger_rows(route) == expected


# -- a plain CSV completed with HeadObject: the objects it names may have changed since ----------------


class FirstRequestFails(FaultProxy):
    """A rule's fault on the first matching request of each path only: the retry goes through."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.hit: set[str] = set()

    def _choose(self, method: str, path: str) -> str | None:
        kind = super()._choose(method, path)
        with self._lock:
            if kind is None or (method, path) in self.hit:
                return None
            self.hit.add((method, path))
        return kind


def keys_csv(path, route, names) -> str:
    """A plain CSV of bucket,key without sizes or ETags: every row is completed with a HeadObject."""
    with open(path, "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["bucket", "key"])
        writer.writerows([route.old_bucket, route.old(n)] for n in names)
    return str(path)


def test_a_key_deleted_since_the_csv_was_written_is_a_reported_skip_and_the_seed_goes_on(route, tmp_path):
    names = [f"k/{i:03d}.png" for i in range(30)] + ["with space/a b+c.png"]
    route.put_many((n, n.encode()) for n in [*names, "gone.png"])
    path = keys_csv(tmp_path / "objects.csv", route, ["gone.png", *names])
    route.stack.s3.client().delete_object(Bucket=route.old_bucket, Key=route.old("gone.png"))  # after the CSV
    expected = plain_listing_rows(route)
    assert len(expected) == len(names)
    # HeadObject needs s3:GetObject on the source: the worker's S3 identity has it.
    result = run_cli("seed", "--manifest", path, env=route.env("worker", "m3_seeder"), check=False)
    assert result.returncode == 0, result.stderr  # finished, with a key skipped: a warning, not a failure
    assert f"{len(names):,} added, 0 changed, 1 skipped by this process" in result.stdout, result.stdout
    skipped = [e for e in json_events(result.stderr) if e["event"] == "key_skipped"]
    assert [e["key"] for e in skipped] == [route.old("gone.png")], skipped
    assert "gone" in skipped[0]["reason"] and "404" in skipped[0]["reason"], skipped
    assert ledger_rows(route) == expected


def test_throttled_and_timed_out_heads_are_retried_and_the_seed_has_every_row(route, tmp_path):
    names = [f"slow-{i}.png" for i in range(4)] + [f"late-{i}.png" for i in range(2)] + [f"ok-{i}" for i in range(20)]
    route.put_many((n, n.encode()) for n in names)
    expected = plain_listing_rows(route)
    path = keys_csv(tmp_path / "objects.csv", route, names)
    proxy = FirstRequestFails(route.stack.s3.url, timeout_seconds=4).start()
    proxy.rules += [(route.old("slow-"), "slowdown", "HEAD"), (route.old("late-"), "timeout", "HEAD")]
    env = route.env("worker", "m3_seeder", URL_ENDPOINT=proxy.url, S3_TIMEOUT_SECONDS="2", MAX_ATTEMPTS="4")
    try:
        result = run_cli("seed", "--manifest", path, env=env, check=False)
    finally:
        proxy.stop()
    assert result.returncode == 0, result.stderr
    assert dict(proxy.injected) == {"slowdown": 4, "timeout": 2}
    assert f"{len(names):,} added, 0 changed, 0 skipped" in result.stdout, result.stdout
    assert ledger_rows(route) == expected


def test_heads_the_role_may_not_make_or_a_missing_bucket_stop_the_seed_with_one_line(route, tmp_path):
    route.put_many((n, b"x") for n in ("a.png", "b.png"))
    path = keys_csv(tmp_path / "objects.csv", route, ["a.png", "b.png"])
    # The seeder's S3 identity may list the source but not read it: AccessDenied on every HeadObject.
    denied = run_cli("seed", "--manifest", path, env=route.env("seeder", "m3_seeder"), check=False)
    last = denied.stderr.strip().splitlines()[-1]
    assert denied.returncode == 5 and last.startswith("movers3: error: HeadObject"), denied.stderr
    assert "s3:GetObject" in last, last
    assert ledger_rows(route) == []
    # A bucket that does not exist answers HeadObject with a bare 404, as a deleted key does: not a skip.
    # (A role scoped to the old bucket gets a 403 there instead, the case above.)
    with open(path, "w", newline="", encoding="utf-8") as out:
        csv.writer(out).writerows(
            [["no-such-bucket-m3", route.old("a.png")], ["no-such-bucket-m3", route.old("b.png")]]
        )
    env = route.env("admin", "m3_seeder", OLD_BUCKET="no-such-bucket-m3")
    missing = run_cli("seed", "--manifest", path, "--restart", env=env, check=False)
    last = missing.stderr.strip().splitlines()[-1]
    assert missing.returncode == 5 and "NoSuchBucket" in last, missing.stderr
    assert ledger_rows(route) == []


# -- catch-up from a manifest never moves a row backwards ------------------------------------------


def test_a_manifest_older_than_the_copy_never_moves_a_row_back(route, tmp_path):
    """A manifest made before the last copy lists a version overwritten since. Dated (an
    inventory's LastModifiedDate, a plain CSV's sixth column), it is older than the row's version and
    is left alone, even once `delete-source` removed the source (before schema version 5 the row was
    queued again, and then failed: NoSuchKey). Undated, it can't be told apart from a newer version:
    queued again, as before, and the worker's copy pinned to the listed ETag copies the current
    version again. A version newer than the copy is still caught up."""
    seeder, worker = route.env("seeder", "m3_seeder"), route.env("worker", "m3_worker")
    client = route.stack.s3.client()

    def version() -> tuple[str, int, str]:
        """The source's current ETag, size and LastModified (as S3 Inventory prints it)."""
        (o,) = client.list_objects_v2(Bucket=route.old_bucket, Prefix=route.old("a.png"))["Contents"]
        return o["ETag"].strip('"'), o["Size"], o["LastModified"].astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")

    def inventory_uri(etag: str, size: int, modified: str) -> str:
        key = quote_plus(route.old("a.png"), safe="/")
        record = [route.old_bucket, key, "null", "true", "false", str(size), modified, etag, "STANDARD"]
        return upload(route, *inventory_of(route, [record]))

    def seed(*args: str) -> str:
        return run_cli("seed", *args, env=seeder).stdout

    def copy() -> None:
        run_cli("worker", "--exit-when-done", env=worker, timeout=180)

    def row() -> tuple:
        (found,) = admin_exec(
            route,
            "SELECT state, source_etag, last_error, DATE_FORMAT(source_last_modified, '%Y-%m-%dT%H:%i:%s.000Z'),"
            " source_deleted_at IS NOT NULL FROM movers3_objects",
        )
        return found

    def copied() -> bytes:
        return route.read_new("a.png")["Body"].read()

    route.put("a.png", body=b"version one")
    seed()
    copy()
    one = version()
    time.sleep(1.1)  # S3 keeps LastModified to the second
    route.put("a.png", body=b"version two!")
    assert " 1 changed" in seed()
    copy()
    two = version()
    assert row() == ("done", two[0], None, two[2], 0) and copied() == b"version two!"

    # The first version, dated: older than the copy, left alone.
    dated = tmp_path / "dated.csv"
    dated.write_text(f"{route.old_bucket},{route.old('a.png')},{one[1]},{one[0]},STANDARD,{one[2]}\n")
    out = seed("--manifest", str(dated))
    assert " 0 changed, 1 older than the version copied (left alone), 0 skipped" in out, out
    assert row() == ("done", two[0], None, two[2], 0)

    # Undated, it can't know: queued again; the copy pinned to the first version's ETag finds the
    # second current, copies it and records its date.
    undated = tmp_path / "undated.csv"
    undated.write_text(f"{route.old_bucket},{route.old('a.png')},{one[1]},{one[0]}\n")
    assert " 1 changed" in seed("--manifest", str(undated))
    copy()
    assert row() == ("done", two[0], None, two[2], 0) and copied() == b"version two!"

    # The source deleted, an inventory of the first version: still left alone.
    deleted = run_cli("delete-source", "--max-deletes", "10", env=route.env("deleter", "m3_deleter")).stdout
    assert "deleted 1 " in deleted, deleted
    out = seed("--manifest", inventory_uri(*one))
    assert " 0 changed, 1 older than the version copied" in out, out
    assert row() == ("done", two[0], None, two[2], 1)

    # A version newer than the copy is caught up.
    time.sleep(1.1)
    route.put("a.png", body=b"version three")
    three = version()
    assert " 1 changed" in seed("--manifest", inventory_uri(*three))
    copy()
    assert row() == ("done", three[0], None, three[2], 0) and copied() == b"version three"
