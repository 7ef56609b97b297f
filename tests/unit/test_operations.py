"""Pure logic of the operator features: the heartbeat and its verdicts, metrics counting, the watch
screen, report formats and error codes, the CLI's help and completion, per-worker environments."""

import io
import json
import os
import re
from datetime import UTC, datetime

import pytest
from prometheus_client import CollectorRegistry
from rich.console import Console

from movers3 import cli
from movers3.exceptions import ConfigError, CopyError, LedgerUnavailable
from movers3.ledger.work import Outcome
from movers3.report import REPORT_COLUMNS, write_jsonl, write_report
from movers3.runner import worker_environment
from movers3.settings import COPYING, OPTIONS, load
from movers3.status import error_code_of, top_error_codes
from movers3.transfer import retry
from movers3.watch import render
from movers3.worker import health
from movers3.worker.metrics import LedgerGauges, Metrics
from movers3.worker.observer import IDLE, WORKING, Observers, WorkerObserver


class Clock:
    def __init__(self, now=1000.0):
        self.now = now

    def __call__(self):
        return self.now


# -- heartbeat ------------------------------------------------------------------------------


def test_heartbeat_file_is_written_at_start_throttled_and_removed_at_stop(tmp_path):
    clock = Clock()
    path = tmp_path / "deep" / "health.json"
    beat = health.Heartbeat(path, clock=clock, write_every=2.0)
    beat.worker_started("w-1")
    first = json.loads(path.read_text())
    assert (first["worker"], first["pid"], first["monotonic"]) == ("w-1", os.getpid(), 1000.0)
    clock.now = 1001.0
    beat.loop_tick(WORKING, 5)
    assert json.loads(path.read_text())["monotonic"] == 1000.0  # within the write interval: not rewritten
    assert beat.age() == 0.0  # but the in-memory tick moved
    clock.now = 1002.5
    beat.loop_tick(IDLE, 0)
    assert json.loads(path.read_text())["monotonic"] == 1002.5
    assert not list(path.parent.glob(".*tmp"))  # replaced atomically, no temporary left behind
    beat.worker_stopped()
    assert not path.exists() and not beat.healthy()


def test_heartbeat_without_a_file_still_answers_in_memory():
    clock = Clock()
    beat = health.Heartbeat(None, clock=clock)
    beat.loop_tick(WORKING, 3)
    clock.now += 59
    assert beat.healthy(60)
    clock.now += 2
    assert not beat.healthy(60)


def test_a_heartbeat_folder_that_cannot_be_made_is_a_config_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="^HEALTH_FILE:"):
        health.Heartbeat(tmp_path / "file" / "health.json")


@pytest.mark.parametrize(
    "age,alive,healthy,words",
    [
        (5, True, True, "loop passed 5.0s ago"),
        (61, True, False, "is stuck"),
        (5, False, False, "is gone"),
    ],
)
def test_check_judges_age_and_process(tmp_path, age, alive, healthy, words):
    path = tmp_path / "h.json"
    path.write_text(
        json.dumps({"pid": 4242, "worker": "w-9", "state": "working", "in_flight": 2, "done": 7, "monotonic": 100.0})
    )
    verdict = health.check(path, 60, clock=Clock(100.0 + age), pid_alive=lambda pid: alive and pid == 4242)
    assert verdict.healthy is healthy and words in verdict.message and "w-9" in verdict.message


@pytest.mark.parametrize("content,words", [(None, "no heartbeat"), ("{not json", "unreadable"), ("{}", "unreadable")])
def test_check_fails_on_a_missing_or_broken_file(tmp_path, content, words):
    path = tmp_path / "h.json"
    if content is not None:
        path.write_text(content)
    verdict = health.check(path, 60)
    assert not verdict.healthy and words in verdict.message


# -- observers and metrics -----------------------------------------------------------------


class Recorder(WorkerObserver):
    def __init__(self):
        self.calls = []

    def loop_tick(self, state, in_flight):
        self.calls.append(("tick", state, in_flight))

    def copy_retrying(self, code):
        self.calls.append(("retry", code))


def test_observers_fan_out_to_each():
    a, b = Recorder(), Recorder()
    both = Observers(a, b)
    both.loop_tick(IDLE, 0)
    both.copy_retrying("SlowDown")
    both.worker_started("w")  # the base class's no-op
    assert a.calls == b.calls == [("tick", IDLE, 0), ("retry", "SlowDown")]


