"""The `movers3` command. Each subcommand builds the settings once, opens what it needs, and turns our
errors into one line on stderr and an exit code (README, "Exit codes"); --debug adds the traceback."""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import threading
import traceback
from collections.abc import Callable, Sequence

import structlog

from movers3 import __version__, logs, signals
from movers3.delete_source import SourceDeleter
from movers3.exceptions import (
    EXIT_FAILED_ROWS,
    EXIT_INTERRUPTED,
    EXIT_OK,
    ConfigError,
    Interrupted,
    Movers3Error,
    SchemaError,
    StorageError,
)
from movers3.ledger import repoint, schema
from movers3.ledger.db import Database
from movers3.ledger.reads import Reads
from movers3.ledger.schema import STATES
from movers3.ledger.seeds import Seeds
from movers3.ledger.uploads import UploadJournal
from movers3.ledger.work import WorkQueue
from movers3.report import REPORT_FORMATS, write_report
from movers3.runner import Runner, child_environment
from movers3.samples import load_samples
from movers3.seed.planner import Planner
from movers3.seed.planner import render as render_plan
from movers3.seed.seeder import Seeder
from movers3.settings import GROUPS, OPTIONS, Option, Settings, load, parse_mysql_url
from movers3.status import render_status, status_dict
from movers3.transfer import s3
from movers3.transfer.copier import ObjectCopier
from movers3.verify import Verifier
from movers3.worker import health
from movers3.worker.loop import Worker, WorkerConfig, new_worker_id
from movers3.worker.observer import Observers

log = structlog.get_logger(__name__)

DEFAULT_SAMPLE_COUNT = 100
DEFAULT_RUN_WORKERS = 4
DEFAULT_VERIFY_SAMPLE = 100

EPILOG = """\
Settings come from environment variables; the flags above override them. Secrets
(AWS_SECRET_ACCESS_KEY, the password in MYSQL_URL) are read from the environment only.
Exit codes: 0 ok, 1 some rows failed (healthcheck: unhealthy), 2 bad configuration or
usage, 3 ledger database error, 4 ledger schema missing or outdated, 5 S3 error,
130 interrupted."""

# Shown by `movers3 COMMAND --help`.
EXAMPLES = {
    "init": ["movers3 init"],
    "seed": ["movers3 seed", "OLD_PREFIX=images/2019 movers3 seed"],
    "worker": ["movers3 worker", "movers3 worker --exit-when-done --worker-threads 32",
               "movers3 worker --metrics-port 9100 --health-file /tmp/movers3/health"],
    "run": ["movers3 run --workers 4", "LOAD_FILES=true movers3 run --workers 2 --count 500"],
    "status": ["movers3 status", "movers3 status --json", "movers3 status --watch --interval 5"],
    "report": ["movers3 report -o ledger.csv", "movers3 report --state failed --format jsonl | jq .error"],
    "retry": ["movers3 report --state failed && movers3 retry"],
    "verify": ["movers3 verify", "movers3 verify --sample 0 --full --mark-failed && movers3 retry"],
    "plan": ["movers3 plan", "movers3 plan --json | jq .storage_classes"],
    "delete-source": ["movers3 delete-source --max-deletes 1000 --dry-run",
                      "movers3 delete-source --max-deletes 100000"],
    "load-samples": ["movers3 load-samples --count 500"],
    "healthcheck": ["movers3 healthcheck --health-file /tmp/movers3/health",
                    "HEALTH_FILE=/tmp/movers3/health HEALTH_MAX_AGE=30 movers3 healthcheck"],
    "completion": ["movers3 completion bash > /etc/bash_completion.d/movers3",
                   "movers3 completion zsh > \"${fpath[1]}/_movers3\""],
}
# The daemon logs to stdout (docs/operations.md, "Logs"); every other command keeps stdout for its output.
LOGS_ON_STDOUT = frozenset({"worker"})


# -- commands -------------------------------------------------------------------------------

def cmd_init(settings: Settings, args: argparse.Namespace) -> int:
    version = schema.create(Database(settings.mysql))
    print(f"ledger schema is at version {version} in database {settings.mysql.database!r}")
    return EXIT_OK


