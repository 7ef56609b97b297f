"""Liveness for orchestrators, without a database account: the worker loop leaves a heartbeat, and
`movers3 healthcheck` (the image's HEALTHCHECK, ECS's container health check) reads it.

The heartbeat is written by the loop itself, never by a timer thread, so it goes stale when the loop
is stuck (a hung database call, a deadlock, a frozen process), not only when the process is dead.
The loop passes at least every POLL_MAX_SECONDS while idle and every FLUSH_SECONDS while copying;
HEALTH_MAX_AGE (60 s by default) is well above both and below the ledger's reconnect window, so a
worker waiting out a short database failover stays healthy and one blocked for longer is replaced.

Ages are measured on CLOCK_MONOTONIC, which is one clock for every process of a machine (and of a
container), so a wall-clock step (NTP) never makes a live worker look stuck.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from movers3.exceptions import ConfigError
from movers3.settings import DEFAULT_HEALTH_MAX_AGE, parse_health_max_age
from movers3.worker.observer import WorkerObserver

if TYPE_CHECKING:
    from movers3.ledger.work import Outcome

# The check runs every 15-30 s in every container: it imports neither boto3, nor the database driver,
# nor structlog (which loads rich), and costs a bare interpreter start instead of ~0.6 s of CPU.
EXIT_HEALTHY, EXIT_UNHEALTHY = 0, 1
# How often the file is rewritten at most; the loop may tick far more often than that.
WRITE_EVERY_SECONDS = 2.0
DEFAULT_MAX_AGE_SECONDS = float(DEFAULT_HEALTH_MAX_AGE)
FORMAT_VERSION = 1


class Heartbeat(WorkerObserver):
    """Tracks the loop's last pass in memory (for /healthz) and, given a path, in a file (for
    `movers3 healthcheck`). The file is replaced atomically and removed when the worker stops."""

    def __init__(
        self,
        path: str | os.PathLike | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        write_every: float = WRITE_EVERY_SECONDS,
    ) -> None:
        self.path = Path(path) if path else None
        self.clock = clock
        self.write_every = write_every
        self.worker_id = ""
        self.state = "starting"
        self.in_flight = 0
        self.done = 0
        self.failed = 0
        self.last_tick = clock()
        self._last_write = float("-inf")
        self._stopped = False
        if self.path is not None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigError(
                    f"HEALTH_FILE: cannot create the folder of {str(self.path)!r}: {exc.strerror}"
                ) from None

    # -- observer hooks (worker main thread) ------------------------------------------------

    def worker_started(self, worker_id: str) -> None:
        self.worker_id = worker_id
        self._tick("starting", 0, force=True)

    def loop_tick(self, state: str, in_flight: int) -> None:
        self._tick(state, in_flight)

    def rows_finished(self, outcomes: Sequence[Outcome], written: int) -> None:
        for o in outcomes:
            if o.state == "done":
                self.done += 1
            elif o.state == "failed":
                self.failed += 1

    def worker_stopped(self) -> None:
        self._stopped = True
        self.state = "stopped"
        if self.path is not None:
            try:
                self.path.unlink(missing_ok=True)
            except OSError as exc:
                _log().warning("heartbeat_not_removed", path=str(self.path), error=exc.strerror)

    # -- reading, in process ----------------------------------------------------------------

    def age(self) -> float:
        return self.clock() - self.last_tick

    def healthy(self, max_age: float = DEFAULT_MAX_AGE_SECONDS) -> bool:
        return not self._stopped and self.age() <= max_age

    def snapshot(self) -> dict:
        return {
            "version": FORMAT_VERSION,
            "pid": os.getpid(),
            "worker": self.worker_id,
            "state": self.state,
            "in_flight": self.in_flight,
            "done": self.done,
            "failed": self.failed,
            "monotonic": self.last_tick,
            "time": datetime.now(UTC).isoformat(timespec="seconds"),
        }

    # -- writing ----------------------------------------------------------------------------

    def _tick(self, state: str, in_flight: int, *, force: bool = False) -> None:
        self.state, self.in_flight = state, in_flight
        self.last_tick = now = self.clock()
        if self.path is None or (not force and now - self._last_write < self.write_every):
            return
        self._last_write = now
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            temporary.write_text(json.dumps(self.snapshot()), encoding="utf-8")
            os.replace(temporary, self.path)
        except OSError as exc:
            # A full disk must not stop the copies; the stale file makes the check fail, which is right.
            _log().warning("heartbeat_not_written", path=str(self.path), error=exc.strerror)


@dataclasses.dataclass(frozen=True)
class Verdict:
    healthy: bool
    message: str


def check(
    path: str | os.PathLike,
    max_age: float = DEFAULT_MAX_AGE_SECONDS,
    *,
    clock: Callable[[], float] = time.monotonic,
    pid_alive: Callable[[int], bool] | None = None,
) -> Verdict:
    """Judge a heartbeat file written by another process (of the same machine or container)."""
    pid_alive = pid_alive or _pid_alive
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        beat, pid = float(data["monotonic"]), int(data["pid"])
    except FileNotFoundError:
        return Verdict(False, f"no heartbeat at {path}: the worker has not started its loop or has stopped")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return Verdict(False, f"unreadable heartbeat at {path}: {type(exc).__name__}")
    who = f"worker {data.get('worker') or pid}"
    age = clock() - beat
    if not pid_alive(pid):
        return Verdict(False, f"{who} is gone: process {pid} no longer exists")
    if age > max_age:
        return Verdict(
            False,
            f"{who} is stuck: its loop last passed {age:.0f}s ago (limit {max_age:g}s), "
            f"state {data.get('state')}, {data.get('in_flight', 0)} in flight",
        )
    return Verdict(
        True,
        f"{who} is {data.get('state')}: loop passed {age:.1f}s ago, "
        f"{data.get('in_flight', 0)} in flight, {data.get('done', 0)} done",
    )


def run(path: str | None, max_age: str | None) -> int:
    """`movers3 healthcheck`: one line and 0 or 1, whatever went wrong (Docker reserves 2)."""
    path = (path or os.environ.get("HEALTH_FILE", "")).strip()
    if not path:
        print("movers3: unhealthy: no health file given (--health-file or HEALTH_FILE)", file=sys.stderr)
        return EXIT_UNHEALTHY
    try:
        limit = parse_health_max_age(max_age or os.environ.get("HEALTH_MAX_AGE") or str(DEFAULT_HEALTH_MAX_AGE))
    except ConfigError as exc:
        print(f"movers3: unhealthy: {exc}", file=sys.stderr)
        return EXIT_UNHEALTHY
    verdict = check(path, limit)
    if verdict.healthy:
        print(f"movers3: healthy: {verdict.message}")
        return EXIT_HEALTHY
    print(f"movers3: unhealthy: {verdict.message}", file=sys.stderr)
    return EXIT_UNHEALTHY


def fast_path(args: list[str]) -> int | None:
    """`healthcheck [--health-file F] [--health-max-age N]` run without the rest of the CLI; None for
    anything else (help, other flags), which the full CLI then handles and reports."""
    if not args or args[0] != "healthcheck":
        return None
    values: dict[str, str] = {}
    rest = args[1:]
    while rest:
        flag, _, value = rest[0].partition("=")
        if flag not in ("--health-file", "--health-max-age"):
            return None
        if not value:
            if len(rest) < 2:
                return None
            value, rest = rest[1], rest[1:]
        values[flag] = value
        rest = rest[1:]
    return run(values.get("--health-file"), values.get("--health-max-age"))


def _log():
    import structlog

    return structlog.get_logger(__name__)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
