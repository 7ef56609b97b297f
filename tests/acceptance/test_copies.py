"""Copies that are faithful and proven, run as a user runs them: across two endpoints, large objects
resumed after a crash, memory bounded while streaming, damaged bytes caught, and `verify`."""

import hashlib
import os
import signal
import time

import pytest

from movers3.values import MIB
from tests.support.faultproxy import FaultProxy
from tests.support.helpers import STOP_BOUND_SECONDS, json_events, run_cli, signal_and_time, start_cli, wait_for

pytestmark = pytest.mark.acceptance

PART = 5 * MIB


def side(prefix, server, identity):
    key, secret = server.credentials(identity)
    return {
        f"{prefix}_URL_ENDPOINT": server.url,
        f"{prefix}_AWS_ACCESS_KEY_ID": key,
        f"{prefix}_AWS_SECRET_ACCESS_KEY": secret,
    }


def md5_of(client, bucket, key):
    digest = hashlib.md5()
    for chunk in client.get_object(Bucket=bucket, Key=key)["Body"].iter_chunks(MIB):
        digest.update(chunk)
    return digest.hexdigest()


def uploads_left(route, key=None):
    listed = route.stack.s3.client().list_multipart_uploads(Bucket=route.new_bucket, Prefix=route.new_prefix)
    return [u for u in listed.get("Uploads", []) if key is None or u["Key"] == key]


@pytest.fixture
def proxy(stack):
    proxy = FaultProxy(stack.s3.url, slow_seconds=0.6).start()
    yield proxy
    proxy.stop()


def test_a_migration_across_two_endpoints(route, moto, env):
    """moto as the source, SeaweedFS as the destination (least-privilege identity): every object streams
    through the worker, the path is recorded per object, and `verify --full` agrees afterwards."""
    client = moto.client()
    sizes = {"tiny.txt": 0, "small.png": 70_000, "part.bin": PART, "large.bin": 3 * PART + 17}
    bodies = {name: os.urandom(size) for name, size in sizes.items()}
    for name, body in bodies.items():
        client.put_object(
            Bucket=route.old_bucket, Key=route.old(name), Body=body, ContentType="image/x-test", Metadata={"name": name}
        )
    cross = {
        **env,
        **side("OLD", moto, "seeder"),
        **side("NEW", route.stack.s3, "worker"),
        "MULTIPART_THRESHOLD": "8MiB",
        "MULTIPART_CHUNKSIZE": "5MiB",
    }
    run_cli("seed", env={**cross, "MYSQL_URL": route.stack.db.role_url("m3_seeder")})
    run_cli("worker", "--exit-when-done", env=cross)
    rows = {r["old_key"].decode().rsplit("/", 1)[1]: r for r in route.rows()}
    assert {name: r["copy_method"] for name, r in rows.items()} == {
        "tiny.txt": "stream",
        "small.png": "stream",
        "part.bin": "stream",
        "large.bin": "multipart-stream",
    }
    assert {name: r["verified_by"] for name, r in rows.items()} == {
        "tiny.txt": "md5",
        "small.png": "md5",
        "part.bin": "md5",
        "large.bin": "md5+parts",
    }
    admin = route.stack.s3.client()
    for name, body in bodies.items():
        got = admin.get_object(Bucket=route.new_bucket, Key=route.new(name))
        assert got["Body"].read() == body and got["Metadata"] == {"name": name}
        assert got["ContentType"] == "image/x-test"
    verifier = {**cross, **side("NEW", route.stack.s3, "admin")}
    out = run_cli("verify", "--sample", "0", "--full", env=verifier).stdout
    assert "verified 4 done rows (full: bytes compared): 4 ok, 0 mismatched" in out


