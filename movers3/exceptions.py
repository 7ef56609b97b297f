"""Our own error types: every boundary (settings, database, S3) raises one of these, and the CLI
turns them into one line and an exit code. Messages never carry a secret: they are built from
names, hosts and codes, and `cli` scrubs known secret values once more before printing."""

from __future__ import annotations

# Exit codes, documented in README ("Exit codes"). A command that finished its work exits 0 even when
# it logged warnings (a seed's skipped keys); 1 is kept for rows that failed or need a decision.
EXIT_OK = 0
EXIT_FAILED_ROWS = 1
EXIT_CONFIG = 2
EXIT_LEDGER = 3
EXIT_SCHEMA = 4
EXIT_STORAGE = 5
# An exception that is none of ours: a bug. sysexits.h's EX_SOFTWARE, so that no orchestrator or
# script mistakes it for failed rows, and so that it is told apart from every code above.
EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130


class Movers3Error(Exception):
    """movers3 failed."""

    exit_code = EXIT_FAILED_ROWS

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.__doc__)


class ConfigError(Movers3Error):
    """Invalid configuration."""

    exit_code = EXIT_CONFIG


class LedgerError(Movers3Error):
    """The ledger database failed."""

    exit_code = EXIT_LEDGER


class LedgerUnavailable(LedgerError):
    """The ledger database cannot be reached."""


class LedgerConflict(LedgerError):
    """A ledger transaction was rolled back by a deadlock or lock timeout."""


class DuplicateKey(LedgerError):
    """A write would give a unique key (an old route, a new route) a second row."""


class SchemaError(LedgerError):
    """The ledger schema is missing or out of date: run `movers3 init`."""

    exit_code = EXIT_SCHEMA


class StorageError(Movers3Error):
    """An S3 request failed."""

    exit_code = EXIT_STORAGE


class CopyError(StorageError):
    """Copying one object failed.

    `retryable` sorts the failure: throttling, 5xx, timeouts and resets are worth another try;
    NoSuchKey, AccessDenied and the like fail the row at once."""

    def __init__(self, message: str, *, code: str, retryable: bool) -> None:
        super().__init__(message)
        self.code = code
        self.retryable = retryable


class SourceChanged(CopyError):
    """The source object changed since it was listed (its ETag no longer matches)."""

    def __init__(self, message: str = "source object changed since it was listed") -> None:
        super().__init__(message, code="PreconditionFailed", retryable=True)


class LeaseLost(CopyError):
    """Another worker took this row over after our lease expired: stop copying it."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="LeaseLost", retryable=False)


class PartLost(LedgerError):
    """Another seeder took over a seed part after this one stopped renewing its lease."""


class Interrupted(Movers3Error):
    """Stopped on request before the work was finished."""

    exit_code = EXIT_INTERRUPTED
