"""How `movers3` ends: each of our error types has its exit code, and an exception that is none of
ours is a bug with a code of its own (70), told in one line without the traceback unless --debug."""

import pytest
import structlog

from movers3 import cli, exceptions
from movers3.exceptions import EXIT_INTERNAL, LedgerError, Movers3Error, SchemaError, StorageError

SECRET = "s3cr3t-Value-0123456789"


def test_every_exit_code_is_distinct_and_a_bug_has_sysexits_ex_software():
    codes = {name: value for name, value in vars(exceptions).items() if name.startswith("EXIT_")}
    assert len(set(codes.values())) == len(codes), codes
    assert EXIT_INTERNAL == 70  # EX_SOFTWARE in sysexits.h


@pytest.fixture
def failing_status(monkeypatch):
    """Makes `status` raise the given error once its settings are loaded: the path every command takes.
    cli.main points structlog at this test's captured stderr, closed after it: restored at the end."""
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    saved = structlog.get_config()

    def fail_with(error: BaseException) -> None:
        def boom(settings, args):
            raise error

        monkeypatch.setitem(cli.COMMANDS, "status", (boom, cli.COMMANDS["status"][1]))

    yield fail_with
    structlog.configure(**saved)


def test_an_exception_that_is_not_ours_is_a_bug_with_its_own_code_and_one_line(failing_status, capsys):
    failing_status(KeyError(f"row {SECRET}"))
    assert cli.main(["status"]) == EXIT_INTERNAL
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("movers3: internal error (a bug in movers3 ") and "please report it" in err, err
    assert "KeyError" in err and "--debug" in err and SECRET not in err, err


def test_debug_adds_the_traceback_to_a_bug(failing_status, capsys):
    failing_status(TypeError("unsupported operand"))
    assert cli.main(["status", "--debug"]) == EXIT_INTERNAL
    err = capsys.readouterr().err
    assert "Traceback" in err and "movers3: internal error" in err and "TypeError: unsupported operand" in err


@pytest.mark.parametrize(
    "error,code",
    [(Movers3Error("rows failed"), 1), (LedgerError(), 3), (SchemaError(), 4), (StorageError("NoSuchBucket"), 5)],
)
def test_our_errors_keep_their_codes(failing_status, capsys, error, code):
    failing_status(error)
    assert cli.main(["status"]) == code
    assert capsys.readouterr().err.startswith("movers3: error: ")
