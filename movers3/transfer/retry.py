"""The retry policy for copies: tenacity, exponential backoff with full jitter, retryable CopyErrors
only, bounded by the row's remaining attempts, and cut short when the worker is asked to stop (the
backoff sleeps on the stop event, so a drain never waits out a backoff)."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from typing import TypeVar

import structlog
import tenacity

from movers3.exceptions import CopyError

log = structlog.get_logger(__name__)

T = TypeVar("T")

INITIAL_BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 20.0


@dataclasses.dataclass
class Attempts:
    """How many tries a call used, filled in whether it succeeded or not."""

    used: int = 0


def call(
    fn: Callable[[], T],
    *,
    tries: int,
    stop: threading.Event,
    attempts: Attempts,
    initial: float = INITIAL_BACKOFF_SECONDS,
    maximum: float = MAX_BACKOFF_SECONDS,
    exclude: tuple[type[BaseException], ...] = (),
    on_retry: Callable[[str], None] | None = None,
) -> T:
    """Call `fn` until it succeeds, raises a permanent error (or one of `exclude`), or `tries` are
    spent; the last error is raised as it was. `on_retry` hears the error code of every failed attempt
    that will be retried."""

    def before_sleep(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        code = getattr(exc, "code", None)
        log.info("copy_retrying", attempt=state.attempt_number, error=str(exc), code=code)
        if on_retry is not None:
            on_retry(str(code or type(exc).__name__))

    def sleep(seconds: float) -> None:
        stop.wait(seconds)  # a stop ends the backoff at once

    def count(state: tenacity.RetryCallState) -> None:
        attempts.used = state.attempt_number

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception(
            lambda e: isinstance(e, CopyError) and e.retryable and not isinstance(e, exclude)
        ),
        stop=tenacity.stop_after_attempt(max(1, tries)) | tenacity.stop_when_event_set(stop),
        wait=tenacity.wait_random_exponential(multiplier=initial, max=maximum),
        sleep=sleep,
        before=count,
        before_sleep=before_sleep,
        reraise=True,
    )
    return retrying(fn)
