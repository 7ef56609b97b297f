"""Operating a migration as its operators do: the worker as a daemon with Prometheus metrics and a
liveness signal, `status --watch`, `report --state/--format`, and the progress bar of `run`. The
installed CLI runs as separate processes against the real MariaDB and SeaweedFS."""

import json
import os
import pty
import select
import signal
import subprocess
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.faultproxy import FaultProxy
from tests.support.helpers import MOVERS3, json_events, run_cli, start_cli, wait_for
from tests.support.services import free_port

pytestmark = pytest.mark.acceptance


def seed(route):
    run_cli("seed", env=route.env("seeder", "m3_seeder"))


def put_and_lose(route, count, lost):
    """`count` objects seeded, of which the first `lost` are deleted after the seed: NoSuchKey failures."""
    route.put_many((f"{i}.bin", os.urandom(1000 + i)) for i in range(count))
    seed(route)
    client = route.stack.s3.client()
    for i in range(lost):
        client.delete_object(Bucket=route.old_bucket, Key=route.old(f"{i}.bin"))
    return sum(1000 + i for i in range(lost, count))


def get(url, timeout=5):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except (urllib.error.URLError, OSError):
        return None, ""


def scrape(port):
    status, text = get(f"http://127.0.0.1:{port}/metrics")
    if status != 200:
        return None
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def healthcheck(env, *args):
    return subprocess.run(
        [*MOVERS3, "healthcheck", *args], env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
    )


def start_metered_worker(route, env, log, slowdown: float) -> tuple[subprocess.Popen, FaultProxy, int]:
    """A worker serving its metrics on a free loopback port, its copies answered SlowDown at the given
    rate by a fault proxy (so that retries happen): the worker, the proxy and the port."""
    proxy = FaultProxy(route.stack.s3.url, rates={"slowdown": slowdown}, only_methods=("PUT",)).start()
    port = free_port()
    worker_env = {
        **env,
        "URL_ENDPOINT": proxy.url,
        "METRICS_PORT": str(port),
        "METRICS_HOST": "127.0.0.1",
        "WORKER_THREADS": "4",
        "MAX_ATTEMPTS": "10",
    }
    return start_cli("worker", env=worker_env, log=log), proxy, port


def test_metrics_are_served_while_a_worker_runs_and_agree_with_the_ledger(route, env, tmp_path):
    copied_bytes = put_and_lose(route, 200, lost=5)
    worker, proxy, port = start_metered_worker(route, env, tmp_path / "w.log", slowdown=0.15)
    try:
        wait_for(lambda: scrape(port), timeout=60, what="the metrics endpoint")
        wait_for(lambda: route.states() == {"done": 195, "failed": 5}, timeout=120, what="the migration")
        # Outcomes reach the ledger and the counters in the same flush.
        samples = wait_for(
            lambda: (s := scrape(port)) and value(s, "movers3_objects_copied_total") == 195 and s,
            timeout=30,
            what="the counters to catch up",
        )
        assert value(samples, "movers3_bytes_copied_total") == copied_bytes
        assert value(samples, "movers3_copy_failures_total", code="NoSuchKey") == 5
        assert value(samples, "movers3_copy_retries_total", code="SlowDown") == proxy.injected["slowdown"] > 0
        assert value(samples, "movers3_copy_duration_seconds_count") == 195
        assert value(samples, "movers3_copy_duration_seconds_sum") > 0
        assert value(samples, "movers3_claim_duration_seconds_count") >= 1
        assert value(samples, "movers3_rows_claimed_total") == 200
        assert value(samples, "movers3_rows_in_flight") == 0
        assert value(samples, "movers3_loop_heartbeat_age_seconds") < 60
        assert any(name == "movers3_info" for name, _ in samples)
        status, body = get(f"http://127.0.0.1:{port}/healthz")
        assert status == 200 and json.loads(body)["healthy"] is True
    finally:
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(60)
        proxy.stop()
    log = (tmp_path / "w.log").read_text()
    assert code == 0, log[-3000:]
    events = json_events(log)
    assert any(e["event"] == "metrics_serving" for e in events)
    assert get(f"http://127.0.0.1:{port}/metrics")[0] is None  # the server stopped with the worker


