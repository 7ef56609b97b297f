"""The command line's habits: global flags before or after the command, boolean settings as
--flag/--no-flag, and errors as one JSON object on stderr when --json is given, with the same exit
code and no secret."""

import json
import os
import re
import subprocess
import sys

import pytest

from movers3 import cli, settings
from movers3.exceptions import EXIT_INTERNAL, ConfigError, LedgerError, StorageError
from movers3.settings import load

SECRET = "pw-Sup3rSecret-cli"


def parse(*args: str):
    return cli.build_parser(raise_usage_errors=True).parse_args(args)


@pytest.mark.parametrize(
    "args,debug,level",
    [
        (["status"], False, None),
        (["--debug", "status"], True, None),
        (["status", "--debug"], True, None),
        (["--log-level", "debug", "status"], False, "debug"),
        (["status", "--log-level", "warning"], False, "warning"),
        # Both: the one after the command wins, as the later of two flags does.
        (["--log-level", "debug", "status", "--log-level", "error"], False, "error"),
        (["--debug", "--log-format", "console", "worker", "--exit-when-done"], True, None),
    ],
)
def test_global_flags_before_or_after_the_command(args, debug, level):
    parsed = parse(*args)
    assert parsed.debug is debug
    assert cli._overrides(parsed).get("LOG_LEVEL") == level


def test_a_global_flag_before_the_command_is_not_lost_to_the_commands_default():
    parsed = parse("--log-format", "console", "--log-level", "error", "--debug", "seed", "--seed-threads", "2")
    assert cli._overrides(parsed) == {"LOG_FORMAT": "console", "LOG_LEVEL": "error", "SEED_THREADS": "2"}
    assert parsed.debug is True


def test_global_flags_are_refused_after_commands_that_do_not_use_them():
    with pytest.raises(cli.UsageError, match="unrecognized arguments: --debug"):
        parse("completion", "bash", "--debug")


@pytest.mark.parametrize(
    "flag,environ,expected",
    [
        ("--no-copy-tags", {}, False),
        ("--no-copy-tags", {"COPY_TAGS": "true"}, False),
        ("--copy-tags", {"COPY_TAGS": "false"}, True),
        (None, {"COPY_TAGS": "false"}, False),
        (None, {}, True),
    ],
)
def test_a_boolean_flag_overrides_its_variable_and_its_absence_does_not(flag, environ, expected):
    parsed = parse("worker", *([flag] if flag else []))
    assert load(environ, cli._overrides(parsed)).copy_tags is expected


def test_run_passes_a_boolean_flag_on_as_its_variable():
    assert cli._overrides(parse("run", "--no-copy-tags", "--load-files")) == {
        "COPY_TAGS": "false",
        "LOAD_FILES": "true",
    }


def test_a_boolean_flag_takes_no_value():
    with pytest.raises(cli.UsageError, match="unrecognized arguments: false"):
        parse("worker", "--copy-tags", "false")


def stderr_json(capsys) -> dict:
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    return json.loads(lines[0])


@pytest.mark.parametrize(
    "error,code,kind",
    [
        (ConfigError(f"OLD_PREFIX: bad near {SECRET}"), 2, "ConfigError"),
        (LedgerError(f"cannot reach the ledger as {SECRET}"), 3, "LedgerError"),
        (StorageError(f"AccessDenied for {SECRET}"), 5, "StorageError"),
        (KeyError(SECRET), EXIT_INTERNAL, "KeyError"),
    ],
)
@pytest.mark.parametrize("command", [["seed"], ["retry"], ["verify"], ["delete-source", "--max-deletes", "1"]])
def test_with_json_an_error_is_one_json_object_with_its_exit_code_and_no_secret(
    monkeypatch, capsys, command, error, code, kind
):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)

    def fail(settings, args):
        raise error

    monkeypatch.setitem(cli.COMMANDS, command[0], (fail, "test"))
    monkeypatch.setattr(cli.logs, "configure", lambda **kwargs: None)
    assert cli.main([*command, "--json"]) == code
    answer = stderr_json(capsys)
    assert answer["code"] == code and answer["type"] == kind
    assert SECRET not in json.dumps(answer) and "***" in answer["error"]
    # Without --json: the one line of today.
    assert cli.main(command) == code
    line = capsys.readouterr().err.strip()
    assert line.startswith("movers3: ") and SECRET not in line and "{" not in line


def test_with_json_settings_that_do_not_load_are_a_json_error(monkeypatch, capsys):
    monkeypatch.setenv("MYSQL_URL", f"mysql+pymysql://u:{SECRET}@127.0.0.1:99999/sketch")
    assert cli.main(["retry", "--json"]) == 2
    answer = stderr_json(capsys)
    assert answer["type"] == "ConfigError" and answer["error"].startswith("MYSQL_URL: ")
    assert SECRET not in answer["error"]


