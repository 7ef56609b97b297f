"""Processes the benchmark starts: every one is tracked by PID, waited on with a deadline, measured
with its own rusage (os.wait4: the process and every descendant it waited for), and stopped by PID at
the end, on an error or on Ctrl-C."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path


class BenchError(RuntimeError):
    pass


@dataclasses.dataclass
class Finished:
    name: str
    code: int
    cpu_seconds: float  # user + system, the process and its waited-for descendants
    log: Path

    def tail(self, chars: int = 2000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


class Proc:
    def __init__(self, name: str, popen: subprocess.Popen, log: Path) -> None:
        self.name = name
        self.popen = popen
        self.log = log
        self._result: tuple[int, int, object] | None = None
        self._waiter = threading.Thread(target=self._wait, daemon=True)
        self._waiter.start()

    def _wait(self) -> None:
        # wait4 reaps the child itself, so Popen must not: its returncode is set from here.
        self._result = os.wait4(self.popen.pid, 0)
        self.popen.returncode = os.waitstatus_to_exitcode(self._result[1])

    def done(self) -> bool:
        return self._result is not None

    def finish(self, deadline: float) -> Finished:
        self._waiter.join(max(0.0, deadline - time.monotonic()))
        if self._result is None:
            kill_group(self.popen.pid)
            self._waiter.join(10)
            raise BenchError(f"{self.name} did not finish in time (killed); log {self.log}")
        _, status, usage = self._result
        return Finished(self.name, os.waitstatus_to_exitcode(status), usage.ru_utime + usage.ru_stime, self.log)


class Registry:
    """Every process started, so that all of them can be stopped whatever happens."""

    def __init__(self) -> None:
        self.procs: list[Proc] = []

    def start(self, name: str, argv: Sequence[str], env: dict[str, str], log: Path, cwd: Path | None = None) -> Proc:
        out = open(log, "ab")
        try:
            popen = subprocess.Popen(
                list(argv),
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=cwd,
                start_new_session=True,
            )
        finally:
            out.close()
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.procs:
            if not proc.done():
                kill_group(proc.popen.pid)
        self.procs = [p for p in self.procs if not p.done()]


def kill_group(pid: int, grace: float = 5.0) -> None:
    """SIGTERM to the process group the benchmark started (start_new_session), SIGKILL after `grace`."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            try:
                os.killpg(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)


def run(registry: Registry, name: str, argv: Sequence[str], env: dict[str, str], log: Path, timeout: float) -> Finished:
    proc = registry.start(name, argv, env, log)
    return proc.finish(time.monotonic() + timeout)
