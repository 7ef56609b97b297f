"""The `movers3` command line: the parser (each command with its own flags), and `main`, which builds
the settings once, runs the command (commands.py) and turns our errors into one line on stderr (with
--json, one JSON object) and an exit code (README, "Exit codes"); --debug adds the traceback."""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import NoReturn

from movers3 import __version__, check, commands, logs
from movers3.exceptions import (
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    ConfigError,
    Interrupted,
    Movers3Error,
)
from movers3.ledger.schema import STATES
from movers3.report import REPORT_FORMATS
from movers3.settings import GROUPS, OPTION_BY_ENV, OPTIONS, Option, Settings, load, parse_mysql_url
from movers3.worker import health

DEFAULT_SAMPLE_COUNT = 100
DEFAULT_RUN_WORKERS = 4
DEFAULT_VERIFY_SAMPLE = 100

EPILOG = """\
Settings come from environment variables; the flags above override them. Secrets (the
S3 secret keys, AWS_SESSION_TOKEN, MYSQL_URL's password) come from the environment only.
Exit codes: 0 ok, 1 some rows failed (healthcheck: unhealthy; check: a check not ok),
2 bad configuration or usage, 3 ledger database error, 4 ledger schema missing or
outdated, 5 S3 error, 130 interrupted."""

# Shown by `movers3 COMMAND --help`.
EXAMPLES = {
    "init": ["movers3 init"],
    "seed": ["movers3 seed", "OLD_PREFIX=images/2019 movers3 seed"],
    "worker": [
        "movers3 worker",
        "movers3 worker --exit-when-done --worker-threads 32",
        "movers3 worker --metrics-port 9100 --health-file /tmp/movers3/health",
    ],
    "run": ["movers3 run --workers 4", "LOAD_FILES=true movers3 run --workers 2 --count 500"],
    "status": ["movers3 status", "movers3 status --json", "movers3 status --watch --interval 5"],
    "report": ["movers3 report -o ledger.csv", "movers3 report --state failed --format jsonl | jq .error"],
    "retry": ["movers3 report --state failed && movers3 retry"],
    "verify": [
        "movers3 verify",
        "movers3 verify --sample 0 --full --mark-failed && movers3 retry",
        "movers3 verify --json | jq .mismatched",
    ],
    "plan": ["movers3 plan", "movers3 plan --json | jq .storage_classes"],
    "delete-source": [
        "movers3 delete-source --max-deletes 1000 --dry-run",
        "movers3 delete-source --max-deletes 100000",
    ],
    "load-samples": ["movers3 load-samples --count 500"],
    "check": ["movers3 check", "movers3 check --role migrator", "movers3 check --role deleter --json | jq ."],
    "healthcheck": [
        "movers3 healthcheck --health-file /tmp/movers3/health",
        "HEALTH_FILE=/tmp/movers3/health HEALTH_MAX_AGE=30 movers3 healthcheck",
    ],
    "completion": [
        "movers3 completion bash > /etc/bash_completion.d/movers3",
        'movers3 completion zsh > "${fpath[1]}/_movers3"',
    ],
}
# Accepted before the command (by the top parser) or after it (by each command's): the later one wins.
GLOBAL_SETTINGS = ("LOG_FORMAT", "LOG_LEVEL")
DEBUG_HELP = "show tracebacks with errors"
JSON_ERRORS = "; with it, an error is one JSON object on stderr (error, code, type)"
# The daemon logs to stdout (docs/operations.md, "Logs"); every other command keeps stdout for its output.
LOGS_ON_STDOUT = frozenset({"worker"})


def cmd_healthcheck(settings: Settings | None, args: argparse.Namespace) -> int:
    # Usually not reached: movers3.entry runs the health check before this module is even imported.
    return health.run(args.health_file, args.health_max_age)


def cmd_completion(settings: Settings | None, args: argparse.Namespace) -> int:
    import shtab

    print(shtab.complete(build_parser(), shell=args.shell))
    return EXIT_OK


# -- argument parsing -----------------------------------------------------------------------

