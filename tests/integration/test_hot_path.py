"""The hot path (worker/hot_path.py) against the real ledger and SeaweedFS, through the fault proxy: a
plain CopyObject is sent from the worker loop and finished on awscrt's thread, and every failure of
it reaches a copy thread as the row's first try, so that retries, attempts, a changed source, a
wrong copy, a timeout and a systemic error end exactly as on the thread path."""

import threading

import pytest

from movers3.ledger.uploads import UploadJournal
from movers3.settings import load
from movers3.transfer.copier import ObjectCopier
from movers3.transfer.copy_object import CrtEngine
from movers3.worker.loop import Worker, WorkerConfig
from tests.integration.test_worker import seed
from tests.support.faultproxy import FaultProxy

pytestmark = pytest.mark.integration


class Counting:
    """The real copier, counting the copies made on copy threads (the hot path never calls `copy`)."""

    def __init__(self, inner: ObjectCopier) -> None:
        self.inner = inner
        self.copies: list[str] = []

    def copy(self, row):
        self.copies.append(row.old_key.rsplit("/", 1)[-1])
        return self.inner.copy(row)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def run_worker(route, ledger, proxy=None, *, threads=4, batch=10, max_attempts=3, **env):
    url = {"URL_ENDPOINT": proxy.url} if proxy is not None else {}
    settings = load(route.env("worker", "m3_worker", COPY_ENGINE="crt", **url, **env))
    stop = threading.Event()
    copier = Counting(ObjectCopier.from_settings(settings, UploadJournal(None, "test"), stop))
    assert isinstance(copier.engine, CrtEngine)
    config = WorkerConfig(threads, lease_seconds=60, max_attempts=max_attempts, claim_batch=batch, exit_when_done=True)
    worker = Worker(ledger, copier, config, worker_id="hot", stop_event=stop, hot_sender=copier.engine)
    stats = worker.run()
    return worker, stats, copier.copies


def by_name(route):
    return {row["old_key"].decode().rsplit("/", 1)[-1]: row for row in route.rows()}


def test_small_objects_are_copied_and_proved_without_a_copy_thread(route, ledger):
    # 150 rows: 15 claim batches of 10, through 4 requests in flight at a time.
    bodies = {f"o{i:03d}.bin": f"body {i}".encode() * (i % 7 + 1) for i in range(150)}
    route.put_many(bodies.items())
    seed(route, ledger)
    proxy = FaultProxy(route.stack.s3.url).start()
    try:
        worker, stats, copies = run_worker(route, ledger, proxy)
    finally:
        proxy.stop()
    assert copies == [] and worker.fatal is None
    assert (stats.claimed, stats.done, stats.failed, stats.lost) == (150, 150, 0, 0)
    rows = by_name(route)
    assert {(r["state"], r["attempts"], r["copy_method"], r["verified_by"]) for r in rows.values()} == {
        ("done", 1, "copy", "etag")
    }
    assert all(r["dest_etag"] == r["source_etag"] and r["checksum"] == f"md5:{r['source_etag']}" for r in rows.values())
    copy_requests = [path for method, path, headers in proxy.seen if "x-amz-copy-source" in headers]
    assert len(copy_requests) == 150
    for name, body in bodies.items():
        got = route.stack.s3.client().get_object(Bucket=route.new_bucket, Key=route.new(name))["Body"].read()
        assert got == body


@pytest.mark.parametrize("kind, code", [("slowdown", "SlowDown"), ("corrupt", "checksum mismatch")])
def test_a_failed_try_goes_on_as_the_first_of_the_threads_tries(route, ledger, kind, code):
    route.put_many([("bad.bin", b"bad"), *((f"ok{i}.bin", b"ok") for i in range(20))])
    seed(route, ledger)
    proxy = FaultProxy(route.stack.s3.url)
    proxy.rules.append(("bad.bin", kind, "PUT"))
    proxy.start()
    try:
        worker, stats, copies = run_worker(route, ledger, proxy, max_attempts=3)
    finally:
        proxy.stop()
    # The hot try, then two on a copy thread: three in all, as many as a row may have.
    assert proxy.injected[kind] == 3
    assert copies == ["bad.bin", "bad.bin"]
    rows = by_name(route)
    bad = rows.pop("bad.bin")
    assert (bad["state"], bad["attempts"]) == ("failed", 3)
    assert code in bad["last_error"] and bad["dest_etag"] is None
    assert {(r["state"], r["attempts"]) for r in rows.values()} == {("done", 1)}
    assert (stats.done, stats.failed, worker.fatal) == (20, 1, None)


def test_a_changed_source_is_read_again_and_copied_on_the_second_try(route, ledger):
    route.put("moved.bin", b"first version")
    seed(route, ledger)
    route.put("moved.bin", b"the second version, longer")
    worker, stats, copies = run_worker(route, ledger)
    (row,) = route.rows()
    assert copies == ["moved.bin"]
    assert (row["state"], row["attempts"], row["size"]) == ("done", 2, len(b"the second version, longer"))
    body = route.stack.s3.client().get_object(Bucket=route.new_bucket, Key=route.new("moved.bin"))["Body"].read()
    assert body == b"the second version, longer"


def test_a_source_gone_fails_its_row_on_the_first_try(route, ledger):
    route.put("gone.bin", b"soon gone")
    seed(route, ledger)
    route.stack.s3.client().delete_object(Bucket=route.old_bucket, Key=route.old("gone.bin"))
    worker, stats, copies = run_worker(route, ledger)
    (row,) = route.rows()
    # Permanent: the copy thread records it without a try of its own.
    assert copies == [] and (row["state"], row["attempts"]) == ("failed", 1)
    assert "NoSuchKey" in row["last_error"] and worker.fatal is None


def test_a_request_past_the_timeout_is_cancelled_and_retried(route, ledger):
    route.put_many([("stuck.bin", b"stuck"), *((f"ok{i}.bin", b"ok") for i in range(10))])
    seed(route, ledger)
    proxy = FaultProxy(route.stack.s3.url)
    proxy.rules.append(("stuck.bin", "hang", "PUT"))
    proxy.start()
    try:
        worker, stats, copies = run_worker(route, ledger, proxy, max_attempts=2, S3_TIMEOUT_SECONDS="2")
    finally:
        proxy.stop()
    rows = by_name(route)
    stuck = rows.pop("stuck.bin")
    assert proxy.injected["hang"] == 2 and copies == ["stuck.bin"]
    assert (stuck["state"], stuck["attempts"]) == ("failed", 2) and "ReadTimeoutError" in stuck["last_error"]
    assert {(r["state"], r["attempts"]) for r in rows.values()} == {("done", 1)}


def test_a_systemic_error_stops_the_worker_and_releases_its_rows(route, ledger):
    route.put_many((f"o{i}.bin", b"x") for i in range(30))
    seed(route, ledger)
    worker, stats, copies = run_worker(route, ledger, AWS_SECRET_ACCESS_KEY="not-the-secret")
    assert worker.fatal is not None and worker.fatal.code == "SignatureDoesNotMatch"
    assert "not-the-secret" not in str(worker.fatal)
    assert stats.done == 0 and stats.claimed > 0
    # Every row is back to pending with the try it was claimed for given back, none failed.
    assert {(r["state"], r["attempts"]) for r in route.rows()} == {("pending", 0)}
