"""Chaos: the promise that a restart finishes the job, every object ends up byte-identical under its new
key and the ledger says truthfully what happened, tested by injecting the faults for real.

The main run copies objects through a fault-injecting proxy (throttling, 500s, resets, slow answers,
timeouts) while workers are SIGKILLed at random moments and restarted, one is stopped with SIGTERM,
the seeder is killed mid-listing and restarted, and MariaDB is restarted under the workers. The others
stop large multipart copies with SIGTERM (one of them stuck in a request that never returns), spend a
row's attempts on faults that do not go away and bring it back with `retry`, and change sources under
the migration. Each prints a `CHAOS ...:` line of figures (also in chaos-figures.txt in pytest's base
temp folder, and as a junit property).

Every wait is a condition with a generous bound; the kill moments are drawn from the progress of the
run, not from the clock, so that a slow machine gets the same chaos, later.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import os
import random
import re
import signal
import threading
import time

import pymysql
import pytest

from movers3.values import MIB
from tests.support.chaos import Fleet, claims_from_log, figures_line, overlapping, timestamp
from tests.support.faultproxy import FaultProxy
from tests.support.helpers import (
    STOP_BOUND_SECONDS,
    STOP_WAIT_SECONDS,
    json_events,
    run_cli,
    signal_and_time,
    start_cli,
    wait_for,
)
from tests.support.services import DATABASE, DB_ROLES, S3_IDENTITIES

pytestmark = pytest.mark.acceptance

PART = 5 * MIB
SECRETS = [spec["secret"] for spec in S3_IDENTITIES.values()] + [password for password, _ in DB_ROLES.values()]
# A share of all requests between the workers (and the seeder) and SeaweedFS.
RATES = {"slowdown": 0.04, "internal": 0.03, "reset": 0.03, "slow": 0.04, "timeout": 0.01}
# Workers renew their leases every LEASE_SECONDS / 3 (seeders with every page they commit): 15 s leaves a
# worker 10 s for a loop stalled on this loaded 2-core machine, or for the MariaDB outage, before another
# may take its rows, so that the copies finished during the outage are still written by their own worker
# (the test expects at least one). With 6 s, a 4 s stall was enough to lose them.
LEASE_SECONDS = 15
# The main run's chaos: this many SIGKILLs of workers and one SIGTERM, each followed by a replacement.
KILLS = 8
# How long a row may stay in progress past its lease while workers live (a rescue pass runs every
# LEASE_SECONDS / 4 in each worker; a MariaDB restart adds its own length). A liveness bound, generous.
OVERDUE_BOUND_SECONDS = 90


@pytest.fixture
def report(request, tmp_path_factory, capsys):
    """Prints a figures line where `make test` shows it, and keeps it in a file and the junit XML."""
    path = tmp_path_factory.getbasetemp() / "chaos-figures.txt"

    def emit(tag: str, figures: dict) -> None:
        line = figures_line(tag, figures)
        with open(path, "a", encoding="utf-8") as out:
            out.write(line + "\n")
        request.node.user_properties.append(("chaos", line))
        with capsys.disabled():
            print(f"\n{line}\n(figures also in {path})")

    return emit


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def listing(client, bucket: str, prefix: str) -> dict[str, dict]:
    found = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
        for obj in page.get("Contents", []):
            found[obj["Key"]] = obj
    return found


def uploads_left(route) -> list[dict]:
    listed = route.stack.s3.client().list_multipart_uploads(Bucket=route.new_bucket, Prefix=route.new_prefix + "/")
    return listed.get("Uploads", [])


def query(route, sql: str, params=()) -> list[tuple]:
    with route.stack.db.admin(DATABASE) as conn, conn.cursor() as cur:
        cur.execute(sql, params)
        return list(cur.fetchall())


class LeaseWatch:
    """Samples the ledger while the run goes on: the longest time any row stayed in progress past its
    lease. Samples that fail (MariaDB restarting) are skipped."""

    def __init__(self, route) -> None:
        self.route = route
        self.worst = 0.0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> LeaseWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            try:
                ((overdue,),) = query(
                    self.route,
                    "SELECT COALESCE(MAX(TIMESTAMPDIFF(MICROSECOND, lease_expires_at, "
                    "NOW(6))), 0) FROM movers3_objects WHERE state = 'in_progress'",
                )
            except pymysql.MySQLError:
                continue
            self.samples += 1
            self.worst = max(self.worst, float(overdue) / 1e6)


def test_kills_faults_a_seeder_crash_and_a_ledger_restart_lose_nothing(route, tmp_path, report):
    seed = int(os.environ.get("CHAOS_SEED") or random.SystemRandom().randrange(1_000_000))
    rng = random.Random(seed)
    print(f"CHAOS_SEED={seed} replays this run's choices")
    small = {f"{i // 100}/{i}.bin": os.urandom(rng.randint(0, 6000)) for i in range(1200)}
    large = {f"large/{j}.bin": os.urandom(2 * PART + rng.randint(1, PART)) for j in range(4)}
    bodies = {**small, **large}
    route.put_many(small.items())
    route.put_many(large.items(), threads=4)
    total = len(bodies)

    proxy = FaultProxy(route.stack.s3.url, rates=RATES, seed=seed, slow_seconds=0.5, timeout_seconds=7).start()
    common = {"URL_ENDPOINT": proxy.url, "S3_TIMEOUT_SECONDS": "5", "MAX_ATTEMPTS": "10", "LOG_LEVEL": "debug"}
    worker_env = route.env(
        "worker-iam",
        "m3_worker",
        **common,
        WORKER_THREADS="4",
        CLAIM_BATCH="8",
        LEASE_SECONDS=str(LEASE_SECONDS),
        MULTIPART_THRESHOLD="8MiB",
        MULTIPART_CHUNKSIZE="5MiB",
        PART_CONCURRENCY="2",
    )
    seeder_env = route.env("seeder", "m3_seeder", **common, LEASE_SECONDS=str(LEASE_SECONDS), SEED_THREADS="2")
    fleet = Fleet(tmp_path, worker_env, "--exit-when-done")
    figures: dict[str, object] = {"seed": seed}
    try:
        with LeaseWatch(route) as watch:
            for _ in range(3):
                fleet.start()

            # The seeder, killed mid-listing: the listing of one folder never answers while the others
            # are committed, part by part; a new seeder takes that part over once its lease expires.
            proxy.rules.append((f"prefix={route.old_prefix}/7/", "hang", "GET"))
            seeder = start_cli("seed", env=seeder_env, log=tmp_path / "seed1.log")
            wait_for(
                lambda: query(route, "SELECT COUNT(*) FROM movers3_seed_parts WHERE state = 'finished'")[0][0] >= 3,
                timeout=120,
                what="parts of the listing committed",
            )
            seeder.send_signal(signal.SIGKILL)
            seeder.wait(30)
            first_rows = query(route, "SELECT COUNT(*) FROM movers3_objects")[0][0]
            assert 0 < first_rows < total and query(route, "SELECT state FROM movers3_seeds") == [("listing",)]
            proxy.release()
            proxy.rules.clear()
            reseeder = start_cli("seed", env=seeder_env, log=tmp_path / "seed2.log")

            chaos = run_the_chaos(route, fleet, proxy, rng, total)
            assert reseeder.wait(300) == 0, (tmp_path / "seed2.log").read_text()[-3000:]
            codes = fleet.wait_all(timeout=420)
    finally:
        fleet.stop_all()
        proxy.stop()

    # The seeder resumed the parts not committed and made exactly one row per object.
    reseed = (tmp_path / "seed2.log").read_text()
    listed, added = (int(s.replace(",", "")) for s in re.search(r"([\d,]+) listed, ([\d,]+) added", reseed).groups())
    assert added == total - first_rows and listed < total, reseed[-2000:]
    rows = route.rows()
    keys = [r["old_key"] for r in rows]
    assert len(keys) == len(set(keys)) == total

    # The chaos happened: every kill and the stop of the plan, each worker replaced; a run in which a
    # point was skipped proves less than this test says.
    assert (chaos.sigkills, chaos.sigterms, len(fleet.stopped)) == (KILLS, 1, 1), (chaos, fleet.stopped)
    assert chaos.kills_with_rows_in_flight >= KILLS // 2, chaos
    assert len(fleet.procs) >= 3 + chaos.sigkills + chaos.sigterms, sorted(fleet.procs)
    # Every worker that was not SIGKILLed exited 0; the one stopped with SIGTERM did so in time.
    assert {w: c for w, c in codes.items() if w not in fleet.killed_at} == {
        w: 0 for w in codes if w not in fleet.killed_at
    }, codes
    for worker, (sent, exited, code) in fleet.stopped.items():
        assert code == 0 and exited - sent < STOP_BOUND_SECONDS, (worker, exited - sent, code)

    # Every row done, every object byte-identical under its new key, and the ledger telling the truth.
    assert collections.Counter(r["state"] for r in rows) == {"done": total}, [
        (r["id"], r["state"], r["last_error"]) for r in rows if r["state"] != "done"
    ][:10]
    admin = route.stack.s3.client()
    old, new = listing(admin, route.old_bucket, route.old_prefix), listing(admin, route.new_bucket, route.new_prefix)
    assert sorted(new) == sorted(route.new(k) for k in bodies)
    wrong = []
    for rest, body in bodies.items():
        got = new[route.new(rest)]
        if rest in small:
            same = got["ETag"].strip('"') == md5(body) and got["Size"] == len(body)
        else:
            same = md5(admin.get_object(Bucket=route.new_bucket, Key=route.new(rest))["Body"].read()) == md5(body)
        if not same:
            wrong.append(rest)
    untruthful = [
        r["id"]
        for r in rows
        if r["source_etag"] != old[r["old_key"].decode()]["ETag"].strip('"')
        or r["size"] != old[r["old_key"].decode()]["Size"]
        or (r["copy_method"] == "copy" and r["dest_etag"] != new[r["new_key"].decode()]["ETag"].strip('"'))
    ]
    assert wrong == [] and untruthful == []

    # No row was held by two live workers at once; none stayed in progress long past its lease.
    claims = fleet.claims()
    twice = overlapping(claims)
    assert twice == [], twice[:5]
    assert watch.samples > 10 and watch.worst < OVERDUE_BOUND_SECONDS, (watch.samples, watch.worst)
    claimed_rows = {c.row for c in claims}
    assert len(claimed_rows) == total, "a row was copied without a logged claim"

    # Workers reconnected to the restarted ledger and carried on, keeping the copies they finished
    # while it was down: each was written by its worker once the ledger was back, unless the worker was
    # killed first or its lease ran out during the outage (the row then went to another worker).
    logs = {w: fleet.log(w) for w in fleet.procs}
    assert any("ledger_reconnected" in text for text in logs.values())
    assert chaos.outage is not None, "the run ended before the MariaDB restart"
    during = collections.Counter()
    for worker in fleet.procs:
        events = fleet.events(worker)
        held = claims_from_log(worker, events, fleet.killed_at.get(worker))
        for event in events:
            if event.get("event") == "object_copied" and chaos.outage[0] <= timestamp(event) <= chaos.outage[1]:
                # The claim the copy ran under: the worker's last one of the row begun before the copy
                # ended. A copy may end after that claim's lease ran out (the outage outlasted it).
                under = [c for c in held if c.row == event["row_id"] and c.start <= timestamp(event)]
                assert under, ("a copy with no claim logged before it", worker, event)
                during[under[-1].ended_by] += 1
    assert during["finished"] >= 1 and set(during) <= {"finished", "killed", "lease"}, during
    copies = collections.Counter(
        e["row_id"] for w in fleet.procs for e in fleet.events(w) if e.get("event") == "object_copied"
    )
    # Large copies went through multipart, and no incomplete upload is left that nothing records: an
    # upload can be orphaned only by a SIGKILL between CreateMultipartUpload and the ledger write after
    # it (docs/copying.md: the lifecycle rule covers that window).
    assert {r["copy_method"] for r in rows if r["old_key"].decode().startswith(route.old("large/"))} == {
        "multipart-copy"
    }
    orphans = uploads_left(route)
    assert len(orphans) <= chaos.sigkills, orphans
    for text in list(logs.values()) + [(tmp_path / "seed1.log").read_text(), reseed]:
        assert not any(secret in text for secret in SECRETS)

    injected = {kind: proxy.injected[kind] for kind in RATES}
    assert all(injected.values()), injected
    figures.update(
        {
            "objects migrated under faults": total,
            "bytes": sum(map(len, bodies.values())),
            "kills survived": chaos.sigkills + 1,
            "worker SIGKILLs (with rows in flight)": f"{chaos.sigkills} ({chaos.kills_with_rows_in_flight})",
            "seeder SIGKILLs": 1,
            "worker SIGTERMs": chaos.sigterms,
            "MariaDB restarts": 1,
            "MariaDB down (s)": round(chaos.outage[1] - chaos.outage[0], 1),
            "copies finished while it was down (written by their worker / lease ran out / killed)": (
                f"{during['finished']} / {during['lease']} / {during['killed']}"
            ),
            "faults injected": ", ".join(f"{k} {v}" for k, v in injected.items()),
            "requests forwarded": proxy.forwarded,
            "claims": len(claims),
            "rows copied again after a kill or lost lease": sum(1 for n in copies.values() if n > 1),
            "rows lost": total - len(new) + len(wrong) + sum(r["state"] != "done" for r in rows),
            "rows copied twice concurrently": len(twice),
            # Outcomes of a claim that no longer held its row (lease lost, row claimed again): refused
            # by the ledger's owner-and-token guard, each logged by the worker that sent it.
            "outcomes discarded by fencing": sum(
                e["count"]
                for w in fleet.procs
                for e in fleet.events(w)
                if e.get("event") == "results_dropped_lease_lost"
            ),
            "longest in progress past lease (s)": round(watch.worst, 1),
            "orphaned uploads": len(orphans),
        }
    )
    report("main run", figures)


@dataclasses.dataclass
class Chaos:
    sigkills: int = 0
    sigterms: int = 0
    kills_with_rows_in_flight: int = 0
    outage: tuple[float, float] | None = None  # wall-clock times around the MariaDB restart


def run_the_chaos(route, fleet: Fleet, proxy: FaultProxy, rng: random.Random, total: int) -> Chaos:
    """SIGKILLs at random points of the progress (replacements started a moment later), one SIGTERM,
    one MariaDB restart, while the workers copy through the faulty proxy."""
    points = [(rng.uniform(0.02, 0.85), "kill") for _ in range(KILLS)]
    points += [(rng.uniform(0.3, 0.6), "restart-db"), (rng.uniform(0.1, 0.7), "term")]
    points.sort()
    chaos = Chaos()
    restarts: list[float] = []  # when replacements are due
    deadline = time.monotonic() + 480

    def done() -> int:
        try:
            return query(route, "SELECT COUNT(*) FROM movers3_objects WHERE state = 'done'")[0][0]
        except pymysql.MySQLError:
            return 0

    def holders() -> list[str]:
        live = fleet.live()
        return sorted(
            w
            for (owner,) in query(route, "SELECT DISTINCT lease_owner FROM movers3_objects WHERE state = 'in_progress'")
            if (w := owner.split("~")[0]) in live
        )

    def start_due() -> None:
        while restarts and restarts[0] <= time.monotonic():
            restarts.pop(0)
            fleet.start()

    for fraction, what in points:
        while done() < fraction * total:
            assert time.monotonic() < deadline, f"no progress to {fraction:.0%} of the run"
            start_due()
            time.sleep(0.05)
        if done() >= total:
            break  # the run finished before this point
        if not fleet.live():
            if restarts:
                restarts.pop(0)
            fleet.start()
        # A worker holding rows: killing one that is still starting proves little.
        wait_for(lambda: holders() or done() >= total, timeout=120, what="a worker holding rows")
        live = fleet.live()
        if what == "kill":
            held = holders()
            victim = rng.choice(held or live)
            fleet.kill(victim)
            chaos.sigkills += 1
            chaos.kills_with_rows_in_flight += victim in held
            restarts.append(time.monotonic() + rng.uniform(0, 3))
        elif what == "term":
            # A worker at work: one still importing or checking its settings holds nothing and simply
            # dies of the signal.
            working = holders() or [w for w in live if '"rows_claimed"' in fleet.log(w)]
            if working:
                fleet.terminate(rng.choice(working), grace=STOP_WAIT_SECONDS)
                chaos.sigterms += 1
                fleet.start()
        elif done() < total:
            # Copies in flight are held at the proxy while MariaDB stops, let go once it is down, and
            # MariaDB starts again only after some of them finished: the workers must keep those copies
            # and write them once the ledger is back.
            wait_for(holders, timeout=120, what="a worker with rows in flight")
            # Workers still starting would find no ledger and exit with code 3 at once (docs/operations.md): the
            # outage is for workers at work.
            wait_for(
                lambda: all('"worker_started"' in fleet.log(w) for w in fleet.live()),
                timeout=120,
                what="every live worker connected",
            )
            # CopyObject of a small object (a multipart copy would wait on the ledger for its journal).
            rule = (re.compile(r"/\d+/\d+\.bin$"), "hang", "PUT")
            held = proxy.injected["hang"]
            proxy.hold()
            proxy.rules.append(rule)
            wait_for(lambda: proxy.injected["hang"] > held, timeout=120, what="a copy held at the proxy")
            began = time.time()
            route.stack.db.stop()
            proxy.rules.remove(rule)
            proxy.release()
            wait_for(
                lambda: any(
                    e.get("event") == "object_copied" and timestamp(e) > began
                    for w in fleet.live()
                    for e in fleet.events(w)
                ),
                timeout=120,
                interval=0.2,
                what="a copy finished while MariaDB is down",
            )
            route.stack.db.start()
            chaos.outage = (began, time.time())
    while restarts:
        start_due()
        time.sleep(0.05)
    return chaos


def test_sigterm_during_large_multipart_copies_leaves_every_upload_recorded(route, tmp_path, report):
    """Three large copies in flight, their parts slowed down, and a fourth stuck in a request that never
    returns: SIGTERM stops the worker within README's 25 s (the stuck copy is abandoned after the drain), its
    rows go back to pending with their uploads recorded, every incomplete upload at the destination is
    one a row records, and the next worker resumes them all and leaves none behind."""
    bodies = {f"big{j}.bin": os.urandom(4 * PART + 1000 * j) for j in range(3)}
    bodies["stuck.bin"] = os.urandom(2 * PART + 5)
    route.put_many(bodies.items(), threads=4)
    run_cli("seed", env=route.env("seeder", "m3_seeder"))
    proxy = FaultProxy(route.stack.s3.url, slow_seconds=2.0).start()
    # UploadPartCopy is a PUT to `key?uploadId=...&partNumber=N`: slow for all, never answered for one.
    proxy.rules += [("stuck.bin?uploadId=", "hang", "PUT"), ("&partNumber=", "slow", "PUT")]
    settings = {
        "URL_ENDPOINT": proxy.url,
        "MULTIPART_THRESHOLD": "8MiB",
        "MULTIPART_CHUNKSIZE": "5MiB",
        "PART_CONCURRENCY": "2",
        "WORKER_THREADS": "4",
        "LOG_LEVEL": "debug",
    }
    env = route.env("worker-iam", "m3_worker", **settings)
    try:
        worker = start_cli("worker", "--worker-id", "busy", env=env, log=tmp_path / "busy.log")

        def all_under_way():
            rows = route.rows()
            started = [r for r in rows if r["upload_id"]]
            parts = [r for r in started if r["upload_parts"] not in (None, "[]")]
            return len(started) == 4 and len(parts) >= 2 and not any(r["state"] == "done" for r in rows)

        wait_for(all_under_way, timeout=180, what="four multipart uploads recorded, parts under way")
        code, stopped_in = signal_and_time(worker, signal.SIGTERM)
    finally:
        proxy.release()
        proxy.stop()
    log = (tmp_path / "busy.log").read_text()
    assert code == 0 and stopped_in < STOP_BOUND_SECONDS, (code, stopped_in, log[-3000:])
    events = [e["event"] for e in json_events(log)]
    assert "copy_abandoned" in events and "worker_stopped" in events
    # Released with their uploads recorded, or finished if their last parts were already under way.
    rows = route.rows()
    released = [r for r in rows if r["state"] == "pending"]
    assert {r["state"] for r in rows} <= {"pending", "done"}, [(r["state"], r["last_error"]) for r in rows]
    assert all(r["upload_id"] for r in released) and all(r["upload_id"] is None for r in rows if r["state"] == "done")
    assert any(r["old_key"].endswith(b"stuck.bin") for r in released) and len(released) >= 2
    recorded = {r["upload_id"] for r in released}
    left = uploads_left(route)
    assert {u["UploadId"] for u in left} <= recorded, "an incomplete upload that no row records"
    # Parts under way when the signal came were let finish and recorded: some row has parts to resume.
    with_parts = {r["id"] for r in released if json.loads(r["upload_parts"] or "[]")}
    assert with_parts, [(r["id"], r["upload_parts"]) for r in released]

    result = run_cli("worker", "--exit-when-done", env={**env, "URL_ENDPOINT": route.stack.s3.url}, timeout=300)
    resumed = [e for e in json_events(result.stdout) if e["event"] == "multipart_resumed"]
    assert {e["row_id"] for e in resumed} == with_parts, (resumed, with_parts)
    rows = route.rows()
    assert {r["state"] for r in rows} == {"done"} and {r["upload_id"] for r in rows} == {None}
    admin = route.stack.s3.client()
    for name, body in bodies.items():
        assert md5(admin.get_object(Bucket=route.new_bucket, Key=route.new(name))["Body"].read()) == md5(body)
    assert uploads_left(route) == []
    report(
        "SIGTERM mid-multipart",
        {
            "large copies in flight": 4,
            "stuck in a request": 1,
            "stopped in (s)": round(stopped_in, 1),
            "uploads recorded at exit": len(recorded),
            "resumed with parts already copied": len(resumed),
            "incomplete uploads left at the end": 0,
        },
    )


def test_faults_that_do_not_go_away_fail_the_row_with_the_last_error_and_retry_brings_it_back(route, report):
    kinds = ("slowdown", "internal", "reset", "timeout")
    for i in range(12):
        route.put(f"ok-{i}.bin", os.urandom(500))
    for kind in kinds:
        route.put(f"{kind}.bin", os.urandom(700))
    run_cli("seed", env=route.env("seeder", "m3_seeder"))
    proxy = FaultProxy(route.stack.s3.url, timeout_seconds=4).start()
    proxy.rules += [(f"{kind}.bin", kind) for kind in kinds]
    env = route.env("worker-iam", "m3_worker", URL_ENDPOINT=proxy.url, MAX_ATTEMPTS="3", S3_TIMEOUT_SECONDS="2")
    try:
        run_cli("worker", "--exit-when-done", env=env, timeout=300)
    finally:
        proxy.stop()
    rows = {r["old_key"].decode().rsplit("/", 1)[1]: r for r in route.rows()}
    expected = {
        "slowdown": "SlowDown",
        "internal": "InternalError",
        "reset": "ConnectionClosedError",
        "timeout": "ReadTimeoutError",
    }
    for kind, needle in expected.items():
        row = rows[f"{kind}.bin"]
        assert (row["state"], row["attempts"]) == ("failed", 3), row
        assert needle in row["last_error"], row["last_error"]
    assert sum(r["state"] == "done" for r in rows.values()) == 12
    status = json.loads(run_cli("status", "--json", env=env).stdout)
    assert (status["done"], status["failed"]) == (12, 4)

    clean = {**env, "URL_ENDPOINT": route.stack.s3.url}
    assert "4 failed rows are pending again" in run_cli("retry", env=clean).stdout
    run_cli("worker", "--exit-when-done", env=clean)
    assert route.states() == {"done": 16}
    for kind in kinds:
        assert route.read_new(f"{kind}.bin")["ContentLength"] == 700
    report(
        "attempts spent",
        {"rows failed on faults that stayed": 4, "injected": dict(proxy.injected), "rows brought back by retry": 4},
    )


def test_sources_changed_under_the_migration_are_copied_in_the_version_that_was_read(route, tmp_path, report):
    """Overwritten after seeding (small and large), overwritten in the middle of a multipart copy, and
    deleted after seeding: the new versions are copied whole, the ledger records the ETag and size
    actually copied, the deleted one fails with NoSuchKey, and the rest are not held up."""
    admin = route.stack.s3.client()
    originals = {
        "small.bin": os.urandom(3000),
        "large.bin": os.urandom(2 * PART + 7),
        "midway.bin": os.urandom(5 * PART + 3),
        "gone.bin": os.urandom(100),
    }
    originals.update({f"other-{i}.bin": os.urandom(200) for i in range(10)})
    route.put_many(originals.items(), threads=4)
    run_cli("seed", env=route.env("seeder", "m3_seeder"))
    final = dict(originals)
    final["small.bin"], final["large.bin"] = os.urandom(4000), os.urandom(3 * PART + 11)
    for name in ("small.bin", "large.bin"):
        route.put(name, final[name])
    admin.delete_object(Bucket=route.old_bucket, Key=route.old("gone.bin"))
    del final["gone.bin"]

    proxy = FaultProxy(route.stack.s3.url).start()
    # The third part of every multipart copy waits, unanswered, until midway.bin has been overwritten.
    proxy.rules.append(("&partNumber=3", "hang", "PUT"))
    env = route.env(
        "worker-iam",
        "m3_worker",
        URL_ENDPOINT=proxy.url,
        MULTIPART_THRESHOLD="8MiB",
        MULTIPART_CHUNKSIZE="5MiB",
        PART_CONCURRENCY="1",
        LOG_LEVEL="debug",
    )
    try:
        worker = start_cli("worker", "--exit-when-done", env=env, log=tmp_path / "w.log")

        def midway_parts():
            (row,) = [r for r in route.rows() if r["old_key"].endswith(b"midway.bin")]
            return row["upload_parts"] and len(json.loads(row["upload_parts"])) == 2

        wait_for(midway_parts, timeout=120, what="two parts of midway.bin copied")
        final["midway.bin"] = os.urandom(4 * PART + 1)
        route.put("midway.bin", final["midway.bin"])
        proxy.rules.clear()
        proxy.release()
        assert worker.wait(300) == 0
    finally:
        proxy.stop()
    log = (tmp_path / "w.log").read_text()
    rows = {r["old_key"].decode().rsplit("/", 1)[1]: r for r in route.rows()}
    gone = rows.pop("gone.bin")
    assert gone["state"] == "failed" and "NoSuchKey" in gone["last_error"]
    assert {r["state"] for r in rows.values()} == {"done"}
    for name, body in final.items():
        got = admin.get_object(Bucket=route.new_bucket, Key=route.new(name))["Body"].read()
        assert md5(got) == md5(body), name
        head = admin.head_object(Bucket=route.old_bucket, Key=route.old(name))
        assert (rows[name]["source_etag"], rows[name]["size"]) == (head["ETag"].strip('"'), len(body)), name
    changed = [e for e in json_events(log) if e["event"] == "source_changed"]
    assert {e["key"].rsplit("/", 1)[1] for e in changed} >= {"small.bin", "large.bin", "midway.bin"}
    assert any(e["event"] == "multipart_restarted" for e in json_events(log))
    assert uploads_left(route) == []
    report(
        "sources changed",
        {
            "overwritten after seeding": 2,
            "overwritten mid-copy": 1,
            "deleted": 1,
            "copied in their new version": 3,
            "half-old copies": 0,
        },
    )
