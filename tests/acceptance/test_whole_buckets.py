"""`OLD_PREFIX=/` and `NEW_PREFIX=/`: a bucket's root, migrated end to end by the CLI as separate
processes, on a real MariaDB and a real SeaweedFS.

The shared test buckets hold every other test's folders, and a root is the whole bucket: each test
here makes buckets of its own with SeaweedFS's admin identity, and runs the commands with that admin
S3 identity, the only one the server lets use new buckets (the least-privilege S3 identities of
docs/permissions.md are scoped to the shared buckets, and are tested there by
test_least_privilege.py). The ledger accounts are the least-privilege ones of each command.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import uuid

import pytest

from movers3.report import REPORT_COLUMNS
from tests.support.helpers import Route, admin_exec, run_cli
from tests.support.keys import HOSTILE, LONG
from tests.support.services import SeaweedFS

pytestmark = pytest.mark.acceptance

# Keys at the root level (the odd ones of keys.py among them) and in sub-folders at several depths.
ROOT_KEYS = [
    "top.png",
    *HOSTILE,
    "a/b.png",
    "a/deeper/c d.txt",
    "images/x.png",
    "images-old/y.png",
    "Cafe\u0301 /sp ace/é😀.png",
    "😀 first byte past ASCII.png",
    "é/at/depth.png",
    LONG,
]


def fresh_bucket(route: Route, role: str) -> str:
    name = f"m3-{role}-{uuid.uuid4().hex[:12]}"
    SeaweedFS._create_bucket(route.stack.s3.client("admin"), name)
    return name


def body(key: str) -> bytes:
    return b"body of " + key.encode("utf-8")


def put(route: Route, bucket: str, keys: list[str]) -> None:
    client = route.stack.s3.client("admin")
    for key in keys:
        client.put_object(Bucket=bucket, Key=key, Body=body(key))


def bucket_objects(route: Route, bucket: str) -> dict[str, bytes]:
    """Every object of a bucket, by key, with its bytes."""
    client = route.stack.s3.client("admin")
    keys = [
        o["Key"]
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        for o in page.get("Contents", [])
    ]
    return {k: client.get_object(Bucket=bucket, Key=k)["Body"].read() for k in keys}


def migrate(route: Route) -> str:
    """Seed and copy everything; the seed's line."""
    seeded = run_cli("seed", env=route.env("admin", "m3_seeder")).stdout
    run_cli("worker", "--exit-when-done", env=route.env("admin", "m3_worker"), timeout=180)
    return seeded


def check_migrated(route: Route, expected: dict[str, str], untouched: dict[str, bytes] | None = None) -> None:
    """Every source key of `expected` arrived at exactly its new key with its bytes, and nothing else
    reached the destination (beyond what was already there, `untouched`); the ledger's routes, the
    report, `status` and `verify` say the same."""
    n = len(expected)
    source = bucket_objects(route, route.old_bucket)
    arrived = bucket_objects(route, route.new_bucket)
    assert arrived == {**(untouched or {}), **{new: source[old] for old, new in expected.items()}}

    rows = admin_exec(route, "SELECT old_bucket, old_key, new_bucket, new_key, state FROM movers3_objects")
    assert len(rows) == n
    assert {(ob, nb, state) for ob, _, nb, _, state in rows} == {(route.old_bucket, route.new_bucket, "done")}
    assert {bytes(ok).decode(): bytes(nk).decode() for _, ok, _, nk, _ in rows} == expected

    report = [
        json.loads(line) for line in run_cli("report", "--format", "jsonl", env=worker(route)).stdout.splitlines()
    ]
    assert len(report) == n and set(report[0]) == set(REPORT_COLUMNS)
    assert {r["old_key"]: r["new_key"] for r in report} == expected
    assert {(r["old_bucket"], r["new_bucket"]) for r in report} == {(route.old_bucket, route.new_bucket)}

    status = json.loads(run_cli("status", "--json", env=worker(route)).stdout)
    assert (status["total"], status["done"], status["pending"], status["failed"]) == (n, n, 0, 0)
    (seed,) = status["seeds"]
    old_prefix = "" if route.old_prefix == "/" else route.old_prefix
    assert (seed["old_bucket"], seed["old_prefix"], seed["state"]) == (route.old_bucket, old_prefix, "finished")
    shown = f"{route.old_bucket}/" if route.old_prefix == "/" else f"{route.old_bucket}/{route.old_prefix}/"
    assert f"seed {shown}: finished" in run_cli("status", env=worker(route)).stdout

    verified = run_cli("verify", "--sample", "0", "--full", env=worker(route)).stdout
    assert f"verified {n:,} done rows (full: bytes compared): {n:,} ok, 0 mismatched" in verified


def worker(route: Route) -> dict[str, str]:
    return route.env("admin", "m3_worker")


def on_fresh_buckets(route: Route, old_prefix: str, new_prefix: str) -> Route:
    return dataclasses.replace(
        route,
        old_prefix=old_prefix,
        new_prefix=new_prefix,
        old_bucket=fresh_bucket(route, "src"),
        new_bucket=fresh_bucket(route, "dst"),
    )


