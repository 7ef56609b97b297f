"""structlog set up once per process: JSON lines or console, with every known secret scrubbed from
every value and control characters in keys escaped so that a hostile key can't forge a log line.

Logs go to stderr, because the stdout of `status --json`, `report` and the others is data; the one
exception is `worker`, a daemon whose stdout carries nothing else, which logs to stdout as container
platforms expect (CloudWatch, `docker logs`). The CLI picks the stream."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from typing import Any, TextIO

REDACTED = "***"
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


class Redactor:
    """Replaces secret values wherever they occur in a string."""

    def __init__(self, secrets: Iterable[str]) -> None:
        # Short strings would match by accident and reveal nothing worth hiding.
        self.secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text


def escape_controls(text: str) -> str:
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)


def configure(*, format: str, level: str, secrets: Iterable[str] = (), stream: TextIO | None = None) -> None:
    # Imported here, not above: the CLI reads Redactor and escape_controls before it knows whether a
    # command runs at all (`--help`, a usage error), and structlog brings rich and asyncio with it.
    import structlog

    stream = stream or sys.stderr
    redact = Redactor(secrets)
    console = format == "console" or (format == "auto" and stream.isatty())

    def scrub(_logger: Any, _name: str, event: dict) -> dict:
        for key, value in event.items():
            if not isinstance(value, str):
                value = value if isinstance(value, (int, float, bool, type(None))) else str(value)
            if isinstance(value, str):
                value = redact(value)
                if console:
                    value = escape_controls(value)
            event[key] = value
        return event

    processors: list = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        scrub,
    ]
    if console:
        processors.append(structlog.dev.ConsoleRenderer(colors=stream.isatty()))
    else:
        processors.append(structlog.processors.JSONRenderer())
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=True,
    )
