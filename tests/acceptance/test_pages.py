"""Commands that work through the ledger a page or a window at a time, run over more rows than one
page holds, so that the second page and the last, partial one are really read: `verify` (WINDOW
rows in flight, 64) and `delete-source` (PAGE rows per query, 500). The rows are written straight
into the ledger, as finished copies, and their objects put side by side: copying hundreds of objects
through a worker would only make the test slower."""

import hashlib
import re
from concurrent.futures import ThreadPoolExecutor

import pytest

from movers3 import routes
from movers3.delete_source import PAGE as DELETE_PAGE
from movers3.verify import WINDOW as VERIFY_WINDOW
from tests.support.helpers import run_cli
from tests.support.services import DATABASE

pytestmark = pytest.mark.acceptance


def body_of(i: int) -> bytes:
    return f"object {i:04d}".encode() * (1 + i % 5)


def put_all(route, items: list[tuple[str, str, bytes, dict]]) -> None:
    """(bucket, key, body, extra PutObject parameters) put with a thread pool."""
    client = route.stack.s3.client()
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda item: client.put_object(Bucket=item[0], Key=item[1], Body=item[2], **item[3]), items))


def insert_done_rows(route, count: int) -> list[int]:
    """`count` done rows, verified by ETag as a server-side copy records them; their ids in order."""
    rows = []
    for i in range(count):
        md5 = hashlib.md5(body_of(i)).hexdigest()
        rows.append(
            (
                route.old_bucket,
                routes.to_db(route.old(f"{i:04d}.txt")),
                route.new_bucket,
                routes.to_db(route.new(f"{i:04d}.txt")),
                len(body_of(i)),
                md5,
                md5,
                f"md5:{md5}",
            )
        )
    with route.stack.db.admin(DATABASE) as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO movers3_objects (old_bucket, old_key, new_bucket, new_key, size, source_etag, "
            "state, attempts, dest_etag, copy_method, verified_by, checksum, done_at) "
            "VALUES (%s, %s, %s, %s, %s, %s, 'done', 1, %s, 'copy', 'etag', %s, NOW(6))",
            rows,
        )
        cur.execute("SELECT id FROM movers3_objects ORDER BY id")
        return [i for (i,) in cur.fetchall()]


def test_verify_checks_every_row_past_its_window_and_finds_every_bad_one(route):
    count = 2 * VERIFY_WINDOW + 22  # two full windows and a partial third (150 rows)
    ids = insert_done_rows(route, count)
    # Bad copies in every window, the very first and last rows included: three kinds of damage.
    missing = {0, VERIFY_WINDOW + 6, count - 1}
    overwritten = set(range(5, count, 11)) - missing
    retyped = set(range(9, count, 17)) - missing - overwritten
    bad = missing | overwritten | retyped
    assert {min(bad) // VERIFY_WINDOW, max(bad) // VERIFY_WINDOW} == {0, 2}
    items = [
        (route.old_bucket, route.old(f"{i:04d}.txt"), body_of(i), {"ContentType": "text/plain"}) for i in range(count)
    ]
    items += [
        (
            route.new_bucket,
            route.new(f"{i:04d}.txt"),
            b"another, longer body" if i in overwritten else body_of(i),
            {"ContentType": "text/html" if i in retyped else "text/plain"},
        )
        for i in range(count)
        if i not in missing
    ]
    put_all(route, items)

    result = run_cli("verify", "--sample", "0", env=route.env("admin", "m3_worker"), check=False)

    assert result.returncode == 1, result.stdout + result.stderr
    found = [int(m) for m in re.findall(r"^MISMATCH id=(\d+) ", result.stdout, re.MULTILINE)]
    assert found == [ids[i] for i in sorted(bad)]  # each bad row once, in id order
    problems = dict(re.findall(r"^MISMATCH id=(\d+) .*?: (.*)$", result.stdout, re.MULTILINE))
    for i in bad:
        expected = (
            "missing at the destination"
            if i in missing
            else "ContentType differs"
            if i in retyped
            else "destination changed since the copy"
        )
        assert expected in problems[str(ids[i])], (i, problems[str(ids[i])])
    assert f"verified {count} done rows: {count - len(bad)} ok, {len(bad)} mismatched" in result.stdout


def test_delete_source_goes_past_its_first_page(route):
    count = DELETE_PAGE + 40  # a full page and a partial second one (540 rows)
    ids = insert_done_rows(route, count)
    put_all(
        route,
        [
            (bucket, key, body_of(i), {})
            for i in range(count)
            for bucket, key in (
                (route.old_bucket, route.old(f"{i:04d}.txt")),
                (route.new_bucket, route.new(f"{i:04d}.txt")),
            )
        ],
    )

    result = run_cli("delete-source", "--max-deletes", "100000", env=route.env("deleter", "m3_deleter"))

    assert f"deleted {count} source objects" in result.stdout and "skipped: none" in result.stdout, result.stdout
    client = route.stack.s3.client()
    left = [
        o["Key"]
        for page in client.get_paginator("list_objects_v2").paginate(
            Bucket=route.old_bucket, Prefix=route.old_prefix + "/"
        )
        for o in page.get("Contents", [])
    ]
    assert left == []
    with route.stack.db.admin(DATABASE) as conn, conn.cursor() as cur:
        cur.execute("SELECT id FROM movers3_objects WHERE source_deleted_at IS NOT NULL ORDER BY id")
        assert [i for (i,) in cur.fetchall()] == ids  # every row recorded, the second page's too
    # The copies themselves are untouched.
    assert (
        sum(
            1
            for page in client.get_paginator("list_objects_v2").paginate(
                Bucket=route.new_bucket, Prefix=route.new_prefix + "/"
            )
            for _ in page.get("Contents", [])
        )
        == count
    )
