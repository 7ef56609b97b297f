"""What each `movers3` command does, once its settings are loaded: open what it needs, run, print a
summary line. cli.py parses the command line and turns our errors into one line and an exit code.

Each command imports what it needs when it runs, not when this module is imported: the CLI imports
this module for every command, and a worker process has no use for `check`, the seed or the sign-off
page (together about a second of CPU at start, in every process)."""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import secrets
import sys
import threading
from typing import TYPE_CHECKING

from movers3 import check, logs, routes
from movers3.exceptions import (
    EXIT_CONFIG,
    EXIT_FAILED_ROWS,
    EXIT_INTERRUPTED,
    EXIT_OK,
    ConfigError,
    Movers3Error,
    SchemaError,
    StorageError,
)

if TYPE_CHECKING:
    from movers3.ledger.db import Database
    from movers3.settings import Settings


def cmd_init(settings: Settings, args: argparse.Namespace) -> int:
    from movers3.ledger import schema
    from movers3.ledger.db import Database

    version = schema.create(Database(settings.mysql))
    print(f"ledger schema is at version {version} in database {settings.mysql.database!r}")
    return EXIT_OK


def cmd_seed(settings: Settings, args: argparse.Namespace) -> int:
    from movers3 import signals
    from movers3.ledger.seeds import Seeds
    from movers3.seed.seeder import Seeder
    from movers3.transfer import s3

    seeds = Seeds(open_ledger(settings))
    client = s3.client(settings.source, pool_size=settings.seed_threads + 16, parse_timestamps=False)
    seeder = Seeder(seeds, client, settings, manifest_uri=args.manifest, restart=args.restart)
    with signals.on_stop(seeder.stopped.set):
        stats = seeder.run()
    source = routes.route(settings.old_bucket, settings.old_prefix)
    if args.json:
        counts = {k: getattr(stats, k) for k in ("listed", "added", "changed", "older", "skipped")}
        print(json.dumps({"source": source, "round": stats.round, "manifest": args.manifest, **counts}))
    else:
        older = f"{stats.older:,} older than the version copied (left alone), " if stats.older else ""
        print(
            f"seeded {source} (round {stats.round}"
            f"{', from ' + args.manifest if args.manifest else ''}): {stats.listed:,} listed, {stats.added:,} added, "
            f"{stats.changed:,} changed, {older}{stats.skipped:,} skipped by this process"
        )
    # Skipped keys are a warning, not a failure: the seed finished, every other key is queued, and the
    # workers waiting on it (compose's service_completed_successfully, a job's success) must start.
    # The log names each one (key_skipped) and `status` counts them.
    return EXIT_OK


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    import structlog

    from movers3 import signals
    from movers3.ledger import repoint
    from movers3.ledger.reads import Reads
    from movers3.ledger.uploads import UploadJournal
    from movers3.ledger.work import WorkQueue
    from movers3.transfer import s3
    from movers3.transfer.copier import ObjectCopier
    from movers3.transfer.copy_object import CrtEngine
    from movers3.worker import health
    from movers3.worker.loop import Worker, WorkerConfig, new_worker_id
    from movers3.worker.observer import Observers, WorkerObserver

    db = open_ledger(settings)
    work = WorkQueue(db)
    if settings.repoint_sql_file:
        work.repoint = repoint.load(settings.repoint_sql_file)
        repoint.check(db, work.repoint)
    stop = threading.Event()
    # A lease owner names one live process: a --worker-id given to two (a copied unit file, a restart
    # before the old one is gone) gets a suffix of its own. The claim token fences them even so.
    worker_id = f"{args.worker_id}~{secrets.token_hex(3)}" if args.worker_id else new_worker_id()
    journal = UploadJournal.open(db, worker_id)
    copier = ObjectCopier.from_settings(settings, journal, stop)
    folder = routes.folder(settings.old_prefix)
    s3.check_listable(copier.source, settings.old_bucket, folder, tries=settings.max_attempts)
    heartbeat = health.Heartbeat(settings.health_file)
    observers: list[WorkerObserver] = [heartbeat]
    server = gauges = None
    if settings.metrics_port:
        # prometheus-client is an optional extra
        from movers3.worker.metrics import LedgerGauges, Metrics, MetricsServer

        metrics = Metrics()
        metrics.watch_heartbeat(heartbeat)
        server = MetricsServer(
            metrics, settings.metrics_host, settings.metrics_port, heartbeat, max_age=settings.health_max_age
        ).start()
        gauges = LedgerGauges(Reads(db.another()).state_counts, metrics).start()
        observers.append(metrics)
        structlog.get_logger(__name__).info("metrics_serving", address="{}:{}".format(*server.address))
    config = WorkerConfig.from_settings(settings, exit_when_done=args.exit_when_done)
    worker = Worker(
        work,
        copier,
        config,
        worker_id=worker_id,
        stop_event=stop,
        journal=journal,
        observer=Observers(*observers),
        # awscrt's CopyObjects are sent from the loop and finished on its threads (worker/hot_path.py);
        # boto3's need a thread each.
        hot_sender=copier.engine if isinstance(copier.engine, CrtEngine) else None,
    )
    # What exists now (modules, clients, service models) lives as long as the process: out of the
    # collector's sight, its full collections stop walking it every few thousand objects copied.
    gc.freeze()
    try:
        with signals.on_stop(worker.stop):
            stats = worker.run()
    finally:
        if gauges is not None:
            gauges.stop()
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
    from movers3 import signals
    from movers3.ledger import schema
    from movers3.ledger.db import Database
    from movers3.ledger.reads import Reads
    from movers3.ledger.seeds import Seeds
    from movers3.runner import Runner, child_environment

    db = Database(settings.mysql)
    schema.create(db)  # a worker started before the schema exists exits 4
    seeds, reads = Seeds(db), Reads(db)
    # The seed round is open before the workers start: after a finished round, a worker with
    # --exit-when-done that found nothing pending would leave before this process began seeding.
    # The seeder joins this round.
    seeds.seed_round(settings.old_bucket, settings.old_prefix, settings.new_bucket, settings.new_prefix, input=None)
    child_env = child_environment(os.environ, args.overrides)
    on_terminal = sys.stderr.isatty()
    if on_terminal and settings.log_format == "auto":
        child_env["LOG_FORMAT"] = "console"  # the workers write to a pipe read by this process
    runner = Runner(reads, workers=args.workers, child_env=child_env, piped=on_terminal)
    # The workers start before this process imports boto3 and the seed, and loads the samples: each
    # takes a second or so to import what it needs, and none needs what follows.
    with signals.on_stop(runner.stop), runner:
        from movers3.samples import load_samples
        from movers3.seed.seeder import Seeder
        from movers3.transfer import s3

        client = s3.client(settings.source, pool_size=settings.seed_threads + 16, parse_timestamps=False)
        if settings.load_files:
            load_samples(client, s3.client(settings.dest), settings, args.count)
        seeder = Seeder(seeds, client, settings)
        if not on_terminal:
            codes = runner.run(seeder)
        else:
            from rich.console import Console

            from movers3.watch import RunProgress

            with RunProgress(Console(stderr=True)) as progress:
                codes = runner.run(seeder, progress)
    from movers3.status import render_status, status_dict

    status = status_dict(reads.counts())
    print(render_status(status))
    if runner.stopped.is_set():
        return EXIT_INTERRUPTED
    if any(codes):
        raise Movers3Error(f"worker processes exited with codes {codes}")
    return EXIT_FAILED_ROWS if status["failed"] else EXIT_OK


def cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    from movers3.ledger.reads import Reads
    from movers3.status import render_status, status_dict

    db = open_ledger(settings)
    if args.watch:
        return watch_status(db, settings, args)
    status = status_dict(Reads(db).counts(exact=args.exact))
    print(json.dumps(status) if args.json else render_status(status))
    return EXIT_OK


def watch_status(db: Database, settings: Settings, args: argparse.Namespace) -> int:
    from movers3 import signals
    from movers3.watch import Watcher  # rich is only needed here and in `run`

    stop = threading.Event()

    def emit(status: dict) -> None:
        print(json.dumps(status), flush=True)

    watcher = Watcher(
        db,
        source=routes.route(settings.old_bucket, settings.old_prefix),
        dest=routes.route(settings.new_bucket, settings.new_prefix),
        interval=args.interval,
        stop=stop,
        on_status=emit if args.json else None,
    )
    with signals.on_stop(stop.set):
        watcher.run()
    return EXIT_OK  # leaving the watch early is not a failure of anything


def cmd_report(settings: Settings, args: argparse.Namespace) -> int:
    from movers3.ledger.reads import Reads
    from movers3.report import write_report

    if args.summary:
        if args.output or args.state:
            raise ConfigError("report --summary: writes the whole ledger's page, without --output or --state")
        from movers3 import summary

        summary.write(summary.gather(Reads(open_ledger(settings))), args.summary)
        print(f"wrote the summary to {args.summary}", file=sys.stderr)
        return EXIT_OK
    rows = Reads(open_ledger(settings)).report(state=args.state)
    if args.output in (None, "-"):
        count = write_report(rows, sys.stdout, args.format)
    else:
        with open(args.output, "w", newline="", encoding="utf-8") as out:
            count = write_report(rows, out, args.format)
        print(f"wrote {count:,} rows to {args.output}", file=sys.stderr)
    return EXIT_OK


