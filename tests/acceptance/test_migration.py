"""A migration run as a user runs it: the installed CLI as separate processes, the seeder and worker
accounts of docs/permissions.md, a real MariaDB and a real SeaweedFS."""

import csv
import hashlib
import io
import json
import os
import re
from concurrent.futures import ThreadPoolExecutor

import pytest

from movers3.values import MIB
from tests.support.helpers import json_events, run_cli, start_cli, wait_for
from tests.support.keys import HOSTILE, LONG

pytestmark = pytest.mark.acceptance


def body_for(i: int) -> bytes:
    return hashlib.sha256(str(i).encode()).digest() * (1 + i % 40)


def seed(route):
    return run_cli("seed", env=route.env("seeder", "m3_seeder"))


def test_thousand_objects_by_three_workers_byte_identical_and_copied_once(route, env, tmp_path):
    route.put_many((f"{i // 100}/{i}.bin", body_for(i)) for i in range(1000))
    assert "1,000 listed, 1,000 added" in seed(route).stdout
    worker_env = {**env, "LOG_LEVEL": "debug", "WORKER_THREADS": "8", "CLAIM_BATCH": "16"}
    procs = [start_cli("worker", "--exit-when-done", env=worker_env, log=tmp_path / f"w{i}.log") for i in range(3)]
    codes = [p.wait(180) for p in procs]
    logs = [(tmp_path / f"w{i}.log").read_text() for i in range(3)]
    assert codes == [0, 0, 0], logs

    for secret in ("worker-secret-0123456789", "worker-pass-0123456789"):
        assert not any(secret in text for text in logs)
    copied = [e["row_id"] for text in logs for e in json_events(text) if e["event"] == "object_copied"]
    per_worker = [sum(1 for e in json_events(text) if e["event"] == "object_copied") for text in logs]
    assert len(copied) == 1000 and len(set(copied)) == 1000, "a row was copied twice or not at all"
    assert sum(1 for n in per_worker if n) >= 2, per_worker  # the work really was shared
    # Each one CopyObject sent from the worker loop (worker/hot_path.py), none on a copy thread.
    started = [e for text in logs for e in json_events(text) if e["event"] == "worker_started"]
    stopped = [e for text in logs for e in json_events(text) if e["event"] == "worker_stopped"]
    assert [e["hot_path"] for e in started] == [True] * 3 and sum(e["hot_copies"] for e in stopped) == 1000

    rows = route.rows()
    assert {r["state"] for r in rows} == {"done"} and len(rows) == 1000
    assert {r["attempts"] for r in rows} == {1}
    assert {r["verified_by"] for r in rows} == {"etag"}
    client = route.stack.s3.client()

    def same(i):
        got = client.get_object(Bucket=route.new_bucket, Key=route.new(f"{i // 100}/{i}.bin"))["Body"].read()
        return got == body_for(i)

    with ThreadPoolExecutor(16) as pool:
        assert all(pool.map(same, range(1000)))

    status = json.loads(run_cli("status", "--json", env=env).stdout)
    assert (status["total"], status["done"], status["pending"], status["in_progress"], status["failed"]) == (
        1000,
        1000,
        0,
        0,
        0,
    )
    report = list(csv.DictReader(io.StringIO(run_cli("report", env=env).stdout)))
    assert len(report) == 1000
    first = report[0]
    assert {"old_bucket", "old_key", "new_bucket", "new_key", "state", "size", "attempts", "error"} <= set(first)
    assert (first["old_bucket"], first["new_bucket"], first["state"]) == (route.old_bucket, route.new_bucket, "done")
    assert first["new_key"] == route.new(first["old_key"][len(route.old_prefix) + 1 :])