def cmd_seed(settings: Settings, args: argparse.Namespace) -> int:
    seeds = Seeds(open_ledger(settings))
    client = s3.client(settings.source, pool_size=settings.seed_threads + 16, parse_timestamps=False)
    seeder = Seeder(seeds, client, settings, manifest_uri=args.manifest, restart=args.restart)
    with signals.on_stop(seeder.stopped.set):
        stats = seeder.run()
    print(f"seeded {settings.old_bucket}/{settings.old_prefix}/ (round {stats.round}"
          f"{', from ' + args.manifest if args.manifest else ''}): {stats.listed:,} listed, {stats.added:,} added, "
          f"{stats.changed:,} changed, {stats.skipped:,} skipped by this process")
    return EXIT_FAILED_ROWS if stats.skipped else EXIT_OK


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    db = open_ledger(settings)
    work = WorkQueue(db)
    if settings.repoint_sql_file:
        work.repoint = repoint.load(settings.repoint_sql_file)
        repoint.check(db, work.repoint)
    stop = threading.Event()
    worker_id = args.worker_id or new_worker_id()
    journal = UploadJournal.open(db, worker_id)
    copier = ObjectCopier.from_settings(settings, journal, stop)
    s3.check_listable(copier.source, settings.old_bucket, settings.old_prefix + "/", tries=settings.max_attempts)
    heartbeat = health.Heartbeat(settings.health_file)
    observers = [heartbeat]
    server = None
    if settings.metrics_port:
        from movers3.worker.metrics import Metrics, MetricsServer  # prometheus-client is an optional extra
        metrics = Metrics()
        metrics.watch_heartbeat(heartbeat)
        server = MetricsServer(metrics, settings.metrics_host, settings.metrics_port, heartbeat,
                               max_age=settings.health_max_age).start()
        observers.append(metrics)
        log.info("metrics_serving", address="%s:%d" % server.address)
    config = WorkerConfig.from_settings(settings, exit_when_done=args.exit_when_done)
    worker = Worker(work, copier, config, worker_id=worker_id, stop_event=stop, journal=journal,
                    observer=Observers(*observers))
    try:
        with signals.on_stop(worker.stop):
            stats = worker.run()
    finally:
        if server is not None:
            server.stop()
    if worker.fatal is not None:
        raise StorageError(f"worker stopped: {worker.fatal} (every copy would fail the same way; rows released)")
    if stats.abandoned:
        # Copy threads still blocked in a request would hold the interpreter at exit past the
        # orchestrator's grace period; their rows are already released.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_OK)
    return EXIT_OK


def cmd_run(settings: Settings, args: argparse.Namespace) -> int:
    db = Database(settings.mysql)
    schema.create(db)
    seeds, reads = Seeds(db), Reads(db)
    client = s3.client(settings.source, pool_size=settings.seed_threads + 16, parse_timestamps=False)
    if settings.load_files:
        load_samples(client, s3.client(settings.dest), settings, args.count)
    child_env = child_environment(os.environ, args.overrides)
    if not sys.stderr.isatty():
        runner = Runner(reads, Seeder(seeds, client, settings), workers=args.workers, child_env=child_env)
        with signals.on_stop(runner.stop):
            codes = runner.run()
    else:
        from rich.console import Console

        from movers3.watch import RunProgress
        if settings.log_format == "auto":
            child_env["LOG_FORMAT"] = "console"  # the workers write to a pipe read by this process
        with RunProgress(Console(stderr=True)) as progress:
            runner = Runner(reads, Seeder(seeds, client, settings), workers=args.workers, child_env=child_env,
                            progress=progress)
            with signals.on_stop(runner.stop):
                codes = runner.run()
    status = status_dict(reads.counts())
    print(render_status(status))
    if runner.stopped.is_set():
        return EXIT_INTERRUPTED
    if any(codes):
        raise Movers3Error(f"worker processes exited with codes {codes}")
    return EXIT_FAILED_ROWS if status["failed"] else EXIT_OK


def cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    db = open_ledger(settings)
    if args.watch:
        return watch_status(db, settings, args)
    status = status_dict(Reads(db).counts(exact=args.exact))
    print(json.dumps(status) if args.json else render_status(status))
    return EXIT_OK


def watch_status(db: Database, settings: Settings, args: argparse.Namespace) -> int:
    from movers3.watch import Watcher  # rich is only needed here and in `run`

    stop = threading.Event()

    def emit(status: dict) -> None:
        print(json.dumps(status), flush=True)

    watcher = Watcher(db, source=f"{settings.old_bucket}/{settings.old_prefix}/",
                      dest=f"{settings.new_bucket}/{settings.new_prefix}/", interval=args.interval, stop=stop,
                      on_status=emit if args.json else None)
    with signals.on_stop(stop.set):
        watcher.run()
    return EXIT_OK  # leaving the watch early is not a failure of anything


