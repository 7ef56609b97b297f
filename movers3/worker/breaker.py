"""The AccessDenied breaker.

A worker whose first copies are all AccessDenied is more likely misconfigured (no PutObject on the
destination, a wrong bucket) than facing that many forbidden objects. It holds those results back
and, after LIMIT of them with no success, trips: the held rows are released unfinished (their
attempt given back) and the worker stops, instead of failing the whole ledger row by row. Once one
copy has succeeded, an AccessDenied is about that object and fails its row like any other error.
"""

from __future__ import annotations

from movers3.exceptions import CopyError
from movers3.ledger.work import Outcome

LIMIT = 10


class AccessDeniedBreaker:
    """Used by the worker loop's thread only."""

    def __init__(self, limit: int = LIMIT) -> None:
        self.limit = limit
        self.tripped = False
        self._proven = False
        self._held: list[Outcome] = []

    @property
    def held(self) -> int:
        return len(self._held)

    def admit(self, outcome: Outcome) -> list[Outcome]:
        """The outcomes to write now: none while an AccessDenied is held back, and the held ones
        with the first success (they are about their objects, then). Sets `tripped` at the limit."""
        if outcome.state == "done" and not self._proven:
            self._proven = True
            return [*self.settle(release=False), outcome]
        if outcome.state == "failed" and outcome.code == "AccessDenied" and not self._proven:
            self._held.append(outcome)
            self.tripped = self.tripped or len(self._held) >= self.limit
            return []
        return [outcome]

    def settle(self, *, release: bool) -> list[Outcome]:
        """The held failures: as they are (the worker has nothing else to try), or, with `release`
        (it tripped), back to pending with their attempt given back."""
        held, self._held = self._held, []
        if not release:
            return held
        return [Outcome(o.id, "pending", attempts=o.attempts - 1, error=o.error, token=o.token) for o in held]

    def error(self) -> CopyError:
        """What the worker stops with once the breaker has tripped."""
        return CopyError(
            f"AccessDenied on the first {self.held} copies and no success: check that the credentials "
            "may GetObject on OLD_BUCKET and PutObject on NEW_BUCKET",
            code="AccessDenied",
            retryable=False,
        )
