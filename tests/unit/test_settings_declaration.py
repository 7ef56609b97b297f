"""The one declaration of the settings (settings.GROUPS) drives load(), each command's flags and
--help, and docs/configuration.md: these tests hold the four together."""

import dataclasses
import re
from pathlib import Path

import pytest

from movers3 import cli, settings
from movers3.exceptions import ConfigError
from movers3.settings import OPTION_BY_ENV, OPTIONS, Endpoint, Settings, load
from movers3.values import GIB, MIB

DOCS = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
SETTING_FLAGS = {o.flag for o in OPTIONS}


def help_flags(capsys, command: str) -> set[str]:
    """The flags listed in the options sections of `movers3 COMMAND --help`."""
    with pytest.raises(SystemExit) as done:
        cli.build_parser().parse_args([command, "--help"])
    assert done.value.code == 0
    return set(re.findall(r"^  (?:-\w, )?(--[a-z0-9-]+)", capsys.readouterr().out, re.MULTILINE))


@pytest.mark.parametrize("command", list(cli.COMMANDS))
def test_each_command_offers_the_flags_of_its_own_settings_only(capsys, command):
    declared = {o.flag for o in OPTIONS if command in o.commands and not o.secret}
    assert help_flags(capsys, command) & SETTING_FLAGS == declared


def test_status_offers_no_copy_or_s3_flags(capsys):
    shown = help_flags(capsys, "status")
    assert not shown & {"--worker-threads", "--url-endpoint", "--copy-mode", "--seed-threads", "--max-attempts"}
    assert shown & SETTING_FLAGS == {
        "--old-bucket",
        "--old-prefix",
        "--new-bucket",
        "--new-prefix",
        "--log-format",
        "--log-level",
    }


# Read from each cmd_* function and what it calls; run also passes its flags on to its workers.
EXPECTED = {
    "init": set(),
    "report": set(),
    "retry": set(),
    "status": {"OLD_BUCKET", "OLD_PREFIX", "NEW_BUCKET", "NEW_PREFIX"},
    "seed": {"OLD_BUCKET", "OLD_PREFIX", "NEW_BUCKET", "NEW_PREFIX", "SEED_THREADS", "LEASE_SECONDS", "MAX_ATTEMPTS"},
    "healthcheck": {"HEALTH_FILE", "HEALTH_MAX_AGE"},
    "completion": set(),
}
SOURCE_S3 = {
    "URL_ENDPOINT",
    "AWS_ACCESS_KEY_ID",
    "AWS_PROFILE",
    "AWS_REGION",
    "S3_ADDRESSING_STYLE",
    "S3_TIMEOUT_SECONDS",
    "OLD_URL_ENDPOINT",
    "OLD_AWS_ACCESS_KEY_ID",
    "OLD_REGION",
}


@pytest.mark.parametrize("command", list(EXPECTED))
def test_what_the_simple_commands_read(command):
    offered = {o.env for o in OPTIONS if command in o.commands and not o.secret}
    logging = {"LOG_FORMAT", "LOG_LEVEL"} if command in settings.EVERY else set()
    source = SOURCE_S3 if command == "seed" else set()
    assert offered == EXPECTED[command] | logging | source


def test_run_offers_every_copy_flag_of_the_worker_and_the_seed_flags():
    worker = {o.env for o in OPTIONS if "worker" in o.commands}
    run = {o.env for o in OPTIONS if "run" in o.commands}
    # Its workers get no health file (runner.worker_environment) and a metrics port from the variable.
    assert worker - run == {"METRICS_PORT", "METRICS_HOST", "HEALTH_FILE", "HEALTH_MAX_AGE"}
    assert {o.env for o in OPTIONS if "seed" in o.commands} <= run


def test_the_declared_commands_are_the_clis():
    named = {c for o in OPTIONS for c in o.commands}
    assert named <= set(cli.COMMANDS)
    assert set(settings.EVERY) == set(cli.COMMANDS) - cli.NO_SETTINGS


def test_secrets_have_no_flag_on_any_command(capsys):
    secret_flags = {o.flag for o in OPTIONS if o.secret}
    assert secret_flags == {
        "--aws-secret-access-key",
        "--old-aws-secret-access-key",
        "--new-aws-secret-access-key",
        "--aws-session-token",
        "--mysql-url",
    }
    for command in cli.COMMANDS:
        assert not help_flags(capsys, command) & secret_flags
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["worker", "--aws-secret-access-key", "x"])


def test_a_flag_reaches_load_as_an_override_of_its_variable(monkeypatch, capsys):
    seen = {}

    def fake_load(environ, overrides):
        seen.update(overrides)
        raise ConfigError("WORKER_THREADS: stop here")

    monkeypatch.setattr(cli, "load", fake_load)
    assert cli.main(["worker", "--worker-threads", "8", "--log-level", "debug"]) == 2
    assert seen == {"WORKER_THREADS": "8", "LOG_LEVEL": "debug"}
    assert "WORKER_THREADS: stop here" in capsys.readouterr().err


def test_a_bad_flag_gets_the_variables_error():
    assert (
        str(pytest.raises(ConfigError, load, {}, {"WORKER_THREADS": "0"}).value)
        == "WORKER_THREADS: must be from 1 to 256 (got 0)"
    )


