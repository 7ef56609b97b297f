"""Small tools for tests: where a test's objects live, how to put and read them, how to run the CLI,
and how to wait on a condition instead of sleeping."""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from movers3 import routes
from movers3.ledger.seeds import PageWrite, PartSpec
from tests.support.services import DATABASE, NEW_BUCKET, OLD_BUCKET, MariaDB, SeaweedFS

MOVERS3 = [sys.executable, "-m", "movers3"]
# README ("Resuming after a failure"): on SIGTERM a worker lets copies finish for up to 15 s, releases
# the rest and "exits 0 within 25 s". Tests assert that documented bound on the measured stop.
# One source object with every attribute a copy keeps (docs/copying.md).
SOURCE_ATTRIBUTES = {
    "ContentType": "image/webp",
    "CacheControl": "public, max-age=60",
    "ContentDisposition": 'inline; filename="a b.webp"',
    "ContentLanguage": "fr-CA",
    "ContentEncoding": "identity",
    "Expires": datetime.datetime(2031, 2, 3, 4, 5, 6, tzinfo=datetime.UTC),
    "Metadata": {"owner": "user-42", "x-note": "kept"},
    "WebsiteRedirectLocation": "/moved/here.html",
    "StorageClass": "STANDARD_IA",
    "Tagging": "team=web&kind=avatar",
}
# The headers and metadata every copy path keeps on every server.
BASIC_ATTRIBUTES = {
    "ContentType": "image/webp",
    "CacheControl": "max-age=60",
    "ContentDisposition": 'inline; filename="a b.webp"',
    "ContentLanguage": "fr",
    "Metadata": {"owner": "user-42", "x-note": "kept"},
}
# Those a HEAD of the copy gives back as they were put (tags and the redirect are checked apart).
CONTENT_ATTRIBUTES = (
    "ContentType",
    "CacheControl",
    "ContentDisposition",
    "ContentLanguage",
    "ContentEncoding",
    "Expires",
    "Metadata",
    "StorageClass",
)


def assert_forbidden(calls: dict[str, Callable[[], object]], client) -> None:
    """Every call is refused with a 403 by `client`'s identity."""
    allowed = []
    for name, call in calls.items():
        try:
            call()
            allowed.append(name)
        except client.exceptions.ClientError as exc:
            assert exc.response["ResponseMetadata"]["HTTPStatusCode"] == 403, (name, exc)
    assert allowed == []


STOP_BOUND_SECONDS = 25
# How long a test waits for the exit before killing the process: well past the bound, so that a worker
# that overstays is reported with the time it took (and never left running), not as a wait that expired.
STOP_WAIT_SECONDS = 90


@dataclasses.dataclass
class Stack:
    db: MariaDB
    s3: SeaweedFS