@pytest.mark.parametrize("mode", ["stream", "server"])
@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGTERM], ids=["sigkill", "sigterm"])
def test_a_large_copy_resumes_from_its_recorded_parts(route, env, proxy, tmp_path, mode, stop):
    body = os.urandom(8 * PART + 3)
    route.put("big.bin", body)
    run_cli("seed", env=route.env("seeder", "m3_seeder"))
    # Part requests (UploadPart / UploadPartCopy) are slowed down at the destination so that the worker
    # is stopped mid-object, with some parts recorded and others not.
    proxy.rules.append(("partNumber=", "slow", "PUT"))
    sides = {"NEW_URL_ENDPOINT": proxy.url} if mode == "stream" else {"URL_ENDPOINT": proxy.url}
    # LEASE_SECONDS=5 so that after the SIGKILL the next worker takes the row over soon. It is short but
    # safe on a slow machine: each worker runs alone and renews what it holds before its own rescue pass.
    worker_env = {
        **env,
        **sides,
        "COPY_MODE": mode,
        "MULTIPART_THRESHOLD": "8MiB",
        "MULTIPART_CHUNKSIZE": "5MiB",
        "PART_CONCURRENCY": "1",
        "LEASE_SECONDS": "5",
    }
    first = start_cli("worker", "--worker-id", "first", env=worker_env, log=tmp_path / "first.log")

    def parts_recorded():
        (row,) = route.rows()
        return row["upload_id"] and row["upload_parts"] and row["upload_parts"].count("[") >= 4 and row

    recorded = wait_for(parts_recorded, timeout=60, what="parts recorded in the ledger")
    code, stopped_in = signal_and_time(first, stop)
    assert code == (0 if stop == signal.SIGTERM else -signal.SIGKILL), (tmp_path / "first.log").read_text()[-3000:]
    assert stopped_in < STOP_BOUND_SECONDS, stopped_in
    (row,) = route.rows()
    assert row["upload_id"] == recorded["upload_id"], "the upload must stay recorded for the next worker"
    assert row["state"] == ("pending" if stop == signal.SIGTERM else "in_progress")

    proxy.rules.clear()
    result = run_cli("worker", "--exit-when-done", env=worker_env, timeout=120)
    resumed = [e for e in json_events(result.stdout) if e["event"] == "multipart_resumed"]
    assert len(resumed) == 1 and resumed[0]["upload_id"] == recorded["upload_id"]
    assert 0 < resumed[0]["todo"] < resumed[0]["parts"] == 9
    (done,) = route.rows()
    assert (done["state"], done["upload_id"], done["copy_method"]) == (
        "done",
        None,
        f"multipart-{'stream' if mode == 'stream' else 'copy'}",
    )
    assert done["verified_by"] == ("parts-md5" if mode == "stream" else "size+pinned")
    assert md5_of(route.stack.s3.client(), route.new_bucket, route.new("big.bin")) == hashlib.md5(body).hexdigest()
    assert uploads_left(route) == []


def test_damaged_bytes_from_the_source_fail_the_row_and_never_become_an_object(route, env, proxy):
    bodies = {
        "ok.bin": os.urandom(1000),
        "bad-small.bin": os.urandom(50_000),
        "bad-large.bin": os.urandom(2 * PART + 9),
    }
    for name, body in bodies.items():
        route.put(name, body)
    run_cli("seed", env=route.env("seeder", "m3_seeder"))
    proxy.rules.append(("bad-", "corrupt", "GET"))  # every read of the bad objects is damaged on the way
    cross = {
        **env,
        "OLD_URL_ENDPOINT": proxy.url,
        "MULTIPART_THRESHOLD": "8MiB",
        "MULTIPART_CHUNKSIZE": "5MiB",
        "MAX_ATTEMPTS": "2",
    }
    run_cli("worker", "--exit-when-done", env=cross)
    rows = {r["old_key"].decode().rsplit("/", 1)[1]: r for r in route.rows()}
    assert rows["ok.bin"]["state"] == "done"
    for name in ("bad-small.bin", "bad-large.bin"):
        assert rows[name]["state"] == "failed" and "checksum mismatch" in rows[name]["last_error"], rows[name]
        assert rows[name]["attempts"] == 2
    assert sorted(k.rsplit("/", 1)[1] for k in route.new_keys()) == ["ok.bin"]
    assert uploads_left(route) == [] and proxy.injected["corrupt"] >= 4


def test_a_server_side_copy_reported_wrong_is_a_failed_row(route, env, proxy):
    route.put("a.bin", os.urandom(2000))
    route.put("b.bin", os.urandom(2000))
    run_cli("seed", env=route.env("seeder", "m3_seeder"))
    proxy.rules.append(("b.bin", "corrupt", "PUT"))  # the CopyObject answer carries a wrong ETag
    run_cli("worker", "--exit-when-done", env={**env, "URL_ENDPOINT": proxy.url, "MAX_ATTEMPTS": "2"})
    rows = {r["old_key"].decode().rsplit("/", 1)[1]: r for r in route.rows()}
    assert rows["a.bin"]["state"] == "done" and rows["a.bin"]["verified_by"] == "etag"
    assert rows["b.bin"]["state"] == "failed" and "checksum mismatch" in rows["b.bin"]["last_error"]