def cmd_plan(settings: Settings, args: argparse.Namespace) -> int:
    from movers3 import signals
    from movers3.ledger import schema
    from movers3.ledger.db import Database
    from movers3.ledger.seeds import Seeds
    from movers3.seed.planner import Planner
    from movers3.seed.planner import render as render_plan
    from movers3.transfer import s3

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
    from movers3 import signals
    from movers3.delete_source import SourceDeleter
    from movers3.transfer import s3

    db = open_ledger(settings)
    source = s3.client(settings.source, pool_size=SourceDeleter.threads + 4)
    dest = source if settings.dest == settings.source else s3.client(settings.dest, pool_size=SourceDeleter.threads + 4)
    deleter = SourceDeleter(db, source, dest, settings, max_deletes=args.max_deletes, dry_run=args.dry_run)
    with signals.on_stop(deleter.stopped.set):
        stats = deleter.run()
    source = routes.route(settings.old_bucket, settings.old_prefix)
    if args.json:
        print(
            json.dumps(
                {
                    "source": source,
                    "dry_run": args.dry_run,
                    "deleted": stats.deleted,
                    "would_delete": stats.would_delete,
                    "already_gone": stats.already_gone,
                    "skipped": dict(sorted(stats.skipped.items())),
                    "max_deletes": args.max_deletes,
                    "guard_reached": stats.guard_reached,
                }
            )
        )
        return EXIT_FAILED_ROWS if stats.skipped else EXIT_OK
    verb = "would delete" if args.dry_run else "deleted"
    count = stats.would_delete if args.dry_run else stats.deleted
    skipped = ", ".join(f"{n:,} {reason}" for reason, n in sorted(stats.skipped.items())) or "none"
    print(
        f"{verb} {count:,} source objects under {source}; "
        f"{stats.already_gone:,} already gone; skipped: {skipped}"
        + (f"; stopped at --max-deletes {args.max_deletes:,}" if stats.guard_reached else "")
    )
    return EXIT_FAILED_ROWS if stats.skipped else EXIT_OK


def cmd_retry(settings: Settings, args: argparse.Namespace) -> int:
    from movers3.ledger.work import WorkQueue

    count, kept = WorkQueue(open_ledger(settings)).retry_failed()
    if args.json:
        print(json.dumps({"pending_again": count, "kept_failed": kept}))
        return EXIT_OK
    print(
        f"{count:,} failed rows are pending again"
        + (
            f"; {kept:,} stay failed: their source was deleted by delete-source (restore it to copy them)"
            if kept
            else ""
        )
    )
    return EXIT_OK


