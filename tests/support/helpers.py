"""Small tools for tests: where a test's objects live, how to put and read them, how to run the CLI,
and how to wait on a condition instead of sleeping."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from tests.support.services import DATABASE, NEW_BUCKET, OLD_BUCKET, MariaDB, SeaweedFS

MOVERS3 = [sys.executable, "-m", "movers3"]


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
        base.update({
            "URL_ENDPOINT": self.stack.s3.url, "AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret,
            "MYSQL_URL": self.stack.db.role_url(db_role), "OLD_BUCKET": self.old_bucket,
            "OLD_PREFIX": self.old_prefix, "NEW_BUCKET": self.new_bucket, "NEW_PREFIX": self.new_prefix,
            "LOG_FORMAT": "json", "LOAD_FILES": "false",
        })
        base.update(extra)
        return base

    def old(self, rest: str) -> str:
        return f"{self.old_prefix}/{rest}"

    def new(self, rest: str) -> str:
        return f"{self.new_prefix}/{rest}"

    def put(self, rest: str, body: bytes = b"x", **params) -> str:
        key = self.old(rest)
        self.stack.s3.client().put_object(Bucket=self.old_bucket, Key=key, Body=body, **params)
        return key

    def put_many(self, items: Iterable[tuple[str, bytes]], threads: int = 16) -> None:
        from concurrent.futures import ThreadPoolExecutor
        client = self.stack.s3.client()
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(lambda kv: client.put_object(Bucket=self.old_bucket, Key=self.old(kv[0]), Body=kv[1]),
                          items))

    def read_new(self, rest: str) -> dict:
        return self.stack.s3.client().get_object(Bucket=self.new_bucket, Key=self.new(rest))

    def new_keys(self) -> list[str]:
        client = self.stack.s3.client()
        keys = []
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=self.new_bucket,
                                                                     Prefix=self.new_prefix + "/"):
            keys.extend(o["Key"] for o in page.get("Contents", []))
        return keys

    def rows(self) -> list[dict]:
        with self.stack.db.admin(DATABASE) as conn, conn.cursor() as cur:
            cur.execute("SELECT id, old_key, new_key, state, attempts, last_error, lease_owner, size, source_etag,"
                        " dest_etag, copy_method, verified_by, checksum, storage_class, upload_id, upload_parts"
                        " FROM movers3_objects ORDER BY id")
            names = [d[0] for d in cur.description]
            return [dict(zip(names, r)) for r in cur.fetchall()]

    def states(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for row in self.rows():
            counts[row["state"]] = counts.get(row["state"], 0) + 1
        return counts


def run_cli(*args: str, env: dict[str, str], timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([*MOVERS3, *args], env=env, capture_output=True, text=True, timeout=timeout,
                            stdin=subprocess.DEVNULL)
    if check and result.returncode != 0:
        raise AssertionError(f"movers3 {' '.join(args)} exited {result.returncode}\n"
                             f"stdout: {result.stdout[-2000:]}\nstderr: {result.stderr[-4000:]}")
    return result


def start_cli(*args: str, env: dict[str, str], log: Path) -> subprocess.Popen:
    out = open(log, "wb")
    return subprocess.Popen([*MOVERS3, *args], env=env, stdout=out, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)


def json_events(text: str) -> list[dict]:
    events = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return events


def wait_for(condition: Callable[[], object], *, timeout: float, interval: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
