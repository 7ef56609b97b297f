"""`movers3 run`: one machine, all in one. The schema, optional samples, N worker processes started
as `movers3 worker --exit-when-done` (each its own process, as in production), the seed in this
process while they work, and the final status. SIGTERM/SIGINT are passed on to the workers, which
drain as usual.

The workers' logs go to this process's stderr (its stdout is the final status). On a terminal a
progress bar is drawn instead, and the workers' log lines are read here and printed above it, since
lines written straight to the terminal would tear the bar."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

import structlog

from movers3.exceptions import Interrupted, Movers3Error
from movers3.ledger.reads import Reads
from movers3.seed.seeder import Seeder

if TYPE_CHECKING:
    from movers3.watch import RunProgress

log = structlog.get_logger(__name__)

PROGRESS_SECONDS = 5.0
BAR_SECONDS = 1.0
# Workers drain within 25 s of SIGTERM; past this they are killed (their rows come back by lease).
KILL_AFTER_SECONDS = 30.0


class Runner:
    def __init__(
        self,
        reads: Reads,
        seeder: Seeder,
        *,
        workers: int,
        child_env: Mapping[str, str],
        progress: RunProgress | None = None,
    ) -> None:
        self.reads = reads
        self.seeder = seeder
        self.workers = workers
        self.child_env = dict(child_env)
        self.progress = progress
        self.stopped = threading.Event()
        self.children: list[subprocess.Popen] = []
        self._readers: list[threading.Thread] = []

    def stop(self) -> None:
        self.stopped.set()
        self.seeder.stopped.set()
        for child in self.children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    def run(self) -> list[int]:
        """Returns the workers' exit codes."""
        command = [sys.executable, "-m", "movers3", "worker", "--exit-when-done"]
        for index in range(self.workers):
            env = worker_environment(self.child_env, index)
            if self.progress is None:
                self.children.append(subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=sys.stderr))
                continue
            child = subprocess.Popen(
                command,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                errors="replace",
            )
            self.children.append(child)
            reader = threading.Thread(target=self._forward, args=(child,), daemon=True, name=f"log-{index}")
            reader.start()
            self._readers.append(reader)
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
        for reader in self._readers:
            reader.join(5)
        if self.progress is not None:
            self.progress.update(self.reads.counts())
        return [c.returncode for c in self.children]

    def _forward(self, child: subprocess.Popen) -> None:
        if child.stdout is None or self.progress is None:  # started only with a pipe and a progress bar
            return
        for line in child.stdout:
            self.progress.print(line.rstrip("\n"))

    def _wait(self) -> None:
        next_progress = time.monotonic() + (BAR_SECONDS if self.progress else PROGRESS_SECONDS)
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
                counts = self.reads.counts()
                if self.progress is not None:
                    next_progress = time.monotonic() + BAR_SECONDS
                    self.progress.update(counts)
                else:
                    next_progress = time.monotonic() + PROGRESS_SECONDS
                    log.info(
                        "run_progress",
                        total=counts.total,
                        **counts.rows,
                        objects_per_second=round(counts.objects_per_second, 1),
                    )
            time.sleep(0.2)


def child_environment(environ: Mapping[str, str], overrides: Mapping[str, str]) -> dict[str, str]:
    """Workers read the same settings: the CLI flags given to `run` travel as their env variables."""
    env = dict(environ)
    env.update(overrides)
    env["LOAD_FILES"] = "false"
    return env


def worker_environment(env: Mapping[str, str], index: int) -> dict[str, str]:
    """One worker's environment: each gets its own metrics port (METRICS_PORT, +1, +2, ...), and none
    writes a health file, which is for one worker per container."""
    env = dict(env)
    port = env.get("METRICS_PORT", "").strip()
    if port.isdigit() and int(port) > 0:
        env["METRICS_PORT"] = str(int(port) + index)
    env["HEALTH_FILE"] = ""
    return env
