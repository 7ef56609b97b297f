"""The claim history the chaos tests rebuild from worker logs: it must catch a row held by two live
workers at once, and must not call a proper rescue an overlap."""

from datetime import UTC, datetime

from tests.support.chaos import claims_from_log, overlapping


def at(seconds: float) -> str:
    return datetime.fromtimestamp(1_800_000_000 + seconds, UTC).isoformat().replace("+00:00", "Z")


def t(seconds: float) -> float:
    return 1_800_000_000 + seconds


def claimed(seconds, ids, lease):
    return {"event": "rows_claimed", "timestamp": at(seconds), "ids": str(ids), "lease_until": t(seconds + lease)}


def finished(seconds, ids):
    return {
        "event": "rows_finished",
        "timestamp": at(seconds + 0.01),
        "ids": ids,
        "asked": t(seconds),
        "written": len(ids),
    }


def renewed(seconds, ids, lease):
    return {"event": "leases_renewed", "timestamp": at(seconds), "ids": ids, "lease_until": t(seconds + lease)}


def test_a_rescue_after_a_kill_is_not_an_overlap():
    a = claims_from_log("a", [claimed(0, [1, 2], 5)], killed_at=t(1))
    b = claims_from_log("b", [claimed(6, [1, 2], 5), finished(7, [1, 2])])
    assert [c.ended_by for c in a] == ["killed", "killed"]
    assert overlapping(a + b) == []


def test_a_release_then_a_claim_by_another_is_not_an_overlap():
    a = claims_from_log("a", [claimed(0, [1], 5), finished(1, [1])])
    b = claims_from_log("b", [claimed(1.2, [1], 5), finished(2, [1])])
    assert overlapping(a + b) == []


def test_a_row_claimed_while_another_live_worker_holds_it_is_caught():
    a = claims_from_log("a", [claimed(0, [1, 2], 5), renewed(3, [1, 2], 5), finished(7, [1, 2])])
    b = claims_from_log("b", [claimed(6, [2], 5), finished(6.5, [2])])  # row 2's lease ran to t=8
    pairs = overlapping(a + b)
    assert [(x.row, x.worker, y.worker) for x, y in pairs] == [(2, "a", "b")]


def test_a_lease_that_ran_out_ends_the_claim_even_if_the_worker_lives_on():
    a = claims_from_log("a", [claimed(0, [1], 5), finished(9, [1])])  # stalled: no renewal
    b = claims_from_log("b", [claimed(5.5, [1], 5), finished(6, [1])])
    assert a[0].ended_by == "lease" and a[0].end == t(5)
    assert overlapping(a + b) == []


def test_a_kill_does_not_end_a_claim_before_it_was_finished():
    a = claims_from_log("a", [claimed(0, [1], 5), finished(1, [1])], killed_at=t(3))
    assert (a[0].ended_by, a[0].end) == ("finished", t(1))
