"""The hot path's own bookkeeping, with a sender that only records what it was asked (no S3 here:
tests/integration/test_hot_path.py runs it against SeaweedFS): at most `limit` requests in flight,
the next one started as each lands, a request past its deadline cancelled and told as a timeout, a
request that could not be sent handed to a copy thread untried."""

import queue

import structlog

from movers3.exceptions import CopyError
from movers3.ledger.work import Outcome, Row
from movers3.transfer.copier import Copied
from movers3.transfer.copy_object import CANCEL_GRACE_SECONDS, CopyRequest
from movers3.worker.hot_path import Handoff, HotPath, Landed
from movers3.worker.observer import WorkerObserver

TIMEOUT = CopyError("CopyObject: ReadTimeoutError", code="ReadTimeoutError", retryable=True)


class Sender:
    timeout = 30.0

    def __init__(self, refuse=()):
        self.started: list[str] = []
        self.cancelled: list[str] = []
        self.done: dict[str, object] = {}  # source key -> the callback awscrt would call
        self.refuse = set(refuse)

    def sends(self, request):
        return True

    def start(self, request, done):
        if request.source_key in self.refuse:
            raise ValueError("a header CopyObject cannot carry")
        self.started.append(request.source_key)
        self.done[request.source_key] = done
        return lambda: self.cancelled.append(request.source_key)

    def timed_out(self):
        return TIMEOUT


class Copier:
    def hot_request(self, row):
        return CopyRequest("old", row.old_key, row.source_etag, "new", row.new_key)

    def copied_by_copy_object(self, row, dest_etag):
        return Copied(row.size, row.source_etag, dest_etag, "copy", "etag")

    def hot_failure(self, row, error):
        return error


def rows(n):
    return [Row(i, "old", f"k{i}", "new", f"n{i}", 1, "e", attempts=1, token=7) for i in range(1, n + 1)]


def hot(sender, limit=3):
    finished: queue.SimpleQueue = queue.SimpleQueue()
    path = HotPath(
        Copier(), sender, limit=limit, finished=finished, observer=WorkerObserver(), log=structlog.get_logger()
    )
    return path, finished


def land(sender, finished, row, etag=None, error=None):
    """awscrt answers `row`'s request; what the loop then takes from its queue."""
    sender.done[row.old_key](etag, error)
    row_id, landed = finished.get_nowait()
    assert row_id == row.id
    return landed


def test_no_more_than_the_limit_in_flight_and_the_next_starts_as_one_lands():
    sender = Sender()
    path, finished = hot(sender, limit=3)
    claimed = rows(5)
    assert all(path.take(row) for row in claimed)
    assert sender.started == ["k1", "k2", "k3"]
    outcome = path.outcome(claimed[1], land(sender, finished, claimed[1], etag="e"))
    assert isinstance(outcome, Outcome) and (outcome.id, outcome.state, outcome.attempts) == (2, "done", 1)
    assert sender.started == ["k1", "k2", "k3", "k4"]
    assert path.waiting() == [claimed[4]] and path.waiting() == []


def test_a_failure_is_handed_over_with_the_try_it_cost():
    sender = Sender()
    path, finished = hot(sender)
    (row,) = rows(1)
    path.take(row)
    slow = CopyError("SlowDown", code="SlowDown", retryable=True)
    assert path.outcome(row, land(sender, finished, row, error=slow)) == Handoff(row, slow)


def test_a_request_past_its_deadline_is_cancelled_once_and_lands_as_a_timeout():
    sender = Sender()
    sender.timeout = -1.0  # every request is already late
    path, finished = hot(sender)
    first, second = rows(2)
    path.take(first)
    path.take(second)
    path.expire()
    path.expire()
    assert sender.cancelled == ["k1", "k2"]
    # The cancelled request ends with awscrt's own error; the row is told it timed out.
    cancelled = CopyError("CopyObject: awscrt: AWS_ERROR_S3_CANCELED", code="X", retryable=True)
    assert path.outcome(first, land(sender, finished, first, error=cancelled)) == Handoff(first, TIMEOUT)
    assert path.outcome(second, land(sender, finished, second, etag="e")) == Handoff(second, TIMEOUT)


def test_a_request_never_answered_after_its_cancel_is_landed_by_the_loop_and_its_late_answer_ignored():
    sender = Sender()
    sender.timeout = -(CANCEL_GRACE_SECONDS + 1)  # past its deadline and the grace after the cancel
    path, finished = hot(sender)
    (row,) = rows(1)
    path.take(row)
    path.expire()  # cancels
    assert finished.empty()
    path.expire()  # still unanswered: landed here, once
    path.expire()
    row_id, landed = finished.get_nowait()
    assert finished.empty() and row_id == row.id
    assert path.outcome(row, landed) == Handoff(row, TIMEOUT)
    # The row has gone to a copy thread (and may come back here under a new request): awscrt's late
    # answer to the old one changes nothing.
    assert path.outcome(row, land(sender, finished, row, etag="e")) is None
    path.take(row)  # the same row, claimed again: a new request, a new ticket
    assert path.outcome(row, Landed("e", None, ticket=1)) is None
    assert isinstance(path.outcome(row, land(sender, finished, row, etag="e")), Outcome)


def test_a_request_that_cannot_be_sent_goes_to_a_copy_thread_untried():
    sender = Sender(refuse={"k1"})
    path, finished = hot(sender)
    first, second = rows(2)
    assert path.take(first) and path.take(second)
    assert sender.started == ["k2"]
    row_id, landed = finished.get_nowait()
    assert row_id == 1 and path.outcome(first, landed) == Handoff(first, None)
