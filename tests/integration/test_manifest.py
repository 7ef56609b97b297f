"""Seeding from a manifest instead of a listing: an S3 Inventory report (manifest.json and gzip'd CSV
data files, generated here the way S3 writes them) read from SeaweedFS or from a local copy, and a
plain CSV. Each must give exactly the ledger rows a plain listing gives."""

import csv
import gzip
import hashlib
import io
import json
from urllib.parse import quote_plus

import pytest

from movers3.ledger.db import Database
from movers3.ledger.seeds import Seeds
from movers3.seed.seeder import Seeder
from movers3.settings import load
from movers3.transfer import s3
from tests.integration.test_parallel_seed import ledger_rows, plain_listing_rows
from tests.support.helpers import run_cli
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
