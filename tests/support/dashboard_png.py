"""`make dashboard-png`: the picture of compose/grafana's dashboard in docs/dashboard.png, drawn from a
real run, since no container runs on the machines that build this project.

A private MariaDB and SeaweedFS on loopback, a source of sample objects (a few of them deleted after the
seed, so that their rows fail with NoSuchKey), a fault proxy in front of S3 (some SlowDown answers to
retry, some slow ones for a latency tail), two workers and a third that joins later, each serving
/metrics. Every worker is scraped once a second, as Prometheus would (`instance` and `job` labels
added, series marked stale when their worker stops answering); then each panel's queries are evaluated
over the scraped samples with tests/support/promql.py and drawn with matplotlib in the dashboard's own
grid. It is not a Grafana screenshot: the layout and styling are matplotlib's, the numbers are the run's.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.support import promql
from tests.support.faultproxy import FaultProxy
from tests.support.services import DATABASE, MariaDB, SeaweedFS, free_port

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "compose" / "grafana" / "dashboards" / "movers3.json"
OUTPUT = ROOT / "docs" / "dashboard.png"
JOB = "movers3-worker"
SCRAPE_SECONDS = 1.0
STEP_SECONDS = 2.0
# How long the workers idle after the last row, before they are stopped.
IDLE_SECONDS = 15.0
OLD, NEW = ("legacy-s3", "images"), ("production-s3", "avatar")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=8000)
    parser.add_argument("--lost", type=int, default=12, help="sources deleted after the seed: NoSuchKey failures")
    parser.add_argument("--late-worker-after", type=float, default=30.0, help="seconds before the third worker starts")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="m3png-", dir="/tmp"))
    base.chmod(0o755)  # mariadbd runs as the mysql user
    db, s3 = MariaDB(base / "db"), SeaweedFS(base / "s3")
    try:
        db.start()
        s3.start()
        samples, started, ended = run(db, s3, base, args)
        draw(samples, started, ended, args)
    finally:
        s3.stop()
        db.stop()
        shutil.rmtree(base, ignore_errors=True)
    size = args.output.stat().st_size
    print(f"dashboard-png: wrote {args.output} ({size // 1024} KB)")
    return 0


def run(db: MariaDB, s3: SeaweedFS, base: Path, args: argparse.Namespace) -> tuple[promql.Samples, float, float]:
    with db.admin() as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE IF NOT EXISTS `{DATABASE}`")
        cur.execute("CREATE USER IF NOT EXISTS 'png'@'%%' IDENTIFIED BY %s", ("png-pass",))
        cur.execute(f"GRANT ALL ON `{DATABASE}`.* TO 'png'@'%'")
    key, secret = s3.credentials("admin")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MYSQL_", "OLD_", "NEW_"))},
        "URL_ENDPOINT": s3.url,
        "AWS_ACCESS_KEY_ID": key,
        "AWS_SECRET_ACCESS_KEY": secret,
        "MYSQL_URL": db.url("png", "png-pass"),
        "OLD_BUCKET": OLD[0],
        "OLD_PREFIX": OLD[1],
        "NEW_BUCKET": NEW[0],
        "NEW_PREFIX": NEW[1],
        "LOG_FORMAT": "json",
        "LOAD_FILES": "false",
    }
    cli(env, "init")
    client = s3.client()
    rng = random.Random(16)
    sizes = [int(rng.lognormvariate(9.5, 1.0)) + 1 for _ in range(args.objects)]  # median ~13 KB
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(16) as pool:
        list(
            pool.map(
                lambda i: client.put_object(Bucket=OLD[0], Key=f"{OLD[1]}/{i}.bin", Body=os.urandom(sizes[i])),
                range(args.objects),
            )
        )
    cli(env, "seed")
    for i in rng.sample(range(args.objects), args.lost):
        client.delete_object(Bucket=OLD[0], Key=f"{OLD[1]}/{i}.bin")
    proxy = FaultProxy(s3.url, rates={"slowdown": 0.02, "slow": 0.25}, slow_seconds=0.25).start()
    samples = promql.Samples()
    stop = threading.Event()
    ports: list[int] = []
    scraper = threading.Thread(target=scrape_loop, args=(ports, samples, stop), daemon=True)
    workers = []
    started = time.time()
    scraper.start()
    try:
        for index in range(3):
            if index == 2:
                time.sleep(args.late_worker_after)
            port = free_port()
            worker_env = {**env, "URL_ENDPOINT": proxy.url, "METRICS_PORT": str(port), "METRICS_HOST": "127.0.0.1"}
            worker_env |= {"WORKER_THREADS": "4", "MAX_ATTEMPTS": "6"}
            log = open(base / f"worker-{index}.log", "wb")
            workers.append(
                subprocess.Popen(
                    [sys.executable, "-m", "movers3", "worker"],
                    env=worker_env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )
            )
            ports.append(port)
        # Daemons, as under compose: once the ledger is finished they idle (the picture's last seconds
        # show the finished state, read by the ledger gauges), then SIGTERM, as `docker compose stop`.
        deadline = time.time() + 900
        while left(db) and time.time() < deadline:
            time.sleep(1)
        time.sleep(IDLE_SECONDS)
        for w in workers:
            w.send_signal(signal.SIGTERM)
        codes = [w.wait(60) for w in workers]
        time.sleep(3 * SCRAPE_SECONDS)  # the stale markers of the stopped workers
    finally:
        for w in workers:
            if w.poll() is None:
                w.send_signal(signal.SIGTERM)
                w.wait(60)
        stop.set()
        scraper.join(10)
        proxy.stop()
    ended = time.time()
    scrapes = max((len(p) for (n, _), p in samples.series.items() if n == "movers3_rows_in_flight"), default=0)
    print(
        f"dashboard-png: {args.objects} objects, workers exited {codes}, {ended - started:.0f} s, "
        f"faults injected {dict(proxy.injected)}, {scrapes} scrapes of the longest-running worker"
    )
    return samples, started, ended


def left(db: MariaDB) -> int:
    with db.admin(DATABASE) as conn, conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM movers3_objects WHERE state IN ('pending', 'in_progress')")
        return int(cur.fetchone()[0])


def cli(env: dict[str, str], *args: str) -> None:
    subprocess.run([sys.executable, "-m", "movers3", *args], env=env, check=True, stdin=subprocess.DEVNULL)


def scrape_loop(ports: list[int], samples: promql.Samples, stop: threading.Event) -> None:
    answering: set[int] = set()
    while not stop.wait(SCRAPE_SECONDS):
        for port in list(ports):
            now = time.time()
            instance = f"127.0.0.1:{port}"
            try:
                with urllib.request.urlopen(f"http://{instance}/metrics", timeout=2) as response:
                    text = response.read().decode()
            except OSError:
                if port in answering:
                    samples.mark_stale(now, {"instance": instance})
                    answering.discard(port)
                continue
            answering.add(port)
            for family in text_string_to_metric_families(text):
                for s in family.samples:
                    samples.add(now, s.name, {**s.labels, "instance": instance, "job": JOB}, s.value)


# -- drawing --------------------------------------------------------------------------------

BACKGROUND, PANEL, TEXT, GRID = "#111217", "#181b1f", "#ccccdc", "#2c3235"
COLORS = ["#73bf69", "#f2cc0c", "#5794f2", "#ff9830", "#f2495c", "#b877d9", "#8ab8ff", "#fade2a"]


def human(value: float, unit: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if math.isinf(value):
        return "∞"
    if unit == "percentunit":
        return f"{value * 100:.1f}%"
    if unit in ("bytes", "Bps"):
        for size, name in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
            if abs(value) >= size:
                return f"{value / size:.1f} {name}" + ("/s" if unit == "Bps" else "")
        return f"{value:.0f} B" + ("/s" if unit == "Bps" else "")
    if unit == "s":
        if value == 0:
            return "0 s"
        if value >= 3600:
            return f"{value / 3600:.1f} h"
        if value >= 60:
            return f"{value / 60:.1f} min"
        return f"{value:.2f} s" if value >= 1 else f"{value * 1000:.1f} ms"
    if unit == "ops":
        return f"{value:.0f}/s"
    return f"{value:.0f}" if abs(value) >= 10 or value == int(value) else f"{value:.2f}"


def legend(fmt: str, labels: frozenset) -> str:
    text = fmt
    for key, value in labels:
        text = text.replace("{{" + key + "}}", value)
    return text


def series(panel: dict, samples: promql.Samples, times: list[float]) -> list[tuple[str, list[float]]]:
    """Each target's result at every step, one line per label set, as Grafana plots a range query."""
    lines: dict[str, list[float]] = {}
    for target in panel["targets"]:
        tree = promql.parse(target["expr"])
        for i, t in enumerate(times):
            result = promql.evaluate(tree, samples, t)
            if isinstance(result, float):
                result = {frozenset(): result}
            for labels, value in result.items():
                name = legend(target.get("legendFormat") or target["expr"], labels)
                lines.setdefault(name, [math.nan] * len(times))[i] = value
    return sorted(lines.items())