def cmd_report(settings: Settings, args: argparse.Namespace) -> int:
    rows = Reads(open_ledger(settings)).report(state=args.state)
    if args.output in (None, "-"):
        count = write_report(rows, sys.stdout, args.format)
    else:
        with open(args.output, "w", newline="", encoding="utf-8") as out:
            count = write_report(rows, out, args.format)
        print(f"wrote {count:,} rows to {args.output}", file=sys.stderr)
    return EXIT_OK


def cmd_plan(settings: Settings, args: argparse.Namespace) -> int:
    db = Database(settings.mysql)
    seeds: Seeds | None = Seeds(db)
    try:
        schema.check(db)
    except SchemaError:
        seeds = None  # nothing seeded yet: the plan still lists and counts
    client = s3.client(settings.source, pool_size=settings.seed_threads + 16)
    planner = Planner(seeds, client, settings)
    with signals.on_stop(planner.stopped.set):
        result = planner.run()
    print(json.dumps(result.as_dict()) if args.json else render_plan(result))
    return EXIT_FAILED_ROWS if result.blocking else EXIT_OK


def cmd_delete_source(settings: Settings, args: argparse.Namespace) -> int:
    db = open_ledger(settings)
    source = s3.client(settings.source, pool_size=SourceDeleter.threads + 4)
    dest = source if settings.dest == settings.source else s3.client(settings.dest, pool_size=SourceDeleter.threads + 4)
    deleter = SourceDeleter(db, source, dest, settings, max_deletes=args.max_deletes, dry_run=args.dry_run)
    with signals.on_stop(deleter.stopped.set):
        stats = deleter.run()
    verb = "would delete" if args.dry_run else "deleted"
    count = stats.would_delete if args.dry_run else stats.deleted
    skipped = ", ".join(f"{n:,} {reason}" for reason, n in sorted(stats.skipped.items())) or "none"
    print(f"{verb} {count:,} source objects under {settings.old_bucket}/{settings.old_prefix}/; "
          f"{stats.already_gone:,} already gone; skipped: {skipped}"
          + (f"; stopped at --max-deletes {args.max_deletes:,}" if stats.guard_reached else ""))
    return EXIT_FAILED_ROWS if stats.skipped else EXIT_OK


def cmd_retry(settings: Settings, args: argparse.Namespace) -> int:
    count = WorkQueue(open_ledger(settings)).retry_failed()
    print(f"{count:,} failed rows are pending again")
    return EXIT_OK


def cmd_verify(settings: Settings, args: argparse.Namespace) -> int:
    db = open_ledger(settings)
    verifier = Verifier(s3.client(settings.source), s3.client(settings.dest), full=args.full)
    rows = Reads(db).done_rows(args.sample, random.Random())
    checked = bad = marked = 0
    for row, finding in verifier.run(rows):
        checked += 1
        if finding is None:
            continue
        bad += 1
        problems = "; ".join(finding.problems)
        print(f"MISMATCH id={row.id} {row.old_bucket}/{logs.escape_controls(row.old_key)} -> "
              f"{row.new_bucket}/{logs.escape_controls(row.new_key)}: {problems}")
        if args.mark_failed and WorkQueue(db).fail_done(row.id, f"verify: {problems}"):
            marked += 1
    tail = f"; {marked:,} marked failed (`movers3 retry` copies them again)" if args.mark_failed else ""
    print(f"verified {checked:,} done rows{' (full: bytes compared)' if args.full else ''}: "
          f"{checked - bad:,} ok, {bad:,} mismatched{tail}")
    return EXIT_FAILED_ROWS if bad else EXIT_OK


def cmd_load_samples(settings: Settings, args: argparse.Namespace) -> int:
    count = load_samples(s3.client(settings.source), s3.client(settings.dest), settings, args.count)
    print(f"put {count:,} sample objects under {settings.old_bucket}/{settings.old_prefix}/")
    return EXIT_OK


def cmd_healthcheck(settings: Settings | None, args: argparse.Namespace) -> int:
    # Usually not reached: movers3.entry runs the health check before this module is even imported.
    return health.run(args.health_file, args.health_max_age)


