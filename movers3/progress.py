"""Periods a loop polls (`Every`), and the progress of a long command (`verify`, `delete-source`):
one `progress` log event every
PROGRESS_SECONDS with the counts so far and the rate, and one at the end, so that a run over millions
of rows shows it is moving (and how fast) on a terminal, in a container log or in CloudWatch."""

from __future__ import annotations

import time

import structlog

PROGRESS_SECONDS = 10.0


class Every:
    """A period polled by a loop: due once per `seconds`, the first time after `first` seconds."""

    def __init__(self, seconds: float, *, first: float) -> None:
        self.seconds = seconds
        self._next = time.monotonic() + first

    def due(self, now: float) -> bool:
        if now < self._next:
            return False
        self._next = now + self.seconds
        return True


class Progress:
    def __init__(self, command: str) -> None:
        self.log = structlog.get_logger(__name__).bind(command=command)
        self._period = Every(PROGRESS_SECONDS, first=PROGRESS_SECONDS)
        self._started = time.monotonic()

    def tick(self, rows: int, **counts: int) -> None:
        """`rows` done so far; logs when a period has passed since the last line."""
        now = time.monotonic()
        if self._period.due(now):
            self._line("progress", rows, now, counts)

    def done(self, rows: int, **counts: int) -> None:
        self._line("progress_final", rows, time.monotonic(), counts)

    def _line(self, event: str, rows: int, now: float, counts: dict[str, int]) -> None:
        elapsed = max(now - self._started, 1e-9)
        self.log.info(event, rows=rows, **counts, rows_per_second=round(rows / elapsed, 1), seconds=round(elapsed, 1))