def draw(samples: promql.Samples, started: float, ended: float, args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    board = json.loads(DASHBOARD.read_text())
    times = [started + i * STEP_SECONDS for i in range(int((ended - started) / STEP_SECONDS) + 1)]
    minutes = [(t - started) / 60 for t in times]
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in board["panels"])
    inches = 0.36 * rows + 0.6
    fig = plt.figure(figsize=(14, inches), dpi=72, facecolor=BACKGROUND)
    # The dashboard's grid (24 columns, rows of 30 px in Grafana), room left for titles and tick labels.
    top, unit_w, unit_h = 1 - 0.6 / inches, 0.985 / 24, (1 - 0.6 / inches - 0.01) / rows
    fig.suptitle(
        f"{board['title']}: {args.objects:,} objects, 3 workers, drawn from their scraped /metrics "
        "(matplotlib, not a Grafana screenshot)",
        color=TEXT,
        fontsize=12,
        x=0.01,
        ha="left",
    )
    for panel in board["panels"]:
        box = panel["gridPos"]
        left, bottom = 0.01 + box["x"] * unit_w, top - (box["y"] + box["h"]) * unit_h
        width, height = box["w"] * unit_w, box["h"] * unit_h
        if panel["type"] in ("stat", "gauge"):
            ax = fig.add_axes((left + 0.005, bottom + 0.01, width - 0.01, height - 0.035))
        else:
            ax = fig.add_axes((left + 0.055, bottom + 0.03, width - 0.065, height - 0.055))
        ax.set_facecolor(PANEL)
        for spine in ax.spines.values():
            spine.set_color(GRID)
        ax.set_title(panel["title"], color=TEXT, fontsize=10, loc="left")
        unit = panel["fieldConfig"]["defaults"].get("unit", "short")
        lines = series(panel, samples, times)
        if panel["type"] in ("stat", "gauge"):
            values = lines[0][1] if lines else [math.nan] * len(times)
            last = next((v for v in reversed(values) if not math.isnan(v)), math.nan)
            if panel["type"] == "gauge":
                ax.barh([-0.7], [1], color=GRID, height=0.3)
                ax.barh([-0.7], [0 if math.isnan(last) else min(last, 1)], color=COLORS[0], height=0.3)
                ax.set_xlim(0, 1)
                ax.set_ylim(-1, 1.2)
            else:
                finite = [v if not math.isinf(v) else math.nan for v in values]
                ax.fill_between(minutes, finite, color=COLORS[0], alpha=0.15)
                ax.plot(minutes, finite, color=COLORS[0], alpha=0.5, lw=1)
            ax.text(
                0.5,
                0.55,
                human(last, unit),
                transform=ax.transAxes,
                ha="center",
                va="center",
                color=COLORS[0],
                fontsize=24,
                fontweight="bold",
            )
            ax.set_xticks([])
            ax.set_yticks([])
            continue
        for color, (name, values) in zip(COLORS * 4, lines, strict=False):
            ax.plot(minutes, values, color=color, lw=1.4, label=name)
        ax.tick_params(colors=TEXT, labelsize=8)
        ax.grid(color=GRID, lw=0.5)
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _p, unit=unit: human(v, unit)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{int(v)}:{int(round(v * 60)) % 60:02d}"))
        ax.set_xlim(0, minutes[-1])
        ax.set_ylim(bottom=0)
        if lines:
            ax.legend(loc="best", fontsize=7, facecolor=PANEL, edgecolor=GRID, labelcolor=TEXT, ncol=3)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.output, facecolor=BACKGROUND, pil_kwargs={"optimize": True})
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
