"""`python -m tests.bench --profile`: where a movers3 worker's CPU goes. `movers3 run --workers 1` on
the small workload under py-spy (all processes, idle threads left out), once per engine; each sample
of the worker process is charged to the innermost frame that belongs to a known part (a library, or
movers3's own modules), and the worker's main-thread loop is broken down by what it was doing."""

from __future__ import annotations

import collections
import re
import time
from pathlib import Path

from tests.bench import procs, tools
from tests.bench.harness import MOVERS3, Bench, Workload

RATE = 250  # samples per second

# Innermost frame's file -> part. Checked in order; the first match wins.
PARTS = [
    ("import/startup", ("<frozen importlib", "importlib/")),
    ("awscrt", ("awscrt/",)),
    ("botocore: signing", ("botocore/auth.py", "botocore/crt/auth.py", "botocore/signers.py")),
    ("botocore: endpoint rules", ("botocore/regions.py", "botocore/endpoint_provider.py")),
    ("botocore: parsing", ("botocore/parsers.py",)),
    ("botocore: serialising", ("botocore/serialize.py", "botocore/validate.py")),
    ("botocore: events/handlers", ("botocore/hooks.py", "botocore/handlers.py", "botocore/utils.py")),
    ("botocore: models/loaders", ("botocore/model.py", "botocore/loaders.py", "json/")),
    ("botocore: other", ("botocore/", "boto3/", "s3transfer/")),
    ("http (urllib3/http.client/ssl/socket)", ("urllib3/", "http/client.py", "ssl.py", "socket.py", "selectors.py")),
    ("PyMySQL", ("pymysql/",)),
    ("logging (structlog, logs.py)", ("structlog/", "movers3/logs.py")),
    ("retry (tenacity, retry.py)", ("tenacity/", "movers3/transfer/retry.py")),
    ("thread pool / futures / locks", ("concurrent/futures/", "threading.py", "queue.py")),
    ("movers3 ledger", ("movers3/ledger/",)),
    ("movers3 CopyObject engine", ("movers3/transfer/copy_object.py",)),
    ("movers3 copier", ("movers3/transfer/",)),
    ("movers3 hot path", ("movers3/worker/hot_path.py",)),
    ("movers3 worker loop", ("movers3/worker/",)),
    ("movers3 other", ("movers3/",)),
]
# What the worker's main thread was in, by the outermost movers3 function below the loop.
LOOP = ("_claim", "_land", "_collect", "flush", "tick", "_record", "unfinished", "_shutdown")

_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")


def _frames(stack: str) -> list[tuple[str, str]]:
    found = []
    for part in stack.split(";"):
        m = _FRAME.match(part.strip())
        if m:
            found.append((m.group("func"), m.group("file")))
    return found


def _part(frames: list[tuple[str, str]]) -> str:
    for _func, file in reversed(frames):
        for name, needles in PARTS:
            if any(n in file for n in needles):
                return name
    return "python/other"


def summarise(raw: Path) -> list[str]:
    by_process: collections.Counter[str] = collections.Counter()
    parts: collections.Counter[str] = collections.Counter()
    loop: collections.Counter[str] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    worker_total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        # With --subprocesses a child's stack starts with its parents' "process PID:cmdline" frames.
        last = [p for p in stack.split(";") if p.startswith("process ")][-1:] or [""]
        process = "worker" if " worker" in last[0] else "run (init + seed)"
        by_process[process] += n
        if process != "worker":
            continue
        worker_total += n
        frames = _frames(stack)
        if not frames:  # a thread in native code with no Python frame: awscrt's event loops, mostly
            parts["native (no Python frame)"] += n
            threads["native threads"] += n
            continue
        parts[_part(frames)] += n
        funcs = [f.rsplit(".", 1)[-1] for f, _ in frames]
        if "_landed" in funcs or "finished" in funcs:
            threads["awscrt's threads: callbacks of landed requests"] += n
        elif "_worker" in funcs:  # concurrent.futures' thread: the thread path's copies
            threads["copy threads (CopyTask)"] += n
        elif "_loop" in funcs or "_shutdown" in funcs:
            threads["main thread: worker loop"] += n
            step = next((f for f in funcs if f in LOOP), "loop itself")
            loop[step] += n
        elif any("import" in f for _, f in frames) or "<module>" in funcs:
            threads["main thread: imports"] += n
        else:
            threads["main thread: set-up/other, CRT callbacks"] += n
    total = sum(by_process.values())
    lines = [
        f"  samples at {RATE}/s of a running (not idle) thread: {total} in all; by process: "
        + ", ".join(f"{p} {n / total:.0%}" for p, n in by_process.most_common())
    ]
    if worker_total:
        lines.append("  worker, by where the time went (innermost known frame):")
        lines += [f"    {name:<40} {n / worker_total:6.1%}" for name, n in parts.most_common()]
        lines.append("  worker, by thread:")
        lines += [f"    {name:<40} {n / worker_total:6.1%}" for name, n in threads.most_common()]
        lines.append("  worker main loop, by step:")
        lines += [f"    {name:<40} {n / worker_total:6.1%}" for name, n in loop.most_common()]
    return lines


def profile(bench: Bench, engine: str, workload: Workload, threads: int) -> list[str]:
    from tests.bench.__main__ import movers3  # the same Tool the tables use

    tool = movers3(engine, 1, threads)
    bench.clear_destination(workload)
    bench.clear_ledger()
    raw = bench.base / f"profile-{engine}.txt"
    argv = [
        tools.binary("py-spy"),
        "record",
        "--subprocesses",
        "--format",
        "raw",
        "--rate",
        str(RATE),
        "--nonblocking",
        "--output",
        str(raw),
        "--",
        *MOVERS3,
        "run",
        "--workers",
        "1",
    ]
    started = time.monotonic()
    done = procs.run(
        bench.registry,
        f"py-spy {engine}",
        argv,
        bench.movers3_env(workload, "worker", "m3_init", tool),
        bench.log(f"py-spy-{engine}"),
        600,
    )
    seconds = time.monotonic() - started
    present, _, _ = bench.check_destination(workload)
    bench.clear_destination(workload)
    if done.code != 0 or not raw.exists():
        return [f"profile {engine}: py-spy exited {done.code}: {done.tail(800)}"]
    return [
        f"COPY_ENGINE={engine}, 1 worker x {threads} threads, {workload.label}: {seconds:.1f} s under py-spy "
        f"(--nonblocking), {present}/{workload.count} copied, client CPU {done.cpu_seconds:.2f} s "
        f"({done.cpu_seconds / workload.count * 1000:.2f} ms/object incl. py-spy's own)",
        *summarise(raw),
    ]