COMMANDS: dict[str, tuple[Callable[..., int], str]] = {
    "init": (commands.cmd_init, "create or upgrade the ledger schema (idempotent)"),
    "seed": (commands.cmd_seed, "enumerate OLD_BUCKET/OLD_PREFIX into the ledger (resumable, idempotent)"),
    "worker": (commands.cmd_worker, "claim rows and copy them; run as many as you like"),
    "run": (commands.cmd_run, "init, seed and N worker processes on this machine, then the final status"),
    "status": (commands.cmd_status, "counts and bytes per state, rate, ETA"),
    "report": (commands.cmd_report, "the ledger as CSV or JSON lines: the old -> new route of every object"),
    "retry": (commands.cmd_retry, "failed rows back to pending"),
    "verify": (commands.cmd_verify, "re-check done rows against both sides (needs read access to the destination)"),
    "delete-source": (
        commands.cmd_delete_source,
        "after verified copies: delete their source objects (its own role; --max-deletes N)",
    ),
    "plan": (commands.cmd_plan, "dry run: what a seed would add, bytes per storage class, restores and key problems"),
    "load-samples": (commands.cmd_load_samples, "create the buckets if missing and put N sample objects"),
    "check": (
        commands.cmd_check,
        "preflight: settings, ledger, S3 credentials, buckets and each right of a role, proven without "
        "changing anything",
    ),
    "healthcheck": (cmd_healthcheck, "exit 0 if the local worker's loop is alive, 1 if it is stuck or gone"),
    "completion": (cmd_completion, "print a shell completion script (bash, zsh, tcsh)"),
}
# Commands that read no settings: a health check must not fail on an unrelated setting, and its exit
# codes are only 0 and 1 (Docker reserves 2).
NO_SETTINGS = frozenset({"healthcheck", "completion"})


class UsageError(ConfigError):
    """A command line argparse refuses, when main() answers it as JSON (--json); exit code 2, as argparse's."""


class _Parser(argparse.ArgumentParser):
    raises = False  # True: a usage error is raised as UsageError instead of printed with the usage

    def error(self, message: str) -> NoReturn:
        if self.raises:
            raise UsageError(message)
        super().error(message)


