"""The worker's pure pieces: the AccessDenied breaker, the completer's batching (with a stand-in for
the ledger; the real one is in tests/integration) and a copy task's outcome when the ledger is down."""

import threading

import structlog

from movers3.exceptions import LedgerUnavailable
from movers3.ledger.work import Outcome, Row
from movers3.worker import completer
from movers3.worker.breaker import AccessDeniedBreaker
from movers3.worker.completer import Completer, Stats
from movers3.worker.copy_task import CopyTask
from movers3.worker.observer import WorkerObserver


def denied(row_id: int) -> Outcome:
    return Outcome(row_id, "failed", attempts=2, error="CopyObject: AccessDenied: no", code="AccessDenied")


def test_access_denied_is_held_until_the_first_success_then_written_as_failed():
    breaker = AccessDeniedBreaker(limit=3)
    assert breaker.admit(denied(1)) == [] and breaker.admit(denied(2)) == []
    done = Outcome(3, "done", attempts=1)
    assert breaker.admit(done) == [denied(1), denied(2), done]
    # Proven: from now on an AccessDenied is about its object.
    assert breaker.admit(denied(4)) == [denied(4)] and not breaker.tripped


def test_the_breaker_trips_at_its_limit_and_releases_the_held_rows_with_their_attempt_back():
    breaker = AccessDeniedBreaker(limit=3)
    for row_id in (1, 2):
        breaker.admit(denied(row_id))
        assert not breaker.tripped
    breaker.admit(denied(3))
    assert breaker.tripped and breaker.held == 3
    released = breaker.settle(release=True)
    assert [(o.id, o.state, o.attempts) for o in released] == [(1, "pending", 1), (2, "pending", 1), (3, "pending", 1)]
    assert breaker.settle(release=True) == []


def test_other_failures_pass_the_breaker_at_once():
    breaker = AccessDeniedBreaker(limit=3)
    other = Outcome(1, "failed", attempts=5, code="NoSuchKey")
    assert breaker.admit(other) == [other] and breaker.settle(release=False) == []


class FakeWork:
    """Writes every outcome of a row it 'owns' (an even id), as the guarded finish does."""

    def __init__(self):
        self.finished: list[list[int]] = []
        self.fail_next = False

    def finish(self, owner, outcomes):
        if self.fail_next:
            self.fail_next = False
            raise ConnectionError("ledger down")
        self.finished.append([o.id for o in outcomes])
        return sum(1 for o in outcomes if o.id % 2 == 0)


def make_completer(work, stats=None):
    return Completer(work, "w1", stats or Stats(), WorkerObserver(), None, structlog.get_logger())


def test_outcomes_wait_for_a_batch_and_count_only_what_the_ledger_wrote():
    work, stats = FakeWork(), Stats()
    batch = make_completer(work, stats)
    batch.add([Outcome(2, "done", 1, size=10), Outcome(3, "done", 1, size=20), Outcome(4, "failed", 5)])
    assert not batch.due()  # young and few
    batch.flush()
    assert work.finished == [[2, 3, 4]]
    assert (stats.done, stats.failed, stats.bytes, stats.lost) == (2, 1, 30, 1)
    batch.flush()
    assert work.finished == [[2, 3, 4]]  # nothing left: no empty write


def test_a_full_or_old_batch_is_due():
    batch = make_completer(FakeWork())
    batch.add([Outcome(i * 2, "done", 1) for i in range(completer.FLUSH_ROWS)])
    assert batch.due()
    old = make_completer(FakeWork())
    old.add([Outcome(2, "done", 1)])
    old._oldest -= completer.FLUSH_SECONDS
    assert old.due()


def test_outcomes_ride_on_a_claim_and_wait_again_when_the_write_fails():
    work = FakeWork()
    batch = make_completer(work)
    batch.add([Outcome(2, "done", 1)])
    work.fail_next = True
    try:
        batch.write_with(lambda outcomes: (["rows"], work.finish("w1", outcomes)))
    except ConnectionError:
        pass
    else:
        raise AssertionError("the failed write must raise")
    batch.add([Outcome(4, "done", 1)])
    rows = batch.write_with(lambda outcomes: (["rows"], work.finish("w1", outcomes)))
    assert rows == ["rows"] and work.finished == [[2, 4]]  # kept, in order, nothing lost


class LedgerDown:
    """A copier whose upload journal could not write through a ledger outage."""

    def copy(self, row):
        raise LedgerUnavailable("cannot reach the ledger database at mysql://w@db/sketch (error 2003)")


def test_a_copy_stopped_by_a_ledger_outage_goes_back_pending_with_its_try():
    stopped = threading.Event()
    task = CopyTask(
        LedgerDown(),
        max_attempts=5,
        stopped=stopped,
        observer=WorkerObserver(),
        on_fatal=lambda exc, log: stopped.set(),
        log=structlog.get_logger(),
    )
    row = Row(7, "old", "images/a", "new", "avatar/a", 5 * 2**20, "e" * 32, attempts=3, token=11)
    outcome = task(row)
    # Not failed as a bug: released, the claim's attempt given back, and the worker not stopped.
    assert (outcome.id, outcome.state, outcome.attempts, outcome.token) == (7, "pending", 2, 11)
    assert "cannot reach the ledger" in outcome.error and not stopped.is_set()