def test_a_whole_bucket_into_the_root_of_another(route):
    """Root to root: every key keeps its whole path, keys at the root level included; `load-samples`,
    `plan`, a catch-up and `delete-source` work on the whole bucket too."""
    whole = on_fresh_buckets(route, "/", "/")
    src, dst = whole.old_bucket, whole.new_bucket
    samples = run_cli("load-samples", "--count", "3", env=worker(whole)).stdout
    assert samples == f"put 3 sample objects under {src}/\n"
    assert set(bucket_objects(whole, src)) == {"1.png", "2.png", "3.png"}  # at the root: no leading slash
    put(whole, src, ROOT_KEYS)
    keys = [*ROOT_KEYS, "1.png", "2.png", "3.png"]
    n = len(keys)

    plan = json.loads(run_cli("plan", "--json", env=whole.env("admin", "m3_seeder")).stdout)
    assert (plan["source"], plan["destination"]) == (f"{src}/", f"{dst}/")
    assert (plan["listed"]["objects"], plan["new"]["objects"]) == (n, n)

    assert f"seeded {src}/ (round 1): {n} listed, {n} added, 0 changed, 0 skipped" in migrate(whole)
    check_migrated(whole, {k: k for k in keys})

    # A catch-up of the whole bucket: one key added at the root, one changed, one gone.
    client = whole.stack.s3.client("admin")
    client.put_object(Bucket=src, Key="late.txt", Body=b"late")
    client.put_object(Bucket=src, Key="top.png", Body=b"changed")
    client.delete_object(Bucket=src, Key="a/b.png")
    seeded = run_cli("seed", env=whole.env("admin", "m3_seeder")).stdout
    assert f"seeded {src}/ (round 2): {n} listed, 1 added, 1 changed, 0 skipped" in seeded
    run_cli("worker", "--exit-when-done", env=worker(whole), timeout=180)
    status = json.loads(run_cli("status", "--json", env=worker(whole)).stdout)
    assert (status["total"], status["done"], status["seeds"][0]["vanished"]) == (n + 1, n + 1, 1)
    assert client.get_object(Bucket=dst, Key="late.txt")["Body"].read() == b"late"
    assert client.get_object(Bucket=dst, Key="top.png")["Body"].read() == b"changed"

    # delete-source reads every row of the bucket (the root's range of the ledger).
    deleted = run_cli("delete-source", "--max-deletes", "1000", env=whole.env("admin", "m3_deleter")).stdout
    assert f"deleted {n:,} source objects under {src}/; 1 already gone; skipped: none" in deleted
    assert bucket_objects(whole, src) == {}


def test_a_whole_bucket_into_a_folder(route):
    """Root to folder: `a/b.png` becomes `avatar/2024/a/b.png`; the destination's own keys outside the
    folder (one with the same name as a source key) stay as they were."""
    r = on_fresh_buckets(route, "/", "avatar/2024")
    put(r, r.old_bucket, ROOT_KEYS)
    before = {"top.png": b"already there", "avatar/other.png": b"also there"}
    client = r.stack.s3.client("admin")
    for key, data in before.items():
        client.put_object(Bucket=r.new_bucket, Key=key, Body=data)
    n = len(ROOT_KEYS)
    assert f"seeded {r.old_bucket}/ (round 1): {n} listed, {n} added" in migrate(r)
    check_migrated(r, {k: f"avatar/2024/{k}" for k in ROOT_KEYS}, untouched=before)


def test_a_folder_into_the_root_of_another_bucket(route):
    """Folder to root: `images/a/b.png` becomes `a/b.png`; keys outside the folder (at the root, in a
    sibling folder, or sharing its name's first letters) are not moved."""
    r = on_fresh_buckets(route, "images", "/")
    put(r, r.old_bucket, [f"images/{k}" for k in ROOT_KEYS])
    put(r, r.old_bucket, ["top.png", "images-old/x", "imagesX.png", "other/images/y"])
    n = len(ROOT_KEYS)
    assert f"seeded {r.old_bucket}/images/ (round 1): {n} listed, {n} added" in migrate(r)
    check_migrated(r, {f"images/{k}": k for k in ROOT_KEYS})


def test_a_whole_bucket_from_a_csv_manifest(route, tmp_path):
    """A manifest names the whole bucket: every row of OLD_BUCKET is kept (sizes given, or completed
    with a HeadObject), rows of other buckets are not."""
    r = on_fresh_buckets(route, "/", "/")
    put(r, r.old_bucket, ROOT_KEYS)
    client = r.stack.s3.client("admin")
    path = tmp_path / "objects.csv"
    with open(path, "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["bucket", "key", "size", "etag"])
        for i, key in enumerate(ROOT_KEYS):
            if i % 2:
                head = client.head_object(Bucket=r.old_bucket, Key=key)
                writer.writerow([r.old_bucket, key, head["ContentLength"], head["ETag"].strip('"')])
            else:
                writer.writerow([r.old_bucket, key])
        writer.writerow([r.new_bucket, "top.png", "1", "e"])  # another bucket: not this source
    n = len(ROOT_KEYS)
    seeded = run_cli("seed", "--manifest", str(path), env=r.env("admin", "m3_seeder")).stdout
    assert f"seeded {r.old_bucket}/ (round 1, from {path}): {n} listed, {n} added" in seeded
    run_cli("worker", "--exit-when-done", env=worker(r), timeout=180)
    check_migrated(r, {k: k for k in ROOT_KEYS})


def test_check_reads_and_probes_at_the_root(route):
    """`movers3 check` with both prefixes at the root: it lists the bucket's first key (at the root), and
    its write probes go to keys at the destination's root, not under '/'; nothing is written."""
    whole = on_fresh_buckets(route, "/", "/")
    put(whole, whole.old_bucket, ["top.png"])
    result = run_cli("check", env=whole.env("admin", "m3_worker"), check=False)
    print(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"role worker; {whole.old_bucket}/ -> {whole.new_bucket}/;" in result.stdout
    assert f"listed {whole.old_bucket}/: first key top.png" in result.stdout
    assert bucket_objects(route, whole.new_bucket) == {}
