"""Failures a user meets: a worker killed mid-batch, SIGTERM, a permanent S3 error, bad configuration."""

import json
import os
import signal
import time

import pytest

from tests.support.helpers import STOP_BOUND_SECONDS, run_cli, signal_and_time, start_cli, wait_for
from tests.support.services import DATABASE

pytestmark = pytest.mark.acceptance

SECRET_MARKERS = (
    "worker-secret-0123456789",
    "worker-pass-0123456789",
    "seeder-pass-0123456789",
    "admin-secret-0123456789",
)


def seed(route):
    run_cli("seed", env=route.env("seeder", "m3_seeder"))


def in_progress_of(route, owner_prefix=""):
    return [
        r for r in route.rows() if r["state"] == "in_progress" and (r["lease_owner"] or "").startswith(owner_prefix)
    ]


def test_rows_of_a_killed_worker_are_finished_by_another_after_the_lease(route, env, tmp_path):
    route.put_many((f"{i}.bin", os.urandom(2048)) for i in range(300))
    seed(route)
    # A 5 s lease: the victim is frozen, then killed, so nothing of it needs renewing; its rows come back
    # 5 s after its last renewal.
    slow = {**env, "WORKER_THREADS": "2", "CLAIM_BATCH": "4", "LEASE_SECONDS": "5"}
    victim = start_cli("worker", "--worker-id", "victim", env=slow, log=tmp_path / "victim.log")
    # Freeze it while it holds claimed rows, then kill it: a crash with rows in flight, every time.
    wait_for(lambda: any(r["state"] == "done" for r in route.rows()), timeout=60, what="first copies")
    for _ in range(50):
        victim.send_signal(signal.SIGSTOP)
        if in_progress_of(route, "victim"):
            break
        victim.send_signal(signal.SIGCONT)
        time.sleep(0.02)
    held = {r["id"] for r in in_progress_of(route, "victim")}
    assert held, "the victim never held a row in flight"
    victim.kill()
    victim.wait(10)

    # The rescuer keeps its own claims for the rest of the run: 15 s outlasts a stall of its loop on a loaded
    # machine (a row it copied, lapsed before its outcome was written, would be claimed a third time), and
    # it still looks for expired leases every 15 / 4 s.
    rescuer = run_cli("worker", "--exit-when-done", env={**env, "LEASE_SECONDS": "15"}, timeout=120)
    assert "leases_rescued" in rescuer.stdout  # a worker logs to stdout
    rows = {r["id"]: r for r in route.rows()}
    assert {r["state"] for r in rows.values()} == {"done"}
    assert all(rows[i]["attempts"] == 2 for i in held)
    assert len(route.new_keys()) == 300


def test_sigterm_drains_and_exits_zero_in_time(route, env, tmp_path):
    route.put_many((f"{i}.bin", os.urandom(1024)) for i in range(3000))
    seed(route)
    worker = start_cli("worker", "--worker-id", "drainme", env={**env, "WORKER_THREADS": "4"}, log=tmp_path / "w.log")
    wait_for(lambda: sum(r["state"] == "done" for r in route.rows()) >= 20, timeout=60, what="copies")
    code, stopped_in = signal_and_time(worker, signal.SIGTERM)
    log = (tmp_path / "w.log").read_text()
    assert code == 0 and stopped_in < STOP_BOUND_SECONDS, (code, stopped_in, log[-3000:])
    assert "stop_requested" in log and "worker_stopped" in log
    assert not in_progress_of(route, "drainme"), "rows left in progress after a drain"
    states = route.states()
    assert states.get("pending", 0) > 0 and states.get("failed", 0) == 0  # it stopped early, lost nothing
    run_cli("worker", "--exit-when-done", env=env, timeout=180)
    assert route.states() == {"done": 3000}


def test_a_deleted_source_fails_its_row_and_retry_brings_it_back(route, env):
    for i in range(20):
        route.put(f"{i}.txt", f"body {i}".encode())
    seed(route)
    route.stack.s3.client().delete_object(Bucket=route.old_bucket, Key=route.old("7.txt"))
    run_cli("worker", "--exit-when-done", env=env)
    rows = {r["old_key"].decode(): r for r in route.rows()}
    gone = rows[route.old("7.txt")]
    assert gone["state"] == "failed" and "NoSuchKey" in gone["last_error"] and gone["attempts"] == 1
    assert sum(r["state"] == "done" for r in rows.values()) == 19
    status = json.loads(run_cli("status", "--json", env=env).stdout)
    assert (status["done"], status["failed"]) == (19, 1)
    assert "1 failed rows are pending again" in run_cli("retry", env=env).stdout
    route.put("7.txt", b"back again")
    with route.stack.db.admin(DATABASE) as conn, conn.cursor() as cur:  # the new version has a new ETag
        cur.execute("UPDATE movers3_objects SET source_etag = 'stale' WHERE state = 'pending'")
    run_cli("worker", "--exit-when-done", env=env)
    assert route.states() == {"done": 20}
    assert route.read_new("7.txt")["Body"].read() == b"back again"