def build_parser(*, raise_usage_errors: bool = False) -> argparse.ArgumentParser:
    parser = _Parser(
        prog="movers3",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Move every object under OLD_BUCKET/OLD_PREFIX to NEW_BUCKET/NEW_PREFIX, with a MariaDB ledger.",
    )
    parser.raises = raise_usage_errors
    parser.add_argument("--version", action="version", version=f"movers3 {__version__}")
    # The global flags: also accepted after the command, where each command that uses them lists them.
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    for env in GLOBAL_SETTINGS:
        _add_option(parser, OPTION_BY_ENV[env], default=None)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    parsers = {}
    for name, (_, help_text) in COMMANDS.items():
        examples = "examples:\n" + "\n".join(f"  {line}" for line in EXAMPLES[name])
        command = parsers[name] = sub.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=f"{examples}\n\n{EPILOG}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        command.raises = raise_usage_errors
        if name not in NO_SETTINGS:
            command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)
        # Only the flags of the settings this command reads (settings.GROUPS); load() reads every variable.
        for title, options in GROUPS.items():
            flags = [o for o in options if name in o.commands and not o.secret]
            if flags:
                group = command.add_argument_group(f"{title} settings")
                for option in flags:
                    # SUPPRESS: a global flag absent after the command leaves the value given before it alone.
                    _add_option(group, option, argparse.SUPPRESS if option.env in GLOBAL_SETTINGS else None)
    parsers["worker"].add_argument(
        "--exit-when-done", action="store_true", help="exit 0 once seeding has finished and nothing is left to claim"
    )
    parsers["worker"].add_argument(
        "--worker-id", help="lease owner name, made unique with a ~suffix (default: host-pid-random)"
    )
    parsers["run"].add_argument(
        "--workers",
        type=_whole(1, 100_000),
        default=DEFAULT_RUN_WORKERS,
        help=f"worker processes (default {DEFAULT_RUN_WORKERS})",
    )
    parsers["run"].add_argument(
        "--count",
        type=_whole(1, 100_000),
        default=DEFAULT_SAMPLE_COUNT,
        help=f"samples to load when LOAD_FILES=true (default {DEFAULT_SAMPLE_COUNT})",
    )
    _add_json(parsers["status"], "one JSON object (with --watch: one per interval)")
    parsers["status"].add_argument(
        "--watch",
        "-w",
        action="store_true",
        help="redraw until the migration ends (the seed finished, nothing pending)",
    )
    parsers["status"].add_argument(
        "--interval",
        type=_interval,
        default=2.0,
        metavar="SECONDS",
        help="seconds between redraws with --watch (default 2)",
    )
    parsers["seed"].add_argument(
        "--manifest",
        metavar="FILE_OR_S3_URI",
        help="read an S3 Inventory manifest.json (CSV) or a CSV of bucket,key[,size,etag] "
        "instead of listing the bucket",
    )
    parsers["seed"].add_argument(
        "--restart", action="store_true", help="abandon an unfinished seed round and start a new one"
    )
    parsers["delete-source"].add_argument(
        "--max-deletes",
        type=_whole(1, 10**10),
        required=True,
        metavar="N",
        help="delete at most N source objects in this run (the guard)",
    )
    parsers["delete-source"].add_argument("--dry-run", action="store_true", help="check every row and delete nothing")
    _add_json(parsers["plan"], "one JSON object")
    for name in ("seed", "retry", "verify", "delete-source"):
        _add_json(parsers[name], "the summary as one JSON object (verify: its mismatches too)")
    parsers["status"].add_argument(
        "--exact", action="store_true", help="count every row instead of reading the counters (slow on big ledgers)"
    )
    parsers["report"].add_argument("--output", "-o", help="file to write (default: stdout)")
    parsers["report"].add_argument(
        "--summary",
        metavar="FILE",
        help="write the sign-off page instead: one self-contained HTML file (counts, times, rate, failures, "
        "verify, deletions)",
    )
    parsers["verify"].add_argument(
        "--sample",
        type=_whole(0, 10_000_000),
        default=DEFAULT_VERIFY_SAMPLE,
        help=f"done rows to check at random, 0 for all (default {DEFAULT_VERIFY_SAMPLE})",
    )
    parsers["verify"].add_argument("--full", action="store_true", help="also compare the bytes (MD5 of both sides)")
    parsers["verify"].add_argument(
        "--mark-failed",
        action="store_true",
        help="set mismatched rows to failed, so that `movers3 retry` copies them again",
    )
    parsers["report"].add_argument("--state", choices=STATES, help="only the rows in this state")
    parsers["report"].add_argument(
        "--format",
        choices=REPORT_FORMATS,
        default="csv",
        help="csv (spreadsheet-safe) or jsonl (one JSON object a line, exact values)",
    )
    parsers["check"].add_argument(
        "--role",
        choices=tuple(check.ROLES),
        default=check.DEFAULT_ROLE,
        help=f"whose rights to check (docs/permissions.md; default {check.DEFAULT_ROLE})",
    )
    _add_json(parsers["check"], "a JSON list: one object per check")
    parsers["completion"].add_argument("shell", choices=("bash", "zsh", "tcsh"), help="the shell to complete for")
    parsers["load-samples"].add_argument(
        "--count",
        type=_whole(1, 100_000),
        default=DEFAULT_SAMPLE_COUNT,
        help=f"number of objects (default {DEFAULT_SAMPLE_COUNT})",
    )
    return parser


