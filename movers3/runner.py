"""`movers3 run`: one machine, all in one. The schema, N worker processes started as `movers3 worker
--exit-when-done` (each its own process, as in production) as soon as the schema and the seed round
exist, optional samples, the seed in this process while they work, and the final status.
SIGTERM/SIGINT are passed on to the workers, which drain as usual.

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

from movers3.exceptions import Interrupted

if TYPE_CHECKING:
    from types import TracebackType

    from movers3.ledger.reads import Reads
    from movers3.seed.seeder import Seeder
    from movers3.watch import RunProgress

log = structlog.get_logger(__name__)

PROGRESS_SECONDS = 5.0
BAR_SECONDS = 1.0
# Workers drain within 25 s of SIGTERM; past this they are killed (their rows come back by lease).
KILL_AFTER_SECONDS = 30.0


class Runner:
    """The workers, started on entering (`with runner:`), and the seed run beside them by run(). An
    error on the way (the samples, the seed) stops the workers and waits for them before it goes on."""

    def __init__(self, reads: Reads, *, workers: int, child_env: Mapping[str, str], piped: bool = False) -> None:
        self.reads = reads
        self.workers = workers
        self.child_env = dict(child_env)
        self.piped = piped  # the workers' output read here, for the progress bar
        self.seeder: Seeder | None = None
        self.progress: RunProgress | None = None
        self.stopped = threading.Event()
        self.children: list[subprocess.Popen] = []
        self._readers: list[threading.Thread] = []

    def __enter__(self) -> Runner:
        command = [sys.executable, "-m", "movers3", "worker", "--exit-when-done"]
        for index in range(self.workers):
            env = worker_environment(self.child_env, index)
            if not self.piped:
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
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, _tb: TracebackType | None
    ) -> None:
        if error is not None:
            self.progress = None  # closed by now
            self.stop()
            self._wait()

    def stop(self) -> None:
        self.stopped.set()
        if self.seeder is not None:
            self.seeder.stopped.set()
        for child in self.children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    def run(self, seeder: Seeder, progress: RunProgress | None = None) -> list[int]:
        """Seed, then wait for the workers; returns their exit codes."""
        self.seeder, self.progress = seeder, progress
        if self.stopped.is_set():  # stopped before the seeder was there to tell
            seeder.stopped.set()
        try:
            seeder.run()
        except Interrupted:
            pass
        self._wait()
        for reader in self._readers:
            reader.join(5)
        if progress is not None:
            progress.update(self.reads.counts())
        return [c.returncode for c in self.children]

    def _forward(self, child: subprocess.Popen) -> None:
        if child.stdout is None:  # started with a pipe only when piped
            return
        for line in child.stdout:
            # Before the bar is drawn there is nothing to tear: a line goes straight to stderr.
            progress = self.progress
            if progress is None:
                print(line, end="", file=sys.stderr, flush=True)
            else:
                progress.print(line.rstrip("\n"))

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