def test_the_defaults_are_the_original_tools_and_the_rest_as_they_were():
    s = load({})
    # No region: the profile's, else us-east-1, resolved where the clients are made (transfer/s3.py).
    endpoint = Endpoint("http://localhost:8080", None, None, None, "path", 300)
    assert (s.source, s.dest) == (endpoint, endpoint)
    assert (s.old_bucket, s.old_prefix, s.new_bucket, s.new_prefix) == (
        "legacy-s3",
        "images",
        "production-s3",
        "avatar",
    )
    assert (s.mysql.user, s.mysql.password.reveal(), s.mysql.host, s.mysql.port, s.mysql.database) == (
        "sketchUser",
        "sketchPassword",
        "localhost",
        3306,
        "sketch",
    )
    assert dataclasses.asdict(s) | {"source": None, "dest": None, "mysql": None} == {
        "source": None,
        "dest": None,
        "mysql": None,
        "old_bucket": "legacy-s3",
        "old_prefix": "images",
        "new_bucket": "production-s3",
        "new_prefix": "avatar",
        "load_files": False,
        "worker_threads": 16,
        "lease_seconds": 120,
        "max_attempts": 5,
        "multipart_threshold": 64 * MIB,
        "multipart_chunksize": 64 * MIB,
        "claim_batch": 64,
        "log_format": "auto",
        "log_level": "info",
        "copy_mode": "auto",
        "copy_engine": "crt",
        "new_acl": None,
        "new_sse": None,
        "new_sse_kms_key_id": None,
        "part_concurrency": 4,
        "stream_memory": 256 * MIB,
        "website_redirects": "auto",
        "copy_tags": True,
        "seed_threads": 4,
        "repoint_sql_file": None,
        "metrics_port": 0,
        "metrics_host": "0.0.0.0",
        "health_file": None,
        "health_max_age": 60,
    }
    assert settings.DEFAULT_HEALTH_MAX_AGE == 60


def test_settings_hold_no_defaults_of_their_own():
    for field in dataclasses.fields(Settings):
        assert field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING, field.name


def test_every_variable_lands_in_the_settings():
    fields = {f.name for f in dataclasses.fields(Settings)}
    endpoints = {o.env for o in OPTIONS if o.env.startswith(("OLD_", "NEW_")) and o.env.lower() not in fields}
    assert endpoints == {
        f"{side}_{name}"
        for side in ("OLD", "NEW")
        for name in ("URL_ENDPOINT", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "REGION")
    }
    shared = {
        "URL_ENDPOINT",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_REGION",
        "S3_ADDRESSING_STYLE",
        "S3_TIMEOUT_SECONDS",
        "MYSQL_URL",
    }
    assert {o.env for o in OPTIONS if o.dest not in fields} == endpoints | shared


@pytest.mark.parametrize("option", OPTIONS, ids=[o.env for o in OPTIONS])
def test_each_default_passes_its_own_parser(option):
    if option.default is not None:
        option.parser.read(option.env, option.default)


def test_ranges_in_help_are_the_ranges_load_enforces():
    assert OPTION_BY_ENV["WORKER_THREADS"].parser.accepts == "1-256"
    assert OPTION_BY_ENV["STREAM_MEMORY"].parser.accepts == "5MiB-64GiB"
    with pytest.raises(ConfigError, match="^STREAM_MEMORY: must be from 5MiB to 64GiB"):
        load({"STREAM_MEMORY": f"{64 * GIB + 1}"})


def test_the_docs_are_generated_from_the_declaration():
    assert DOCS.read_text(encoding="utf-8") == settings.reference_markdown(), (
        "docs/configuration.md is out of date with movers3/settings.py: run `make docs` "
        "(or `python -m movers3.settings > docs/configuration.md`)"
    )


def test_the_docs_have_a_row_per_variable_and_no_secret_flag():
    text = settings.reference_markdown()
    for option in OPTIONS:
        row = next(line for line in text.splitlines() if line.startswith(f"| `{option.env}` |"))
        assert ("(environment only)" in row) == option.secret, row


# -- the flags every command shares, and the boolean ones -------------------------------------------

GLOBAL_FLAGS = {"--debug", "--log-format", "--log-level"}
BOOLEANS = [o for o in OPTIONS if o.boolean]


def help_text(capsys, *args: str) -> str:
    with pytest.raises(SystemExit) as done:
        cli.build_parser().parse_args([*args, "--help"])
    assert done.value.code == 0
    return capsys.readouterr().out


def test_the_top_level_help_lists_the_global_flags_only(capsys):
    shown = set(re.findall(r"^  (?:-\w, )?(--[a-z0-9-]+)", help_text(capsys), re.MULTILINE))
    assert shown == {"--help", "--version"} | GLOBAL_FLAGS


@pytest.mark.parametrize("command", list(cli.COMMANDS))
def test_the_global_flags_are_listed_by_the_commands_that_use_them(capsys, command):
    shown = help_flags(capsys, command) & GLOBAL_FLAGS
    assert shown == (set() if command in cli.NO_SETTINGS else GLOBAL_FLAGS)


@pytest.mark.parametrize("command", list(cli.COMMANDS))
def test_boolean_settings_are_a_pair_of_flags_on_their_commands_only(capsys, command):
    text = help_text(capsys, command)
    for option in BOOLEANS:
        pair = f"  {option.flag}, --no-{option.flag[2:]}\n"
        assert (pair in text) == (command in option.commands), (option.env, text)
        assert f"{option.flag} BOOL" not in text


def test_the_boolean_settings_are_copy_tags_and_load_files():
    assert {o.env for o in BOOLEANS} == {"COPY_TAGS", "LOAD_FILES"}
    assert OPTION_BY_ENV["COPY_TAGS"].flags == ("--copy-tags", "--no-copy-tags")
    assert OPTION_BY_ENV["WORKER_THREADS"].flags == ("--worker-threads",)


@pytest.mark.parametrize("command", list(cli.COMMANDS))
def test_json_is_offered_where_the_output_is_a_summary_or_a_table(capsys, command):
    with_json = {"status", "plan", "check", "seed", "retry", "verify", "delete-source"}
    assert ("--json" in help_flags(capsys, command)) == (command in with_json)