def cmd_verify(settings: Settings, args: argparse.Namespace) -> int:
    from movers3.ledger.reads import Reads
    from movers3.ledger.work import WorkQueue
    from movers3.progress import Progress
    from movers3.transfer import s3
    from movers3.verify import MISMATCH_ERROR_PREFIX, Verifier

    db = open_ledger(settings)
    verifier = Verifier(s3.client(settings.source), s3.client(settings.dest), full=args.full)
    rows = Reads(db).done_rows(args.sample, random.Random())
    marks = WorkQueue(db.another())  # its own connection: a write never shares one with the read
    checked = bad = marked = 0
    mismatches = []  # with --json: in the summary, which is then the only output
    progress = Progress("verify")
    for row, finding in verifier.run(rows):
        checked += 1
        progress.tick(checked, mismatched=bad, marked=marked)
        if finding is None:
            continue
        bad += 1
        problems = "; ".join(finding.problems)
        if args.json:
            mismatches.append(
                {
                    "id": row.id,
                    "old": f"{row.old_bucket}/{row.old_key}",
                    "new": f"{row.new_bucket}/{row.new_key}",
                    "problems": list(finding.problems),
                }
            )
        else:
            print(
                f"MISMATCH id={row.id} {row.old_bucket}/{logs.escape_controls(row.old_key)} -> "
                f"{row.new_bucket}/{logs.escape_controls(row.new_key)}: {problems}"
            )
        if args.mark_failed and marks.fail_done(row.id, MISMATCH_ERROR_PREFIX + problems):
            marked += 1
    progress.done(checked, mismatched=bad, marked=marked)
    if args.json:
        summary = {"checked": checked, "ok": checked - bad, "mismatched": bad, "full": args.full}
        print(json.dumps({**summary, "marked_failed": marked, "mismatches": mismatches}))
        return EXIT_FAILED_ROWS if bad else EXIT_OK
    tail = f"; {marked:,} marked failed (`movers3 retry` copies them again)" if args.mark_failed else ""
    print(
        f"verified {checked:,} done rows{' (full: bytes compared)' if args.full else ''}: "
        f"{checked - bad:,} ok, {bad:,} mismatched{tail}"
    )
    return EXIT_FAILED_ROWS if bad else EXIT_OK


def cmd_load_samples(settings: Settings, args: argparse.Namespace) -> int:
    from movers3.samples import load_samples
    from movers3.transfer import s3

    count = load_samples(s3.client(settings.source), s3.client(settings.dest), settings, args.count)
    print(f"put {count:,} sample objects under {routes.route(settings.old_bucket, settings.old_prefix)}")
    return EXIT_OK


def cmd_check(settings: Settings, args: argparse.Namespace) -> int:
    checks = check.run(settings, args.role)
    _print_checks(checks, args, logs.Redactor(settings.secrets()))
    return check.exit_code(checks)


def check_unloadable(error: ConfigError, args: argparse.Namespace, redact: logs.Redactor) -> int:
    """`check` with settings that do not load: the problem as its one line, and exit 2 as for any
    command (nothing else can be checked without them)."""
    _print_checks([check.Check("settings", check.PROBLEM, str(error))], args, redact)
    return EXIT_CONFIG


def _print_checks(checks: list[check.Check], args: argparse.Namespace, redact: logs.Redactor) -> None:
    shown = [check.Check(c.name, c.status, redact(logs.escape_controls(c.detail))) for c in checks]
    print(json.dumps([c.as_dict() for c in shown]) if args.json else check.render(shown))


def open_ledger(settings: Settings) -> Database:
    """The ledger's connection, once its schema is known to be current."""
    from movers3.ledger import schema
    from movers3.ledger.db import Database

    db = Database(settings.mysql)
    schema.check(db)
    return db
