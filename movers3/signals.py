"""SIGTERM and SIGINT as a polite request to stop, told on a thread of ours rather than in a handler.

Python runs a signal handler on the main thread between two of its bytecodes, even inside a `with
lock:` block that thread holds. A handler that logs (structlog's PrintLogger writes under one
non-reentrant lock per file) or sets an Event (a Condition's lock) then waits forever for a lock its
own thread holds: a worker whose loop logged at the moment SIGTERM came froze, and was SIGKILLed.
So the handler does nothing; CPython's C handler writes the signal's number to a pipe
(`signal.set_wakeup_fd`), and the relay thread reads it, logs and calls back. The old handlers come
back when the block ends."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import structlog

log = structlog.get_logger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _told_elsewhere(_signum: int, _frame: object) -> None:
    """Installed so that the signal neither kills the process nor raises KeyboardInterrupt."""


def _relay(read_fd: int, callback: Callable[[], None]) -> None:
    try:
        while chunk := os.read(read_fd, 64):  # empty once the block ends and closes the other end
            for number in chunk:
                if number in STOP_SIGNALS:
                    log.info("stop_requested", signal=signal.Signals(number).name)
                    callback()
    finally:
        os.close(read_fd)


@contextmanager
def on_stop(callback: Callable[[], None]) -> Iterator[None]:
    """Calls `callback` (on the relay thread) at each SIGTERM or SIGINT received inside the block.
    Only from the main thread, as Python's signal module requires."""
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)  # the C handler must never block on a full pipe
    relay = threading.Thread(target=_relay, args=(read_fd, callback), name="signals", daemon=True)
    relay.start()
    previous = {sig: signal.signal(sig, _told_elsewhere) for sig in STOP_SIGNALS}
    previous_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        signal.set_wakeup_fd(previous_fd)
        os.close(write_fd)
        relay.join(timeout=5)