def test_health_turns_unhealthy_when_the_loop_is_stuck_and_recovers(route, env, tmp_path):
    """A worker blocked in the database (FLUSH TABLES WITH READ LOCK holds every write) is alive but
    stuck: its heartbeat goes stale and both the health file and /healthz say so."""
    health_file = tmp_path / "run" / "health.json"
    port = free_port()
    # LEASE_SECONDS=8: the idle worker's rescuer writes every 2 s, so it meets the lock at once.
    worker_env = {
        **env,
        "HEALTH_FILE": str(health_file),
        "HEALTH_MAX_AGE": "15",
        "LEASE_SECONDS": "8",
        "METRICS_PORT": str(port),
        "METRICS_HOST": "127.0.0.1",
    }
    check_env = {**env, "HEALTH_FILE": str(health_file), "HEALTH_MAX_AGE": "15"}
    assert healthcheck(check_env).returncode == 1  # nothing started yet
    worker = start_cli("worker", env=worker_env, log=tmp_path / "w.log")
    try:
        ok = wait_for(lambda: (r := healthcheck(check_env)).returncode == 0 and r, timeout=60, what="a healthy worker")
        assert "movers3: healthy: worker" in ok.stdout
        assert json.loads(health_file.read_text())["pid"] == worker.pid
        with route.stack.db.admin() as lock, lock.cursor() as cur:
            cur.execute("FLUSH TABLES WITH READ LOCK")
            try:
                stuck = wait_for(
                    lambda: (r := healthcheck(check_env)).returncode == 1 and r,
                    timeout=90,
                    what="the health check to see the stuck loop",
                )
                assert "is stuck" in stuck.stderr
                assert worker.poll() is None  # alive all along: only the loop is stuck
                assert wait_for(
                    lambda: get(f"http://127.0.0.1:{port}/healthz")[0] == 503, timeout=30, what="/healthz to answer 503"
                )
            finally:
                cur.execute("UNLOCK TABLES")
        wait_for(
            lambda: healthcheck(check_env, "--health-max-age", "15").returncode == 0,
            timeout=90,
            what="the worker to recover",
        )
    finally:
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(60)
    assert code == 0, (tmp_path / "w.log").read_text()[-3000:]
    gone = healthcheck(check_env)
    assert gone.returncode == 1 and "no heartbeat" in gone.stderr  # a stopped worker removes its heartbeat


def test_report_streams_only_the_failed_rows_as_json_lines(route, env, tmp_path):
    put_and_lose(route, 30, lost=3)
    run_cli("worker", "--exit-when-done", env=env)
    out = run_cli("report", "--state", "failed", "--format", "jsonl", env=env).stdout
    rows = [json.loads(line) for line in out.splitlines()]
    assert sorted(r["old_key"] for r in rows) == sorted(route.old(f"{i}.bin") for i in range(3))
    assert {r["state"] for r in rows} == {"failed"}
    assert all("NoSuchKey" in r["error"] and r["new_key"].startswith(route.new_prefix + "/") for r in rows)
    done = run_cli("report", "--state", "done", "--format", "csv", "-o", str(tmp_path / "done.csv"), env=env)
    assert "wrote 27 rows" in done.stderr
    assert len((tmp_path / "done.csv").read_text().splitlines()) == 28  # header + rows
    everything = run_cli("report", "--format", "jsonl", env=env).stdout.splitlines()
    assert len(everything) == 30


def test_status_watch_follows_the_migration_and_ends_with_it(route, env, tmp_path):
    put_and_lose(route, 150, lost=2)
    watch_json = subprocess.Popen(
        [*MOVERS3, "status", "--watch", "--json", "--interval", "0.2"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    screen = subprocess.Popen(
        [*MOVERS3, "status", "--watch", "--interval", "0.2"],
        env={**env, "COLUMNS": "100"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    first = json.loads(watch_json.stdout.readline())
    assert first["finished"] is False and first["pending"] == 150
    assert screen.poll() is None  # nothing copied yet: the watch goes on
    run_cli("worker", "--exit-when-done", env=env)
    out, err = watch_json.communicate(timeout=60)
    assert watch_json.returncode == 0, err
    last = json.loads(out.splitlines()[-1])
    assert (last["finished"], last["done"], last["failed"], last["pending"]) == (True, 148, 2, 0)
    assert last["top_errors"] == [{"code": "NoSuchKey", "count": 2}]
    out, err = screen.communicate(timeout=60)
    assert screen.returncode == 0, err
    assert "migration finished" in out
    assert "148" in out and "NoSuchKey 2" in out
    assert f"{route.old_bucket}/{route.old_prefix}/ -> {route.new_bucket}/{route.new_prefix}/" in out


def test_run_on_a_terminal_draws_a_progress_bar(route, tmp_path):
    env = route.env("admin", "m3_init", LOAD_FILES="true", LOG_FORMAT="auto", COLUMNS="120", TERM="xterm")
    master, slave = pty.openpty()
    run = subprocess.Popen(
        [*MOVERS3, "run", "--workers", "2", "--count", "40"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=slave,
        stdin=subprocess.DEVNULL,
    )
    os.close(slave)
    screen = b""
    while True:
        ready, _, _ = select.select([master], [], [], 1.0)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the terminal closed: every writer has exited
                break
            if not chunk:
                break
            screen += chunk
        elif run.poll() is not None:
            break
    os.close(master)
    stdout = run.stdout.read().decode()
    assert run.wait(120) == 0, screen.decode(errors="replace")[-3000:]
    text = screen.decode(errors="replace")
    assert "copying" in text and "40/40" in text and "100%" in text
    assert "worker_started" in text  # the workers' log lines are printed above the bar
    assert "done" in stdout and "40" in stdout  # the final status stays on stdout


def test_the_worker_logs_json_lines_on_stdout_and_data_commands_keep_stdout_clean(route, env):
    put_and_lose(route, 10, lost=1)
    worker = run_cli("worker", "--exit-when-done", env=env)
    lines = worker.stdout.splitlines()
    events = [json.loads(line) for line in lines]  # every line one JSON object: what CloudWatch parses
    assert {"worker_started", "copy_failed", "worker_stopped"} <= {e["event"] for e in events}
    assert all({"timestamp", "level", "event"} <= set(e) for e in events)
    assert worker.stderr == ""
    status = run_cli("status", "--json", env={**env, "LOG_LEVEL": "debug"})
    assert json.loads(status.stdout)["failed"] == 1  # stdout is the data alone