def test_metadata_is_kept_on_single_and_multipart_paths(route, env):
    attrs = dict(
        ContentType="image/png",
        CacheControl="public, max-age=3600",
        ContentDisposition="attachment",
        ContentEncoding="identity",
        Metadata={"user-id": "42", "source": "legacy"},
    )
    small, large = os.urandom(50_000), os.urandom(9 * MIB + 17)
    route.put("small.png", small, **attrs)
    route.put("large.png", large, **attrs)
    seed(route)
    run_cli("worker", "--exit-when-done", env={**env, "MULTIPART_THRESHOLD": "8MiB", "MULTIPART_CHUNKSIZE": "5MiB"})
    methods = {r["old_key"].decode().rsplit("/", 1)[1]: r["copy_method"] for r in route.rows()}
    assert methods == {"small.png": "copy", "large.png": "multipart-copy"}
    for name, body in (("small.png", small), ("large.png", large)):
        got = route.read_new(name)
        assert got["Body"].read() == body
        for attr, value in attrs.items():
            assert got[attr] == value, (name, attr)


def test_the_installed_entry_point_runs():
    import subprocess
    import sys
    from pathlib import Path

    script = Path(sys.executable).parent / "movers3"
    out = subprocess.run([str(script), "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("movers3 ")


def test_status_and_report_to_a_file(route, env, tmp_path):
    route.put("=1+1.png", b"formula")
    seed(route)
    run_cli("worker", "--exit-when-done", env=env)
    out = tmp_path / "ledger.csv"
    run_cli("report", "--output", str(out), env=env)
    (row,) = list(csv.DictReader(out.open(newline="")))
    assert row["old_key"] == route.old("=1+1.png")  # the prefix comes first, so no formula guard is needed
    text = run_cli("status", env=env).stdout
    assert "done" in text and "total" in text


def test_run_all_in_one_with_samples(route, tmp_path):
    env = route.env("admin", "m3_init", LOAD_FILES="true")
    result = run_cli("run", "--workers", "2", "--count", "40", env=env, timeout=180)
    assert re.search(r"^done\s+40\s", result.stdout, re.MULTILINE), result.stdout
    assert sorted(route.new_keys()) == sorted(route.new(f"{i}.png") for i in range(1, 41))
    got = route.read_new("7.png")
    assert got["ContentType"] == "image/png" and got["Metadata"]["sample-index"] == "7"
    again = run_cli("run", "--workers", "1", env={**env, "LOAD_FILES": "false"}, timeout=120)
    assert re.search(r"^done\s+40\s", again.stdout, re.MULTILINE), again.stdout


def test_hostile_keys_migrate_exactly(route, env):
    keys = HOSTILE + [LONG, "-minus", "@at", "+plus"]
    for k in keys:
        route.put(k, body=k.encode("utf-8"), ContentType="text/plain")
    seed(route)
    run_cli("worker", "--exit-when-done", env={**env, "LOG_FORMAT": "console"})
    assert sorted(route.new_keys()) == sorted(route.new(k) for k in keys)
    for k in keys:
        assert route.read_new(k)["Body"].read() == k.encode("utf-8")
    assert route.states() == {"done": len(keys)}
    report = list(csv.DictReader(io.StringIO(run_cli("report", env=env).stdout)))
    assert sorted(r["old_key"] for r in report) == sorted(route.old(k) for k in keys)


def test_mariadb_restart_mid_run_loses_nothing(route, env, tmp_path):
    route.put_many((f"{i}.bin", body_for(i)) for i in range(3000))
    seed(route)
    worker = start_cli("worker", "--exit-when-done", env={**env, "WORKER_THREADS": "4"}, log=tmp_path / "w.log")
    wait_for(lambda: sum(r["state"] == "done" for r in route.rows()) >= 100, timeout=60, what="copies")
    route.stack.db.restart()
    assert worker.wait(240) == 0, (tmp_path / "w.log").read_text()[-3000:]
    log = (tmp_path / "w.log").read_text()
    assert "ledger_retrying" in log and "ledger_reconnected" in log
    assert route.states() == {"done": 3000}
    assert len(route.new_keys()) == 3000