def cmd_completion(settings: Settings | None, args: argparse.Namespace) -> int:
    import shtab

    print(shtab.complete(build_parser(), shell=args.shell))
    return EXIT_OK


# -- helpers --------------------------------------------------------------------------------

def open_ledger(settings: Settings) -> Database:
    """The ledger's connection, once its schema is known to be current."""
    db = Database(settings.mysql)
    schema.check(db)
    return db


# -- argument parsing -----------------------------------------------------------------------

COMMANDS: dict[str, tuple[Callable[[Settings, argparse.Namespace], int], str]] = {
    "init": (cmd_init, "create or upgrade the ledger schema (idempotent)"),
    "seed": (cmd_seed, "enumerate OLD_BUCKET/OLD_PREFIX into the ledger (resumable, idempotent)"),
    "worker": (cmd_worker, "claim rows and copy them; run as many as you like"),
    "run": (cmd_run, "init, seed and N worker processes on this machine, then the final status"),
    "status": (cmd_status, "counts and bytes per state, rate, ETA"),
    "report": (cmd_report, "the ledger as CSV or JSON lines: the old -> new route of every object"),
    "retry": (cmd_retry, "failed rows back to pending"),
    "verify": (cmd_verify, "re-check done rows against both sides (needs read access to the destination)"),
    "delete-source": (cmd_delete_source, "after verified copies: delete their source objects (its own role; "
                                         "--max-deletes N)"),
    "plan": (cmd_plan, "dry run: what a seed would add, bytes per storage class, restores and key problems"),
    "load-samples": (cmd_load_samples, "create the buckets if missing and put N sample objects"),
    "healthcheck": (cmd_healthcheck, "exit 0 if the local worker's loop is alive, 1 if it is stuck or gone"),
    "completion": (cmd_completion, "print a shell completion script (bash, zsh, tcsh)"),
}
# Commands that read no settings: a health check must not fail on an unrelated setting, and its exit
# codes are only 0 and 1 (Docker reserves 2).
NO_SETTINGS = frozenset({"healthcheck", "completion"})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="movers3", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     description="Move every object under OLD_BUCKET/OLD_PREFIX to "
                                                 "NEW_BUCKET/NEW_PREFIX, with a MariaDB ledger.")
    parser.add_argument("--version", action="version", version=f"movers3 {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    parsers = {}
    for name, (_, help_text) in COMMANDS.items():
        examples = "examples:\n" + "\n".join(f"  {line}" for line in EXAMPLES[name])
        command = parsers[name] = sub.add_parser(name, help=help_text, description=help_text,
                                                 epilog=f"{examples}\n\n{EPILOG}",
                                                 formatter_class=argparse.RawDescriptionHelpFormatter)
        if name not in NO_SETTINGS:
            command.add_argument("--debug", action="store_true", help="show tracebacks with errors")
        # Only the flags of the settings this command reads (settings.GROUPS); load() reads every variable.
        for title, options in GROUPS.items():
            flags = [o for o in options if name in o.commands and not o.secret]
            if flags:
                group = command.add_argument_group(f"{title} settings")
                for option in flags:
                    _add_option(group, option)
    parsers["worker"].add_argument("--exit-when-done", action="store_true",
                                   help="exit 0 once seeding has finished and nothing is left to claim")
    parsers["worker"].add_argument("--worker-id", help="lease owner name (default: host-pid-random)")
    parsers["run"].add_argument("--workers", type=_whole(1, 100_000), default=DEFAULT_RUN_WORKERS,
                                help=f"worker processes (default {DEFAULT_RUN_WORKERS})")
    parsers["run"].add_argument("--count", type=_whole(1, 100_000), default=DEFAULT_SAMPLE_COUNT,
                                help=f"samples to load when LOAD_FILES=true (default {DEFAULT_SAMPLE_COUNT})")
    parsers["status"].add_argument("--json", action="store_true",
                                   help="one JSON object (with --watch: one per interval)")
    parsers["status"].add_argument("--watch", "-w", action="store_true",
                                   help="redraw until the migration ends (the seed finished, nothing pending)")
    parsers["status"].add_argument("--interval", type=_interval, default=2.0, metavar="SECONDS",
                                   help="seconds between redraws with --watch (default 2)")
    parsers["seed"].add_argument("--manifest", metavar="FILE_OR_S3_URI",
                                 help="read an S3 Inventory manifest.json (CSV) or a CSV of bucket,key[,size,etag] "
                                      "instead of listing the bucket")
    parsers["seed"].add_argument("--restart", action="store_true",
                                 help="abandon an unfinished seed round and start a new one")
    parsers["delete-source"].add_argument("--max-deletes", type=_whole(1, 10**10), required=True,
                                          metavar="N",
                                          help="delete at most N source objects in this run (the guard)")
    parsers["delete-source"].add_argument("--dry-run", action="store_true",
                                          help="check every row and delete nothing")
    parsers["plan"].add_argument("--json", action="store_true", help="one JSON object")
    parsers["status"].add_argument("--exact", action="store_true",
                                   help="count every row instead of reading the counters (slow on big ledgers)")
    parsers["report"].add_argument("--output", "-o", help="file to write (default: stdout)")
    parsers["verify"].add_argument("--sample", type=_whole(0, 10_000_000), default=DEFAULT_VERIFY_SAMPLE,
                                   help=f"done rows to check at random, 0 for all (default {DEFAULT_VERIFY_SAMPLE})")
    parsers["verify"].add_argument("--full", action="store_true", help="also compare the bytes (MD5 of both sides)")
    parsers["verify"].add_argument("--mark-failed", action="store_true",
                                   help="set mismatched rows to failed, so that `movers3 retry` copies them again")
    parsers["report"].add_argument("--state", choices=STATES, help="only the rows in this state")
    parsers["report"].add_argument("--format", choices=REPORT_FORMATS, default="csv",
                                   help="csv (spreadsheet-safe) or jsonl (one JSON object a line, exact values)")
    parsers["completion"].add_argument("shell", choices=("bash", "zsh", "tcsh"), help="the shell to complete for")
    parsers["load-samples"].add_argument("--count", type=_whole(1, 100_000), default=DEFAULT_SAMPLE_COUNT,
                                         help=f"number of objects (default {DEFAULT_SAMPLE_COUNT})")
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


def _add_option(parser: argparse.ArgumentParser | argparse._ArgumentGroup, option: Option) -> None:
    # Kept a string for settings.load(): a bad flag gets the same one-line error as a bad variable.
    shown = option.parser.accepts and not option.parser.metavar.startswith("{")  # else the metavar lists them
    accepts = f"{option.parser.accepts}; " if shown else ""
    help_text = f"{option.help} [{accepts}env {option.env}, default {option.shown_default()}]"
    parser.add_argument(option.flag, dest=option.dest, metavar=option.parser.metavar, default=None,
                        help=help_text.replace("%", "%%"))


def _interval(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds (got {value!r})") from None
    if not 0.1 <= number <= 86400:
        raise argparse.ArgumentTypeError(f"must be from 0.1 to 86400 seconds (got {value})")
    return number


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.overrides = {o.env: getattr(args, o.dest) for o in OPTIONS
                      if not o.secret and getattr(args, o.dest, None) is not None}
    redact = logs.Redactor(_env_secrets(os.environ))
    handler, _ = COMMANDS[args.command]
    if args.command in NO_SETTINGS:
        return handler(None, args)
    try:
        settings = load(os.environ, args.overrides)
        redact = logs.Redactor(settings.secrets() + _env_secrets(os.environ))
        logs.configure(format=settings.log_format, level=settings.log_level, secrets=redact.secrets,
                       stream=sys.stdout if args.command in LOGS_ON_STDOUT else sys.stderr)
        return handler(settings, args)
    except Interrupted as exc:
        print(f"movers3: {redact(str(exc))}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Movers3Error as exc:
        if args.debug:
            traceback.print_exc()
        print(f"movers3: error: {redact(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as exc:
        if args.debug:
            traceback.print_exc()
        print(f"movers3: internal error: {type(exc).__name__}: {redact(str(exc))} (run with --debug for details)",
              file=sys.stderr)
        return EXIT_FAILED_ROWS


def _env_secrets(environ: dict | os._Environ) -> list[str]:
    """Secrets as given, even when the settings could not be built from them."""
    found = [environ.get(name, "") for name in
             ("AWS_SECRET_ACCESS_KEY", "OLD_AWS_SECRET_ACCESS_KEY", "NEW_AWS_SECRET_ACCESS_KEY", "MYSQL_URL")]
    try:
        found.append(parse_mysql_url(environ.get("MYSQL_URL", "")).password.reveal())
    except ConfigError:
        pass
    return [s for s in found if s]

