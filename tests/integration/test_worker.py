"""The worker loop against the real ledger and the real S3 server."""

import threading

import pytest

from movers3.ledger.db import Database
from movers3.ledger.seeds import Seeds
from movers3.ledger.uploads import UploadJournal
from movers3.ledger.work import WorkQueue
from movers3.seed.seeder import Seeder
from movers3.settings import load
from movers3.transfer import s3
from movers3.transfer.copier import ObjectCopier
from movers3.worker.loop import Worker, WorkerConfig
from tests.support.helpers import wait_for
from tests.support.services import DATABASE

pytestmark = pytest.mark.integration


def admin_one(route, sql, params=None):
    with route.stack.db.admin(DATABASE) as conn, conn.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchone()


class HeldCopier:
    """The real copier, held until the lease its row had when the copy began has run out (by the
    server's clock) and a rescuer has looked at the row twice since: a copy longer than the lease by
    construction, not by a sleep that a loaded machine may stretch or squeeze."""

    def __init__(self, inner, route, rescued):
        self.inner, self.route, self.rescued = inner, route, rescued
        self.seen = None

    def copy(self, row):
        (lease_end,) = admin_one(self.route, "SELECT lease_expires_at FROM movers3_objects WHERE id = %s", (row.id,))
        wait_for(
            lambda: admin_one(self.route, "SELECT NOW(6) > %s", (lease_end,))[0],
            timeout=120,
            interval=0.2,
            what="the lease the copy began with to run out",
        )
        passes = len(self.rescued)
        wait_for(lambda: len(self.rescued) >= passes + 2, timeout=60, what="two rescue passes after that")
        self.seen = admin_one(
            self.route,
            "SELECT state, lease_owner, lease_expires_at > NOW(6) FROM movers3_objects WHERE id = %s",
            (row.id,),
        )
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
    rescuer = WorkQueue(Database(settings.mysql))
    rescued = []
    copier = HeldCopier(
        ObjectCopier.from_settings(settings, UploadJournal(None, "test"), threading.Event()), route, rescued
    )
    # 10 s, not the minimum 5: renewals come every lease/3, so the row is lost only if one is more than
    # 6.7 s late, which a loaded 2-core machine should never do to the worker's main thread.
    config = WorkerConfig(threads=1, lease_seconds=10, max_attempts=3, claim_batch=1, exit_when_done=True)
    worker = Worker(ledger, copier, config, worker_id="slowpoke")
    done = threading.Event()

    def rescue_loop():  # another worker's rescuer, as eager as it gets
        while not done.is_set():
            rescued.append(rescuer.rescue_expired(max_attempts=3))
            done.wait(0.2)

    thread = threading.Thread(target=rescue_loop)
    thread.start()
    try:
        stats = worker.run()
    finally:
        done.set()
        thread.join(10)
    # Past the lease it began with, the row was still the worker's, with a lease renewed into the future.
    assert copier.seen == ("in_progress", "slowpoke", 1)
    assert stats.done == 1 and stats.lost == 0
    assert all(r == (0, 0) for r in rescued) and len(rescued) >= 2
    (row,) = route.rows()
    assert (row["state"], row["attempts"], row["lease_owner"]) == ("done", 1, "slowpoke")