@pytest.mark.parametrize(
    "change,code,needle",
    [
        ({"WORKER_THREADS": "-1"}, 2, "WORKER_THREADS"),
        ({"LEASE_SECONDS": "forever"}, 2, "LEASE_SECONDS"),
        ({"MAX_ATTEMPTS": "100000"}, 2, "MAX_ATTEMPTS"),
        ({"OLD_PREFIX": ""}, 2, "OLD_PREFIX"),
        ({"NEW_BUCKET": "legacy-s3", "NEW_PREFIX": "{old}/sub"}, 2, "NEW_BUCKET/NEW_PREFIX"),
        ({"MYSQL_URL": "mysql+pymysql://m3_worker:worker-pass-0123456789@127.0.0.1:notaport/sketch"}, 2, "MYSQL_URL"),
        ({"MYSQL_URL": "{db}", "_password": "wrong-worker-pass-0123456789"}, 3, "wrong user or password"),
        ({"MYSQL_URL": "{db}", "_database": "nosuchdb"}, 3, "nosuchdb"),
        ({"MYSQL_URL": "mysql+pymysql://m3_worker:worker-pass-0123456789@127.0.0.1:1/sketch"}, 3, "cannot reach"),
        ({"AWS_SECRET_ACCESS_KEY": "not-the-worker-secret-0123"}, 5, "SignatureDoesNotMatch"),
        ({"URL_ENDPOINT": "http://127.0.0.1:1"}, 5, "cannot list the source bucket"),
        (
            {
                "OLD_BUCKET": "no-such-bucket-here",
                "AWS_ACCESS_KEY_ID": "admin",
                "AWS_SECRET_ACCESS_KEY": "admin-secret-0123456789",
            },
            5,
            "NoSuchBucket",
        ),
        ({"OLD_BUCKET": "someone-elses-bucket"}, 5, "AccessDenied"),
    ],
)
def test_bad_configuration_is_one_line_with_a_documented_code_and_no_secret(route, env, change, code, needle):
    bad = dict(env)
    for key, value in change.items():
        if not key.startswith("_"):
            bad[key] = value.format(old=route.old_prefix, db=env["MYSQL_URL"])
    if "_password" in change:
        bad["MYSQL_URL"] = env["MYSQL_URL"].replace("worker-pass-0123456789", change["_password"])
    if "_database" in change:
        bad["MYSQL_URL"] = env["MYSQL_URL"].rsplit("/", 1)[0] + "/" + change["_database"]
    result = run_cli("worker", "--exit-when-done", env=bad, check=False, timeout=60)
    errors = [line for line in result.stderr.splitlines() if line.startswith("movers3: ")]
    assert result.returncode == code, result.stderr
    assert len(errors) == 1 and needle in errors[0], result.stderr
    assert "Traceback" not in result.stderr
    output = result.stdout + result.stderr
    for secret in SECRET_MARKERS + (change.get("_password", "-" * 8),):
        assert secret not in output


def test_missing_schema_says_run_init(route, env):
    route.stack.db.create_database("fresh")
    with route.stack.db.admin() as conn, conn.cursor() as cur:
        cur.execute("GRANT SELECT ON `fresh`.* TO 'm3_worker'@'%'")
    fresh = {**env, "MYSQL_URL": env["MYSQL_URL"].rsplit("/", 1)[0] + "/fresh"}
    result = run_cli("status", env=fresh, check=False)
    assert result.returncode == 4 and "movers3 init" in result.stderr


def test_debug_shows_the_traceback(route, env):
    bad = {**env, "MYSQL_URL": env["MYSQL_URL"].rsplit("/", 1)[0] + "/nosuchdb"}
    result = run_cli("status", "--debug", env=bad, check=False)
    assert result.returncode == 3 and "Traceback" in result.stderr
    assert "worker-pass-0123456789" not in result.stderr


def test_two_workers_given_one_worker_id_hold_rows_under_owners_of_their_own(route, env, tmp_path):
    """A copied unit file starts two workers as `--worker-id dup`: each is a lease owner of its own
    (`dup~<suffix>`), so neither renews or finishes the other's rows by name (the claim token would
    refuse it anyway)."""
    route.put_many((f"{i}.bin", os.urandom(512)) for i in range(120))
    seed(route)
    one = {**env, "WORKER_THREADS": "1", "CLAIM_BATCH": "1"}
    workers = [
        start_cli("worker", "--worker-id", "dup", "--exit-when-done", env=one, log=tmp_path / f"dup{i}.log")
        for i in range(2)
    ]
    for worker in workers:
        assert worker.wait(180) == 0
    owners = {r["lease_owner"] for r in route.rows()}
    assert {r["state"] for r in route.rows()} == {"done"}
    assert owners and all(o.startswith("dup~") and len(o) == len("dup~") + 6 for o in owners), owners
    started = [
        json.loads(line)["worker"]
        for i in range(2)
        for line in (tmp_path / f"dup{i}.log").read_text().splitlines()
        if '"worker_started"' in line
    ]
    assert len(started) == 2 and len(set(started)) == 2 and set(started) >= owners, (started, owners)