@dataclasses.dataclass
class Route:
    stack: Stack
    old_prefix: str
    new_prefix: str
    old_bucket: str = OLD_BUCKET
    new_bucket: str = NEW_BUCKET

    def env(self, s3_identity: str, db_role: str, **extra: str) -> dict[str, str]:
        key, secret = self.stack.s3.credentials(s3_identity)
        base = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MYSQL_", "OLD_", "NEW_"))}
        base.update(
            {
                "URL_ENDPOINT": self.stack.s3.url,
                "AWS_ACCESS_KEY_ID": key,
                "AWS_SECRET_ACCESS_KEY": secret,
                "MYSQL_URL": self.stack.db.role_url(db_role),
                "OLD_BUCKET": self.old_bucket,
                "OLD_PREFIX": self.old_prefix,
                "NEW_BUCKET": self.new_bucket,
                "NEW_PREFIX": self.new_prefix,
                "LOG_FORMAT": "json",
                "LOAD_FILES": "false",
            }
        )
        base.update(extra)
        return base

    @property
    def old_folder(self) -> str:
        """The source's listing prefix: `tag/images/`, or '' for a bucket's root (`/`)."""
        return _folder(self.old_prefix)

    @property
    def new_folder(self) -> str:
        return _folder(self.new_prefix)

    def old(self, rest: str) -> str:
        return self.old_folder + rest

    def new(self, rest: str) -> str:
        return self.new_folder + rest

    def put(self, rest: str, body: bytes = b"x", **params) -> str:
        key = self.old(rest)
        self.stack.s3.client().put_object(Bucket=self.old_bucket, Key=key, Body=body, **params)
        return key

    def put_many(self, items: Iterable[tuple[str, bytes]], threads: int = 16) -> None:
        from concurrent.futures import ThreadPoolExecutor

        client = self.stack.s3.client()
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(lambda kv: client.put_object(Bucket=self.old_bucket, Key=self.old(kv[0]), Body=kv[1]), items))

    def read_new(self, rest: str) -> dict:
        return self.stack.s3.client().get_object(Bucket=self.new_bucket, Key=self.new(rest))

    def new_keys(self) -> list[str]:
        client = self.stack.s3.client()
        keys = []
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=self.new_bucket, Prefix=self.new_folder):
            keys.extend(o["Key"] for o in page.get("Contents", []))
        return keys

    def rows(self) -> list[dict]:
        with self.stack.db.admin(DATABASE) as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT id, old_key, new_key, state, attempts, last_error, lease_owner, size, source_etag,"
                " dest_etag, copy_method, verified_by, checksum, storage_class, upload_id, upload_parts"
                " FROM movers3_objects ORDER BY id"
            )
            names = [d[0] for d in cur.description]
            return [dict(zip(names, r, strict=False)) for r in cur.fetchall()]

    def states(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for row in self.rows():
            counts[row["state"]] = counts.get(row["state"], 0) + 1
        return counts


def _folder(prefix: str) -> str:
    """A prefix as the tests write it (`tag/images`, or `/` for a root) as the start of its keys."""
    return prefix.rstrip("/") + "/" if prefix.strip("/") else ""


def run_cli(*args: str, env: dict[str, str], timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [*MOVERS3, *args], env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"movers3 {' '.join(args)} exited {result.returncode}\n"
            f"stdout: {result.stdout[-2000:]}\nstderr: {result.stderr[-4000:]}"
        )
    return result


def start_cli(*args: str, env: dict[str, str], log: Path) -> subprocess.Popen:
    out = open(log, "wb")
    return subprocess.Popen([*MOVERS3, *args], env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def signal_and_time(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> tuple[int, float]:
    """Send `sig` and wait for the exit: the exit code and the seconds from the signal to the exit. A
    process still running after STOP_WAIT_SECONDS is killed; its time then exceeds any bound."""
    sent = time.monotonic()
    proc.send_signal(sig)
    try:
        proc.wait(STOP_WAIT_SECONDS)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(30)
    return proc.returncode, time.monotonic() - sent


def json_events(text: str, *, torn_tail: bool = False) -> list[dict]:
    """Every line of a JSON-format log, each one structlog event (a JSON object with an `event`).

    Any other line fails the test, with the line shown: the checks built on these events (who held a
    row and when, which rows were copied) would otherwise pass without the line they lost, a claim
    that never reaches the overlap check for one. There are no exceptions: runs of every test that reads
    a worker's log (its stdout, with stderr too where a test sends both to one file) found nothing else,
    not even a warning at start-up.

    `torn_tail`: the log of a process that is still running, or was SIGKILLed, may end with a line it
    had not finished writing. Only that last line, when it has no newline, is then left out; a log
    that ends with a newline is complete and is checked whole.
    """
    lines = text.splitlines()
    if torn_tail and lines and not text.endswith("\n"):
        lines.pop()
    events = []
    for number, line in enumerate(lines, 1):
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            event = None
        if not (isinstance(event, dict) and "event" in event):
            raise AssertionError(f"line {number} of {len(lines)} of a JSON log is not a JSON event: {line[:2000]!r}")
        events.append(event)
    return events


def wait_for(condition: Callable[[], object], *, timeout: float, interval: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def page_row(route, rest: str, *, size: int = 1, etag: str = "e", storage_class: str | None = "STANDARD") -> tuple:
    """One row of a seed page (rows_insert_if_new's parameters) for the object `rest` of the route."""
    return (
        route.old_bucket,
        routes.to_db(route.old(rest)),
        route.new_bucket,
        routes.to_db(route.new(rest)),
        size,
        etag,
        storage_class,
        None,
    )


def make_rows(seeder_ledger, route, count, start=0):
    """The factory: `count` pending rows inserted the way the seeder inserts them (one page of one part)."""
    seed = seeder_ledger.seed_round(route.old_bucket, route.old_prefix, route.new_bucket, route.new_prefix, input=None)
    seeder_ledger.seed_plan(seed, [PartSpec(prefix=route.old_prefix + "/")])
    part = seeder_ledger.part_claim(seed, "factory", 60)
    rows = [page_row(route, f"{i:05d}", size=i, etag=f"{i:032x}") for i in range(start, start + count)]
    seeder_ledger.seed_page(
        part,
        60,
        PageWrite(route.old_bucket, rows, [], [], route.old(f"{start + count - 1:05d}"), 0, count, 0),
        seed,
    )
    seeder_ledger.part_finish(seed, part, route.old_bucket, route.old_prefix + "/")


def admin_exec(route, sql: str, params=None) -> tuple:
    """One statement as the database's administrator; its rows."""
    with route.stack.db.admin(DATABASE) as conn, conn.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall()