def test_retry_reports_the_code_of_each_retried_attempt():
    import threading

    seen, calls = (
        [],
        iter(
            [
                CopyError("x", code="SlowDown", retryable=True),
                CopyError("y", code="InternalError", retryable=True),
                None,
            ]
        ),
    )

    def flaky():
        error = next(calls)
        if error:
            raise error
        return "ok"

    result = retry.call(
        flaky,
        tries=5,
        stop=threading.Event(),
        attempts=retry.Attempts(),
        initial=0.001,
        maximum=0.002,
        on_retry=seen.append,
    )
    assert result == "ok" and seen == ["SlowDown", "InternalError"]


def sample(registry, name, **labels):
    return registry.get_sample_value(name, labels or None)


def test_metrics_count_what_reaches_the_ledger():
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    metrics.worker_started("w-1")
    metrics.rows_claimed(3, 0.004)
    metrics.rows_claimed(0, 0.002)
    metrics.copy_succeeded(100, 0.3)
    metrics.copy_retrying("SlowDown")
    metrics.loop_tick(WORKING, 3)
    outcomes = [
        Outcome(1, "done", 1, size=100),
        Outcome(2, "done", 1, size=50),
        Outcome(3, "failed", 1, code="NoSuchKey"),
        Outcome(4, "failed", 1),
        Outcome(5, "pending", 0),
    ]
    metrics.rows_finished(outcomes, written=4)
    assert sample(registry, "movers3_objects_copied_total") == 2
    assert sample(registry, "movers3_bytes_copied_total") == 150
    assert sample(registry, "movers3_copy_failures_total", code="NoSuchKey") == 1
    assert sample(registry, "movers3_copy_failures_total", code="Unknown") == 1
    assert sample(registry, "movers3_rows_released_total") == 1
    assert sample(registry, "movers3_results_dropped_total") == 1
    assert sample(registry, "movers3_copy_retries_total", code="SlowDown") == 1
    assert sample(registry, "movers3_rows_claimed_total") == 3
    assert sample(registry, "movers3_claim_duration_seconds_count") == 2
    assert sample(registry, "movers3_copy_duration_seconds_bucket", le="0.5") == 1
    assert sample(registry, "movers3_rows_in_flight") == 3
    assert sample(registry, "movers3_info", version=__import__("movers3").__version__, worker="w-1") == 1
    metrics.worker_stopped()
    assert sample(registry, "movers3_rows_in_flight") == 0


def test_the_ledger_gauges_follow_the_reads_and_keep_the_last_numbers_through_an_outage():
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    answers = iter(
        [
            ({"pending": 5, "done": 1}, {"pending": 500, "done": 100}),
            LedgerUnavailable("ledger unreachable"),
            ({"pending": 0, "in_progress": 1, "done": 5, "failed": 1}, {"done": 600, "in_progress": 7}),
        ]
    )
    reads = []

    def read():
        reads.append(1)
        answer = next(answers, None)
        if answer is None:
            gauges.stop()
            raise LedgerUnavailable("done")
        if isinstance(answer, Exception):
            # The numbers of the read before stay through the outage.
            assert sample(registry, "movers3_ledger_rows", state="pending") == 5
            raise answer
        return answer

    gauges = LedgerGauges(read, metrics, interval=0.01).start()
    gauges._thread.join(10)
    assert not gauges._thread.is_alive() and len(reads) == 4
    rows = {s: sample(registry, "movers3_ledger_rows", state=s) for s in ("pending", "in_progress", "done", "failed")}
    assert rows == {"pending": 0, "in_progress": 1, "done": 5, "failed": 1}
    assert sample(registry, "movers3_ledger_bytes", state="done") == 600
    assert sample(registry, "movers3_ledger_bytes", state="failed") == 0  # every state, zero when absent


# -- status --watch ------------------------------------------------------------------------


def status(**rows):
    base = {"pending": 0, "in_progress": 0, "done": 0, "failed": 0}
    base.update(rows)
    return {
        "total": sum(base.values()),
        **base,
        "bytes": {s: n * 1000 for s, n in base.items()},
        "bytes_total": sum(base.values()) * 1000,
        "objects_per_second_last_minute": 12.5,
        "bytes_per_second_last_minute": 12500.0,
        "eta_seconds": 80 if base["pending"] else None,
        "seeds": [
            {"old_bucket": "legacy-s3", "old_prefix": "images", "state": "finished", "listed": 1000, "added": 1000}
        ],
    }


