"""For the person watching: `status --watch` (a screen redrawn until the migration ends) and the
progress bar of `movers3 run`. Both are drawn by rich and read only the ledger's summary queries, so
any number of people can watch any number of workers.

On a terminal the screen is redrawn in place; anywhere else (a pipe, a CI log) it is printed once,
when the watch ends, so that a log is not flooded with screens.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime

from rich import box
from rich.console import Console, Group
from rich.filesize import decimal
from rich.live import Live
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from movers3 import routes
from movers3.ledger.db import Database
from movers3.ledger.reads import Counts, Reads
from movers3.ledger.schema import STATES
from movers3.ledger.work import WorkQueue
from movers3.status import duration, status_dict, top_error_codes

DEFAULT_INTERVAL_SECONDS = 2.0
TOP_ERRORS = 5
# Distinct messages read to find the top codes; messages differ mostly by code, so this is plenty.
ERROR_MESSAGES_READ = 200
_STATE_STYLES = {"pending": "yellow", "in_progress": "cyan", "done": "green", "failed": "red"}


def render(
    status: dict,
    errors: list[tuple[str, int]],
    *,
    source: str,
    dest: str,
    now: datetime | None = None,
    finished: bool = False,
) -> Panel:
    """One screen of `status --watch`, from `status.status_dict` and `status.top_error_codes`."""
    now = now or datetime.now(UTC)
    counts = Table(box=box.SIMPLE_HEAD, expand=False, pad_edge=False)
    counts.add_column("state")
    counts.add_column("objects", justify="right")
    counts.add_column("bytes", justify="right")
    for state in STATES:
        counts.add_row(Text(state, style=_STATE_STYLES[state]), f"{status[state]:,}", decimal(status["bytes"][state]))
    counts.add_row(
        Text("total", style="bold"), f"{status['total']:,}", decimal(status["bytes_total"]), end_section=True
    )

    finished_rows = status["done"] + status["failed"]
    total = status["total"]
    share = f"{100.0 * finished_rows / total:5.1f}%" if total else "  -  "
    bar = Table.grid(padding=(0, 1))
    bar.add_row(
        ProgressBar(total=max(total, 1), completed=finished_rows, width=40),
        Text(share),
        Text(f"{finished_rows:,} of {total:,} finished"),
    )

    eta = status["eta_seconds"]
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column()
    facts.add_row(
        "throughput (last minute)",
        f"{status['objects_per_second_last_minute']:,} objects/s, "
        f"{decimal(int(status['bytes_per_second_last_minute']))}/s",
    )
    facts.add_row("ETA", "done" if finished else (duration(eta) if eta is not None else "-"))
    for seed in status["seeds"]:
        facts.add_row(
            "seed",
            f"{routes.route(seed['old_bucket'], seed['old_prefix'])}: {seed['state']}, "
            f"{seed['listed']:,} listed, {seed['added']:,} added",
        )
    if not status["seeds"]:
        facts.add_row("seed", "not started (run `movers3 seed`)")
    facts.add_row("top errors", ", ".join(f"{code} {count:,}" for code, count in errors) if errors else "none")

    title = f"movers3  {source} -> {dest}"
    subtitle = (
        "migration finished" if finished else "watching; Ctrl-C to leave"
    ) + f"  {now.strftime('%Y-%m-%d %H:%M:%S')} UTC"
    return Panel(Group(counts, bar, Text(""), facts), title=title, subtitle=subtitle, expand=False)


class Watcher:
    """Redraws the status every `interval` seconds until the ledger has nothing left to do (the seed
    finished and no row pending or in progress) or `stop` is set."""

    def __init__(
        self,
        db: Database,
        *,
        source: str,
        dest: str,
        interval: float = DEFAULT_INTERVAL_SECONDS,
        console: Console | None = None,
        stop: threading.Event | None = None,
        on_status: Callable[[dict], None] | None = None,
    ) -> None:
        self.reads = Reads(db)
        self.work = WorkQueue(db)  # only to ask whether any work is left
        self.source, self.dest = source, dest
        self.interval = interval
        self.console = console or Console()
        self.stop = stop or threading.Event()
        self.on_status = on_status

    def snapshot(self) -> tuple[dict, list[tuple[str, int]], bool]:
        finished = not self.work.unfinished()
        status = status_dict(self.reads.counts())
        errors = top_error_codes(self.reads.failed_errors(ERROR_MESSAGES_READ), TOP_ERRORS) if status["failed"] else []
        return status, errors, finished

    def run(self) -> dict:
        """Returns the last status; `status["finished"]` says whether the migration had ended."""
        if self.on_status is not None:
            return self._run_plain(self.on_status)
        status, errors, finished = self.snapshot()
        with Live(
            self._screen(status, errors, finished),
            console=self.console,
            auto_refresh=False,
            redirect_stdout=False,
            redirect_stderr=False,
        ) as live:
            while not finished and not self.stop.wait(self.interval):
                status, errors, finished = self.snapshot()
                live.update(self._screen(status, errors, finished), refresh=True)
        return {**status, "finished": finished}

    def _run_plain(self, on_status: Callable[[dict], None]) -> dict:
        """`--watch --json`: one status object per interval, for programs."""
        while True:
            status, errors, finished = self.snapshot()
            status = {**status, "finished": finished, "top_errors": [{"code": c, "count": n} for c, n in errors]}
            on_status(status)
            if finished or self.stop.wait(self.interval):
                return status

    def _screen(self, status: dict, errors: list[tuple[str, int]], finished: bool) -> Panel:
        return render(status, errors, source=self.source, dest=self.dest, finished=finished)


class RunProgress:
    """The progress bar of `movers3 run` on a terminal: rows finished of rows listed so far (the total
    grows while the seed lists), and the workers' log lines printed above it."""

    def __init__(self, console: Console) -> None:
        self.progress = Progress(
            TextColumn("[bold]copying"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self.task = self.progress.add_task("copying", total=None, rate="")
        self._lock = threading.Lock()

    def __enter__(self) -> RunProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def update(self, counts: Counts) -> None:
        finished = counts.rows["done"] + counts.rows["failed"]
        rate = f"{counts.objects_per_second:,.1f} objects/s"
        with self._lock:
            self.progress.update(self.task, total=max(counts.total, 1), completed=finished, rate=rate)

    def print(self, line: str) -> None:
        with self._lock:
            self.progress.console.print(line, markup=False, highlight=False, soft_wrap=True)
