"""Prometheus metrics of one worker process, served with /healthz on `--metrics-port`.

Optional: `pip install 'movers3[metrics]'` brings prometheus-client (the image has it). Counters are
counted where the ledger is written (`rows_finished`), so they agree with the ledger, and latencies
where they happen (the claim on the main thread, the copy on its copy thread). Each process has its
own registry, so tests and `movers3 run` can hold several.

The ledger's rows and bytes per state (the migration's progress, whatever each worker did) are read
from the trigger-kept counters by a thread of their own every LEDGER_READ_SECONDS, so a scrape never
waits on the database and the claim loop never pays for them.
"""

from __future__ import annotations

import json
import socketserver
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import structlog

from movers3 import __version__
from movers3.exceptions import ConfigError, LedgerError
from movers3.ledger.schema import STATES
from movers3.ledger.work import Outcome
from movers3.worker.health import DEFAULT_MAX_AGE_SECONDS, Heartbeat
from movers3.worker.observer import WorkerObserver

try:
    import prometheus_client
except ImportError:  # the [metrics] extra is not installed
    prometheus_client = None  # type: ignore[assignment]

# A copy is one request for small objects and minutes for multipart ones.
COPY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0)
# A claim is one short transaction: milliseconds unless the database is in trouble.
CLAIM_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
UNKNOWN_CODE = "Unknown"
# A handful of counter rows per read; every few seconds is plenty for a progress bar and an ETA.
LEDGER_READ_SECONDS = 5.0

log = structlog.get_logger(__name__)


class Metrics(WorkerObserver):
    def __init__(self, registry: Any = None) -> None:
        if prometheus_client is None:
            raise ConfigError("METRICS_PORT: Prometheus metrics need prometheus-client: pip install 'movers3[metrics]'")
        p = prometheus_client
        self.registry = registry or p.CollectorRegistry()
        r = self.registry
        self.info = p.Info("movers3", "The movers3 worker process", registry=r)
        self.info.info({"version": __version__, "worker": ""})
        self.objects = p.Counter(
            "movers3_objects_copied", "Objects copied and verified, as written to the ledger", registry=r
        )
        self.bytes = p.Counter("movers3_bytes_copied", "Bytes of the objects copied", registry=r)
        self.failures = p.Counter("movers3_copy_failures", "Rows failed, by S3 error code", ["code"], registry=r)
        self.retries = p.Counter(
            "movers3_copy_retries", "Copy attempts that failed and were retried, by error code", ["code"], registry=r
        )
        self.released = p.Counter(
            "movers3_rows_released", "Rows given back unfinished (shutdown, misconfigured credentials)", registry=r
        )
        self.dropped = p.Counter(
            "movers3_results_dropped",
            "Results dropped because another worker had taken the row over after the lease ran out",
            registry=r,
        )
        self.claimed = p.Counter("movers3_rows_claimed", "Rows claimed from the ledger", registry=r)
        self.claim_seconds = p.Histogram(
            "movers3_claim_duration_seconds", "Time of one claim transaction", buckets=CLAIM_BUCKETS, registry=r
        )
        self.copy_seconds = p.Histogram(
            "movers3_copy_duration_seconds",
            "Time to copy and verify one object, retries included",
            buckets=COPY_BUCKETS,
            registry=r,
        )
        self.in_flight = p.Gauge("movers3_rows_in_flight", "Rows claimed and not yet written back", registry=r)
        self.loop_age = p.Gauge(
            "movers3_loop_heartbeat_age_seconds", "Seconds since the worker loop last passed (liveness)", registry=r
        )
        # The whole ledger, as every worker sees it: the same numbers from each (take the max, not the sum).
        self.ledger_rows = p.Gauge(
            "movers3_ledger_rows", "Rows of the ledger per state (all workers' work)", ["state"], registry=r
        )
        self.ledger_bytes = p.Gauge(
            "movers3_ledger_bytes", "Bytes of the ledger's objects per state (all workers' work)", ["state"], registry=r
        )

    def ledger_counts(self, rows: dict[str, int], sizes: dict[str, int]) -> None:
        for state in STATES:
            self.ledger_rows.labels(state=state).set(rows.get(state, 0))
            self.ledger_bytes.labels(state=state).set(sizes.get(state, 0))

    def watch_heartbeat(self, heartbeat: Heartbeat) -> None:
        self.loop_age.set_function(heartbeat.age)

    # -- observer hooks -----------------------------------------------------------------------

    def worker_started(self, worker_id: str) -> None:
        self.info.info({"version": __version__, "worker": worker_id})

    def loop_tick(self, state: str, in_flight: int) -> None:
        self.in_flight.set(in_flight)

    def rows_claimed(self, count: int, seconds: float) -> None:
        self.claim_seconds.observe(seconds)
        self.claimed.inc(count)

    def copy_retrying(self, code: str) -> None:
        self.retries.labels(code=code or UNKNOWN_CODE).inc()

    def copy_succeeded(self, size: int, seconds: float) -> None:
        self.copy_seconds.observe(seconds)

    def rows_finished(self, outcomes: Sequence[Outcome], written: int) -> None:
        for o in outcomes:
            if o.state == "done":
                self.objects.inc()
                self.bytes.inc(o.size or 0)
            elif o.state == "failed":
                self.failures.labels(code=o.code or UNKNOWN_CODE).inc()
            else:
                self.released.inc()
        if written < len(outcomes):
            self.dropped.inc(len(outcomes) - written)

    def worker_stopped(self) -> None:
        self.in_flight.set(0)