def screen(panel, width=100):
    console = Console(record=True, width=width, file=io.StringIO(), color_system=None)
    console.print(panel)
    return console.export_text()


def test_the_watch_screen_shows_counts_throughput_eta_and_top_errors():
    text = screen(
        render(
            status(pending=1000, done=2000, failed=12),
            [("NoSuchKey", 10), ("AccessDenied", 2)],
            source="legacy-s3/images/",
            dest="production-s3/avatar/",
            now=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        )
    )
    assert "movers3  legacy-s3/images/ -> production-s3/avatar/" in text
    assert "2,000" in text and "1,000" in text and "3,012" in text
    assert "12.5 objects/s, 12.5 kB/s" in text
    assert "1m20s" in text and "66.8%" in text and "2,012 of 3,012 finished" in text
    assert "NoSuchKey 10, AccessDenied 2" in text
    assert "watching" in text and "2026-01-02 03:04:05 UTC" in text


def test_the_last_watch_screen_says_the_migration_finished():
    text = screen(render(status(done=5), [], source="a/", dest="b/", finished=True))
    assert "migration finished" in text and "100.0%" in text and re.search(r"top errors\s+none", text)


# -- report -----------------------------------------------------------------------------------


def row(i, **over):
    base = dict.fromkeys(REPORT_COLUMNS, "")
    base.update(id=i, old_key=f"images/{i}.png", state="failed", size=i, attempts=1, error="=cmd")
    base.update(over)
    return base


def test_jsonl_keeps_values_exactly_and_csv_guards_formulas():
    out = io.StringIO()
    assert write_report(iter([row(1), row(2, old_key="images/é\n.png")]), out, "jsonl") == 2
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert lines[0]["error"] == "=cmd" and lines[1]["old_key"] == "images/é\n.png"
    assert list(lines[0]) == list(REPORT_COLUMNS)
    csv_out = io.StringIO()
    write_report(iter([row(1)]), csv_out, "csv")
    assert "'=cmd" in csv_out.getvalue()


def test_report_writers_stream_row_by_row():
    out = io.StringIO()
    written = []

    def rows():
        for i in range(3):
            written.append(out.getvalue().count("\n"))  # lines already out when row i is pulled
            yield row(i)

    write_jsonl(rows(), out)
    assert written == [0, 1, 2]


@pytest.mark.parametrize(
    "message,code",
    [
        ("CopyObject: NoSuchKey: The specified key does not exist.", "NoSuchKey"),
        ("HeadObject on the source: SlowDown: Please reduce", "SlowDown"),
        ("internal error: ValueError: boom", "ValueError"),
        ("CopyObject: ETag mismatch: destination 'a' != source 'b'", "ETag mismatch"),
        (
            "lease expired on every attempt: the workers holding this row stopped renewing it",
            "lease expired on every attempt",
        ),
        ("", "(no message)"),
    ],
)
def test_error_codes_come_from_recorded_errors(message, code):
    assert error_code_of(message) == code


def test_top_error_codes_sum_messages_by_code():
    errors = [
        ("CopyObject: NoSuchKey: a", 3),
        ("HeadObject on the source: NoSuchKey: b", 4),
        ("CopyObject: AccessDenied: c", 5),
        ("internal error: KeyError: d", 1),
    ]
    assert top_error_codes(errors, 2) == [("NoSuchKey", 7), ("AccessDenied", 5)]


# -- settings, CLI, runner ------------------------------------------------------------------


def test_operator_settings_parse_and_are_validated():
    s = load({"METRICS_PORT": "9100", "METRICS_HOST": "127.0.0.1", "HEALTH_FILE": "/tmp/h", "HEALTH_MAX_AGE": "30"})
    assert (s.metrics_port, s.metrics_host, s.health_file, s.health_max_age) == (9100, "127.0.0.1", "/tmp/h", 30)
    assert (load({}).metrics_port, load({}).health_file, load({}).health_max_age) == (0, None, 60)
    for name, value in (("METRICS_PORT", "70000"), ("METRICS_PORT", "x"), ("HEALTH_MAX_AGE", "0")):
        with pytest.raises(ConfigError, match=f"^{name}:"):
            load({name: value})