def test_verify_finds_a_tampered_copy_and_retry_repairs_it(route, env):
    for i in range(5):
        route.put(f"{i}.txt", f"body {i}".encode(), ContentType="text/plain")
    run_cli("seed", env=route.env("seeder", "m3_seeder"))
    run_cli("worker", "--exit-when-done", env=env)
    admin = route.stack.s3.client()
    admin.put_object(Bucket=route.new_bucket, Key=route.new("3.txt"), Body=b"tampered", ContentType="text/plain")
    verifier = {**env, "AWS_ACCESS_KEY_ID": "admin", "AWS_SECRET_ACCESS_KEY": route.stack.s3.credentials("admin")[1]}
    result = run_cli("verify", "--sample", "0", "--mark-failed", env=verifier, check=False)
    assert result.returncode == 1
    (line,) = [x for x in result.stdout.splitlines() if x.startswith("MISMATCH")]
    assert route.new("3.txt") in line and "size" in line
    assert "5 done rows: 4 ok, 1 mismatched; 1 marked failed" in result.stdout
    run_cli("retry", env=env)
    run_cli("worker", "--exit-when-done", env=env)
    assert admin.get_object(Bucket=route.new_bucket, Key=route.new("3.txt"))["Body"].read() == b"body 3"
    assert "5 ok, 0 mismatched" in run_cli("verify", "--sample", "20", env=verifier).stdout


def test_a_one_gib_object_streams_with_bounded_memory(route, env, tmp_path):
    """The same worker settings copy a tiny object, then 1 GiB: the second run's peak RSS may exceed
    the first's by a few part sizes (STREAM_MEMORY holds four 16 MiB parts), not by the object."""
    part, size = 16 * MIB, 1024 * MIB
    settings = {
        **env,
        "COPY_MODE": "stream",
        "MULTIPART_CHUNKSIZE": "16MiB",
        "MULTIPART_THRESHOLD": "16MiB",
        "PART_CONCURRENCY": "4",
        "STREAM_MEMORY": "64MiB",
    }
    route.put("tiny.bin", b"tiny")
    run_cli("seed", env=route.env("seeder", "m3_seeder"))
    baseline = peak_rss(start_cli("worker", "--exit-when-done", env=settings, log=tmp_path / "tiny.log"))

    source = tmp_path / "big.bin"
    digest = hashlib.md5()
    with open(source, "wb") as out:
        for _ in range(size // MIB):
            chunk = os.urandom(MIB)
            digest.update(chunk)
            out.write(chunk)
    with open(source, "rb") as body:
        route.stack.s3.client().put_object(Bucket=route.old_bucket, Key=route.old("big.bin"), Body=body)
    source.unlink()
    run_cli("seed", env=route.env("seeder", "m3_seeder"))
    peak = peak_rss(start_cli("worker", "--exit-when-done", env=settings, log=tmp_path / "big.log"))

    big = [r for r in route.rows() if r["old_key"].endswith(b"big.bin")][0]
    assert (big["state"], big["copy_method"], big["verified_by"]) == ("done", "multipart-stream", "md5+parts")
    assert md5_of(route.stack.s3.client(), route.new_bucket, route.new("big.bin")) == digest.hexdigest()
    grown = peak - baseline
    print(
        f"\n1 GiB streamed: worker peak RSS {peak / MIB:.0f} MiB vs {baseline / MIB:.0f} MiB for a 4-byte object "
        f"(+{grown / MIB:.0f} MiB; parts of {part // MIB} MiB, 4 at once, STREAM_MEMORY 64 MiB)"
    )
    assert grown < 6 * part, f"streaming 1 GiB grew the worker by {grown / MIB:.0f} MiB"


def peak_rss(proc) -> int:
    """The peak resident memory of a process, read from /proc until it exits (it must exit 0)."""
    peak = 0
    while proc.poll() is None:
        peak = max(peak, _rss(proc.pid, "VmHWM") or 0)
        time.sleep(0.02)
    assert proc.returncode == 0 and peak, (proc.returncode, peak)
    return peak


def _rss(pid: int, field: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None
