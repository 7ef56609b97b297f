"""Tools of the chaos tests: a fleet of worker processes killed and restarted at will, the claim
history rebuilt from the workers' own logs, and the figures a run reports.

Who held a row, and when, comes from three debug events of the worker (`rows_claimed`,
`leases_renewed`, `rows_finished`) and from the kill times the test itself knows. Every bound is
taken on the safe side for a verdict of "no overlap": a claim starts when the worker logged it (after
the ledger committed it) and ends at the earliest of the moment the worker asked the ledger to write
its outcome, the moment it was killed, and the end of its lease as the worker knows it (the ledger's
own expiry is no earlier). Two claims of one row by different workers that overlap by more than the
latency of one ledger call are caught.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import subprocess
import time
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

from tests.support.helpers import MOVERS3, json_events


@dataclasses.dataclass(frozen=True)
class Claim:
    row: int
    worker: str
    start: float
    end: float
    ended_by: str  # finished | killed | lease


def timestamp(event: dict) -> float:
    return datetime.fromisoformat(event["timestamp"]).timestamp()


def ids(event: dict) -> list[int]:
    """The row ids of an event; the log scrubber turns lists into their text."""
    value = event["ids"]
    return json.loads(value) if isinstance(value, str) else list(value)


def claims_from_log(worker: str, events: Iterable[dict], killed_at: float | None = None) -> list[Claim]:
    """The claims of one worker, in the order it made them."""
    found: list[Claim] = []
    held: dict[int, list[float]] = {}  # row -> [start, lease_until]

    def close(row: int, at: float, how: str) -> None:
        start, lease_until = held.pop(row)
        if killed_at is not None and killed_at < min(at, lease_until):
            at, how = killed_at, "killed"
        if lease_until < at:
            at, how = lease_until, "lease"
        found.append(Claim(row, worker, start, max(start, at), how))

    for event in events:
        name = event.get("event")
        if name == "rows_claimed":
            at = timestamp(event)
            for row in ids(event):
                if row in held:  # never expected: a claim of a row this worker still holds
                    close(row, at, "lease")
                held[row] = [at, float(event["lease_until"])]
        elif name == "leases_renewed":
            for row in ids(event):
                if row in held:
                    held[row][1] = max(held[row][1], float(event["lease_until"]))
        elif name == "rows_finished":
            for row in ids(event):
                if row in held:
                    close(row, float(event["asked"]), "finished")
    for row in list(held):
        close(row, math.inf, "lease")
    return found


def overlapping(claims: Iterable[Claim]) -> list[tuple[Claim, Claim]]:
    """Pairs of claims of one row, by different workers, whose holding intervals overlap."""
    by_row: dict[int, list[Claim]] = {}
    for claim in claims:
        by_row.setdefault(claim.row, []).append(claim)
    pairs = []
    for row_claims in by_row.values():
        row_claims.sort(key=lambda c: c.start)
        for i, a in enumerate(row_claims):
            for b in row_claims[i + 1 :]:
                if b.start >= a.end:
                    continue
                if a.worker != b.worker:
                    pairs.append((a, b))
    return pairs


class Fleet:
    """Worker processes by id; each writes its own log. Kill times are recorded before the signal is
    sent, so that they are never later than the death they stand for."""

    def __init__(self, logs: Path, env: dict[str, str], *args: str) -> None:
        self.logs = logs
        self.env = env
        self.args = args
        self.procs: dict[str, subprocess.Popen] = {}
        self.killed_at: dict[str, float] = {}
        self.stopped: dict[str, tuple[float, float, int]] = {}  # SIGTERM sent, exited, code
        self._count = 0

    def start(self, prefix: str = "w") -> str:
        self._count += 1
        worker = f"{prefix}{self._count:02d}"
        out = open(self.logs / f"{worker}.log", "wb")
        self.procs[worker] = subprocess.Popen(
            [*MOVERS3, "worker", "--worker-id", worker, *self.args],
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        out.close()
        return worker

    def live(self) -> list[str]:
        return [w for w, p in self.procs.items() if p.poll() is None]

    def kill(self, worker: str) -> None:
        self.killed_at[worker] = time.time()
        os.kill(self.procs[worker].pid, signal.SIGKILL)
        self.procs[worker].wait(30)

    def terminate(self, worker: str, grace: float) -> int:
        """SIGTERM, then wait up to `grace` seconds; returns the exit code (killed if it overstays)."""
        sent = time.monotonic()
        self.procs[worker].send_signal(signal.SIGTERM)
        try:
            code = self.procs[worker].wait(grace)
        except subprocess.TimeoutExpired:
            self.kill(worker)
            code = self.procs[worker].returncode
        self.stopped[worker] = (sent, time.monotonic(), code)
        return code

    def wait_all(self, timeout: float) -> dict[str, int]:
        deadline = time.monotonic() + timeout
        for worker, proc in self.procs.items():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.kill(worker)
        return {w: p.returncode for w, p in self.procs.items()}

    def stop_all(self) -> None:
        for worker in self.live():
            self.kill(worker)

    def log(self, worker: str) -> str:
        return (self.logs / f"{worker}.log").read_text(errors="replace")

    def events(self, worker: str) -> list[dict]:
        """The worker's events, every line of its log one (json_events). Only a worker still running
        (asked before its log is read) or SIGKILLed may have left its last line half-written."""
        torn = self.procs[worker].poll() is None or worker in self.killed_at
        return json_events(self.log(worker), torn_tail=torn)

    def claims(self) -> list[Claim]:
        return [c for w in self.procs for c in claims_from_log(w, self.events(w), self.killed_at.get(w))]


def figures_line(tag: str, figures: dict[str, object]) -> str:
    return f"CHAOS {tag}: " + "; ".join(f"{k}={v}" for k, v in figures.items())