class LedgerGauges:
    """Reads the ledger's counts with `read` (on a connection of its own) at start and then every
    `interval` seconds into `metrics`, until stopped. A failed read keeps the last numbers and is
    logged once, until a read succeeds again: the worker's own connection reports outages."""

    def __init__(
        self,
        read: Callable[[], tuple[dict[str, int], dict[str, int]]],
        metrics: Metrics,
        interval: float = LEDGER_READ_SECONDS,
    ) -> None:
        self.read = read
        self.metrics = metrics
        self.interval = interval
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ledger-metrics", daemon=True)

    def start(self) -> LedgerGauges:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Does not wait: a read stuck on an unreachable ledger ends with the process (a daemon thread)."""
        self._stopped.set()

    def _run(self) -> None:
        failing = False
        while not self._stopped.is_set():
            try:
                rows, sizes = self.read()
            except LedgerError as exc:
                if not failing:
                    log.warning("ledger_metrics_unread", error=str(exc))
                failing = True
            else:
                self.metrics.ledger_counts(rows, sizes)
                failing = False
            self._stopped.wait(self.interval)


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes every few seconds would drown the worker's own log."""


class MetricsServer:
    """`/healthz` answers 200 while the worker loop is passing and 503 once it is stuck or stopped;
    every other path is the Prometheus exposition."""

    def __init__(
        self, metrics: Metrics, host: str, port: int, heartbeat: Heartbeat, max_age: float = DEFAULT_MAX_AGE_SECONDS
    ) -> None:
        self.metrics = metrics
        self.heartbeat = heartbeat
        self.max_age = max_age
        self._exposition = prometheus_client.make_wsgi_app(metrics.registry)
        try:
            self._server = make_server(
                host, port, self._app, server_class=_ThreadingServer, handler_class=_QuietHandler
            )
        except OSError as exc:
            raise ConfigError(f"METRICS_PORT: cannot listen on {host}:{port}: {exc.strerror}") from None
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> MetricsServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _app(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/healthz":
            healthy = self.heartbeat.healthy(self.max_age)
            body = json.dumps(
                {
                    "healthy": healthy,
                    "state": self.heartbeat.state,
                    "loop_age_seconds": round(self.heartbeat.age(), 3),
                    "in_flight": self.heartbeat.in_flight,
                }
            ).encode()
            start_response(
                "200 OK" if healthy else "503 Service Unavailable",
                [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
            )
            return [body]
        return self._exposition(environ, start_response)