def test_with_json_a_usage_error_is_a_json_error_with_code_2(capsys):
    assert cli.main(["verify", "--json", "--sample", "-1"]) == 2
    answer = stderr_json(capsys)
    assert answer == {"error": answer["error"], "code": 2, "type": "UsageError"}
    assert "--sample" in answer["error"]


def test_without_json_a_usage_error_is_argparses_usage_and_line(capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(["verify", "--sample", "-1"])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: movers3 verify ") and "movers3 verify: error: argument --sample" in err


def test_the_declared_global_settings_exist():
    assert set(cli.GLOBAL_SETTINGS) <= set(settings.OPTION_BY_ENV)


def test_shell_completion_knows_the_global_and_the_boolean_flags(capsys):
    assert cli.main(["completion", "bash"]) == 0
    script = capsys.readouterr().out
    top = re.search(r"^_shtab_movers3_option_strings=\((.*)\)$", script, re.MULTILINE)
    worker = re.search(r"^_shtab_movers3_worker_option_strings=\((.*)\)$", script, re.MULTILINE)
    assert top and set(top.group(1).split()) == {"-h", "--help", "--version", "--debug", "--log-format", "--log-level"}
    assert worker and {"--copy-tags", "--no-copy-tags", "--debug", "--log-level"} <= set(worker.group(1).split())


# -- what a command imports ----------------------------------------------------------------------
# Every movers3 process imports the CLI: what it imports at start is CPU spent in every worker, every
# `status` and every `--help` (issue 17: about a second, `check` alone a tenth of a worker's samples).

HEAVY = ("boto3", "botocore", "awscrt", "pymysql", "structlog", "rich", "movers3.")
# Of movers3's own modules, those the parser may import: the rest come with the command that needs them.
PARSER_MODULES = {
    "movers3.check",
    "movers3.check.lines",
    "movers3.check.roles",
    "movers3.cli",
    "movers3.commands",
    "movers3.endpoints",
    "movers3.exceptions",
    "movers3.ledger",
    "movers3.ledger.schema",
    "movers3.logs",
    "movers3.report",
    "movers3.routes",
    "movers3.settings",
    "movers3.values",
    "movers3.worker",
    "movers3.worker.health",
    "movers3.worker.observer",
}


def imported_after(code: str, env: dict | None = None, cwd=None) -> tuple[set[str], subprocess.CompletedProcess]:
    """The modules named in HEAVY that a fresh interpreter holds after `code` (which may set `exit_code`)."""
    probe = (
        f"import json, sys\nexit_code = 0\n{code}\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.startswith({HEAVY!r}))))\n"
        "sys.exit(exit_code)"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=cwd, env=env, timeout=120)
    return set(json.loads(done.stdout.splitlines()[-1])), done


def test_the_parser_and_every_commands_help_import_no_service_client(tmp_path):
    code = (
        "import contextlib, io\n"
        "from movers3 import cli\n"
        "parser = cli.build_parser()\n"
        "for name in [None, *cli.COMMANDS]:\n"
        "    with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "        parser.parse_args([name, '--help'] if name else ['--help'])\n"
        "parser.parse_args(['status', '--json'])\n"
        "parser.parse_args(['worker', '--exit-when-done'])\n"
    )
    modules, done = imported_after(code, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert not modules - PARSER_MODULES, modules
    assert "movers3.cli" in modules  # the probe saw what it imported


def test_the_worker_imports_what_it_copies_with_and_no_other_commands_modules(tmp_path):
    # Nothing listens on port 1: the worker's imports are done when it reaches the ledger and fails (exit 3).
    env = {
        **os.environ,
        "OLD_BUCKET": "old-bucket",
        "NEW_BUCKET": "new-bucket",
        "MYSQL_URL": "mysql://u:p@127.0.0.1:1/db",
        "LOG_LEVEL": "error",
    }
    modules, done = imported_after("from movers3 import cli\nexit_code = cli.main(['worker'])", env, tmp_path)
    assert done.returncode == 3 and "cannot reach the ledger database" in done.stderr, done.stderr
    assert {"boto3", "pymysql", "movers3.worker.loop", "movers3.transfer.copier"} <= modules, modules
    others = ("movers3.check.", "movers3.seed", "movers3.summary", "movers3.verify", "movers3.delete_source")
    assert not [m for m in modules if m.startswith(others) and m not in PARSER_MODULES], modules
    assert "movers3.runner" not in modules and "movers3.status" not in modules
