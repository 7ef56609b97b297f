"""`movers3 run`: one machine, all in one. The schema, optional samples, N worker processes started
as `movers3 worker --exit-when-done` (each its own process, as in production), the seed in this
process while they work, and the final status. SIGTERM/SIGINT are passed on to the workers, which
drain as usual."""

from __future__ import annotations


import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping

import structlog

from movers3.exceptions import Interrupted, Movers3Error
from movers3.ledger import Ledger
from movers3.seeder import Seeder

log = structlog.get_logger("movers3.runner")

PROGRESS_SECONDS = 5.0
# Workers drain within 25 s of SIGTERM; past this they are killed (their rows come back by lease).
KILL_AFTER_SECONDS = 30.0


class Runner:
    def __init__(self, ledger: Ledger, seeder: Seeder, *, workers: int, child_env: Mapping[str, str]) -> None:
        self.ledger = ledger
        self.seeder = seeder
        self.workers = workers
        self.child_env = dict(child_env)
        self.stopped = threading.Event()
        self.children: list[subprocess.Popen] = []

    def stop(self) -> None:
        self.stopped.set()
        self.seeder.stopped.set()
        for child in self.children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    def run(self) -> list[int]:
        """Returns the workers' exit codes."""
        command = [sys.executable, "-m", "movers3", "worker", "--exit-when-done"]
        for _ in range(self.workers):
            self.children.append(subprocess.Popen(command, env=self.child_env, stdin=subprocess.DEVNULL))
        log.info("workers_started", count=self.workers, pids=[c.pid for c in self.children])
        try:
            self.seeder.run()
        except Interrupted:
            pass
        except Movers3Error:
            self.stop()
            self._wait()
            raise
        self._wait()
        return [c.returncode for c in self.children]

    def _wait(self) -> None:
        next_progress = time.monotonic() + PROGRESS_SECONDS
        stop_seen_at: float | None = None
        while any(c.poll() is None for c in self.children):
            if self.stopped.is_set():
                stop_seen_at = stop_seen_at or time.monotonic()
                if time.monotonic() - stop_seen_at > KILL_AFTER_SECONDS:
                    for child in self.children:
                        if child.poll() is None:
                            log.error("worker_killed", pid=child.pid)
                            child.kill()
            if time.monotonic() >= next_progress:
                next_progress = time.monotonic() + PROGRESS_SECONDS
                counts = self.ledger.counts()
                log.info("run_progress", total=counts.total, **counts.rows,
                         objects_per_second=round(counts.done_last_minute / 60.0, 1))
            time.sleep(0.2)


def child_environment(environ: Mapping[str, str], overrides: Mapping[str, str]) -> dict[str, str]:
    """Workers read the same settings: the CLI flags given to `run` travel as their env variables."""
    env = dict(environ)
    env.update(overrides)
    env["LOAD_FILES"] = "false"
    return env