def _whole(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: a whole number from `low` to `high`."""

    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number (got {value!r})") from None
        if not low <= number <= high:
            raise argparse.ArgumentTypeError(f"must be from {low} to {high} (got {number})")
        return number

    return parse


def _add_json(parser: argparse.ArgumentParser, help_text: str) -> None:
    parser.add_argument("--json", action="store_true", help=help_text + JSON_ERRORS)


def _add_option(parser: argparse.ArgumentParser | argparse._ArgumentGroup, option: Option, default: str | None) -> None:
    boolean = option.boolean
    # Not for a flag that takes no value, nor where the metavar lists the choices.
    shown = option.parser.accepts and not option.parser.metavar.startswith("{") and not boolean
    accepts = f"{option.parser.accepts}; " if shown else ""
    help_text = f"{option.help} [{accepts}env {option.env}, default {option.shown_default()}]".replace("%", "%%")
    if boolean:  # --copy-tags / --no-copy-tags
        parser.add_argument(
            option.flag, dest=option.dest, action=argparse.BooleanOptionalAction, default=default, help=help_text
        )
        return
    # Kept a string for settings.load(): a bad flag gets the same one-line error as a bad variable.
    parser.add_argument(option.flag, dest=option.dest, metavar=option.parser.metavar, default=default, help=help_text)


def _interval(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds (got {value!r})") from None
    if not 0.1 <= number <= 86400:
        raise argparse.ArgumentTypeError(f"must be from 0.1 to 86400 seconds (got {value})")
    return number


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    redact = logs.Redactor(_env_secrets(os.environ))
    try:
        # With --json (as far as a command line argparse refuses can tell), its error too is JSON.
        args = build_parser(raise_usage_errors="--json" in argv).parse_args(argv)
    except UsageError as exc:
        return _answer(exc, redact(str(exc)), code=exc.exit_code, as_json=True)
    args.overrides = _overrides(args)
    as_json = getattr(args, "json", False)
    handler, _ = COMMANDS[args.command]
    if args.command in NO_SETTINGS:
        return handler(None, args)
    try:
        try:
            settings = load(os.environ, args.overrides)
        except ConfigError as exc:
            if args.command != "check":
                raise
            return commands.check_unloadable(exc, args, redact)
        redact = logs.Redactor(settings.secrets() + _env_secrets(os.environ))
        logs.configure(
            format=settings.log_format,
            level=settings.log_level,
            secrets=redact.secrets,
            stream=sys.stdout if args.command in LOGS_ON_STDOUT else sys.stderr,
        )
        return handler(settings, args)
    except Interrupted as exc:
        return _answer(exc, redact(str(exc)), code=exc.exit_code, as_json=as_json, text="movers3: {}")
    except Movers3Error as exc:
        if args.debug:
            traceback.print_exc()
        return _answer(exc, redact(str(exc)), code=exc.exit_code, as_json=as_json)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as exc:
        # None of our error types: a bug, not a failure of the migration's rows or services.
        if args.debug:
            traceback.print_exc()
        return _answer(
            exc,
            f"internal error (a bug in movers3 {__version__}, please report it): "
            f"{type(exc).__name__}: {logs.escape_controls(redact(str(exc)))}",
            code=EXIT_INTERNAL,
            as_json=as_json,
            text="movers3: {}" + ("" if args.debug else " (run with --debug for the traceback)"),
        )


def _overrides(args: argparse.Namespace) -> dict[str, str]:
    """The settings given as flags, as their variables would be written (run passes them on so)."""
    given = {o.env: getattr(args, o.dest, None) for o in OPTIONS if not o.secret}
    return {env: ("true" if v else "false") if isinstance(v, bool) else v for env, v in given.items() if v is not None}


def _answer(exc: Exception, message: str, *, code: int, as_json: bool, text: str = "movers3: error: {}") -> int:
    """An error's one line on stderr, or with --json one JSON object; `code` either way."""
    if as_json:
        print(json.dumps({"error": message, "code": code, "type": type(exc).__name__}), file=sys.stderr)
    else:
        print(text.format(message), file=sys.stderr)
    return code


def _env_secrets(environ: dict | os._Environ) -> list[str]:
    """Secrets as given, even when the settings could not be built from them."""
    found = [environ.get(option.env, "") for option in OPTIONS if option.secret]
    try:
        found.append(parse_mysql_url(environ.get("MYSQL_URL", "")).password.reveal())
    except ConfigError:
        pass
    return [s for s in found if s]
