"""The worker loop against the real ledger and the real S3 server."""

import threading
import time

import pytest

from movers3.ledger.seeds import Seeds
from movers3.ledger.work import WorkQueue
from movers3.transfer import s3
from movers3.transfer.copier import ObjectCopier
from movers3.ledger.db import Database
from movers3.ledger.uploads import UploadJournal
from movers3.seed.seeder import Seeder
from movers3.settings import load
from movers3.worker.loop import Worker, WorkerConfig

pytestmark = pytest.mark.integration


class SlowCopier:
    """The real copier, made slower than the lease so that only renewals keep the row."""

    def __init__(self, inner, seconds):
        self.inner, self.seconds = inner, seconds

    def copy(self, row):
        time.sleep(self.seconds)
        return self.inner.copy(row)

    def describe_source(self, row):
        return self.inner.describe_source(row)

    def abandon(self, row):
        return self.inner.abandon(row)


def seed(route, ledger):
    settings = load(route.env("seeder", "m3_seeder"))
    Seeder(Seeds(Database(settings.mysql)), s3.client(settings.source), settings).run()


def test_leases_are_renewed_during_a_copy_longer_than_the_lease(route, ledger):
    route.put("slow.bin", b"slow")
    seed(route, ledger)
    settings = load(route.env("worker", "m3_worker"))
    copier = SlowCopier(ObjectCopier.from_settings(settings, UploadJournal(None, "test"), threading.Event()), seconds=8)
    config = WorkerConfig(threads=1, lease_seconds=5, max_attempts=3, claim_batch=1, exit_when_done=True)
    worker = Worker(ledger, copier, config, worker_id="slowpoke")
    rescuer = WorkQueue(Database(settings.mysql))
    rescued = []
    done = threading.Event()

    def rescue_loop():
        while not done.is_set():
            rescued.append(rescuer.rescue_expired(max_attempts=3))
            time.sleep(0.5)

    thread = threading.Thread(target=rescue_loop)
    thread.start()
    try:
        stats = worker.run()
    finally:
        done.set()
        thread.join(10)
    assert stats.done == 1 and stats.lost == 0
    assert all(r == (0, 0) for r in rescued) and len(rescued) >= 10
    (row,) = route.rows()
    assert (row["state"], row["attempts"], row["lease_owner"]) == ("done", 1, "slowpoke")