def test_every_command_has_help_with_examples_and_worker_flags_only_where_they_apply(capsys):
    parser = cli.build_parser()
    for name in cli.COMMANDS:
        with pytest.raises(SystemExit) as done:
            parser.parse_args([name, "--help"])
        assert done.value.code == 0
        text = capsys.readouterr().out
        assert "examples:" in text and f"movers3 {name}".split()[0] in text, name
        assert ("--metrics-port" in text) == (name == "worker"), name
        assert ("--health-file" in text) == (name in ("worker", "healthcheck")), name
        assert ("--copy-mode" in text) == (name in ("worker", "run", "check")), name
    operating = {o.env for o in OPTIONS if "worker" in o.commands and not set(COPYING) <= set(o.commands)}
    assert operating == {"METRICS_PORT", "METRICS_HOST", "HEALTH_FILE", "HEALTH_MAX_AGE"}


def test_version_and_completion(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--version"])
    assert capsys.readouterr().out.startswith("movers3 ")
    assert cli.main(["completion", "bash"]) == 0
    script = capsys.readouterr().out
    assert "complete" in script and "healthcheck" in script and "--metrics-port" in script


def test_healthcheck_needs_no_settings_and_never_exits_2(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("URL_ENDPOINT", "not a url")  # would stop any other command with exit 2
    monkeypatch.delenv("HEALTH_FILE", raising=False)
    assert cli.main(["healthcheck"]) == 1
    assert cli.main(["healthcheck", "--health-file", str(tmp_path / "none")]) == 1
    monkeypatch.setenv("HEALTH_MAX_AGE", "zero")
    assert cli.main(["healthcheck", "--health-file", str(tmp_path / "none")]) == 1
    assert "HEALTH_MAX_AGE" in capsys.readouterr().err


def test_each_run_worker_gets_its_own_metrics_port_and_no_health_file():
    env = {"METRICS_PORT": "9100", "HEALTH_FILE": "/tmp/h", "OTHER": "x"}
    assert [worker_environment(env, i)["METRICS_PORT"] for i in range(3)] == ["9100", "9101", "9102"]
    assert worker_environment(env, 0)["HEALTH_FILE"] == "" and worker_environment(env, 0)["OTHER"] == "x"
    assert worker_environment({"METRICS_PORT": "0"}, 2)["METRICS_PORT"] == "0"
    assert env["METRICS_PORT"] == "9100"  # not changed in place


def test_the_health_limit_is_above_the_idle_poll():
    from movers3.settings import MIN_HEALTH_MAX_AGE
    from movers3.worker import loop as worker

    assert MIN_HEALTH_MAX_AGE > worker.POLL_MAX_SECONDS + worker.FLUSH_SECONDS
    with pytest.raises(ConfigError, match="^HEALTH_MAX_AGE:"):
        load({"HEALTH_MAX_AGE": "10"})


@pytest.mark.parametrize(
    "args,handled",
    [
        (["healthcheck"], True),
        (["healthcheck", "--health-file", "F"], True),
        (["healthcheck", "--health-file=F"], True),
        (["healthcheck", "--health-file", "F", "--health-max-age", "30"], True),
        (["healthcheck", "--help"], False),
        (["healthcheck", "--bogus"], False),
        (["healthcheck", "--health-file"], False),
        (["status"], False),
        ([], False),
    ],
)
def test_the_health_check_fast_path_takes_only_its_plain_form(args, handled, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HEALTH_FILE", raising=False)
    code = health.fast_path(args)
    assert (code is not None) is handled
    if handled:
        assert code == 1  # no worker here


def test_the_health_check_imports_neither_boto3_nor_the_database_driver(tmp_path):
    import subprocess
    import sys

    probe = (
        "import sys; from movers3.entry import main; code = main(['healthcheck', '--health-file', 'none']); "
        "print(sorted(m for m in ('boto3', 'pymysql', 'structlog', 'rich', 'movers3.cli') if m in sys.modules)); "
        "sys.exit(code)"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert done.returncode == 1 and done.stdout.strip() == "[]", (done.stdout, done.stderr)
    assert "movers3: unhealthy: no heartbeat at none" in done.stderr
