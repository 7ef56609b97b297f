"""`python -m tests.bench [--quick]`: start a private MariaDB and SeaweedFS on loopback, seed a fresh
source per workload, run every contender `--runs` times per workload (the order rotated each round,
the destination and the ledger cleared before every run), check every destination, and print the
tables (docs/benchmarks.md). Everything it starts is stopped by PID at the end, also on Ctrl-C or
SIGTERM, and its temporary folder is removed."""

from __future__ import annotations

import argparse
import signal
import sys
import time

from tests.bench import harness, procs, profile, tools
from tests.bench.harness import Result, median

# What movers3 recommends for a 2-core machine where the S3 server and MariaDB share the cores
# (docs/benchmarks.md): the 1/2/4/8 series peaked at one process; each more adds its start-up.
RECOMMENDED_WORKERS = 1
RECOMMENDED_THREADS = 32
SCALING_WORKERS = (1, 2, 4, 8)


def movers3(engine: str, workers: int, threads: int, label: str = "", **env: str) -> tools.Tool:
    name = label or f"movers3 {engine} {workers}w x {threads}t"
    return tools.Tool(name, "movers3", engine=engine, workers=workers, threads=threads, extra_env=tuple(env.items()))


def contenders(args: argparse.Namespace, workload: harness.Workload) -> list[tools.Tool]:
    main = movers3("crt", args.workers, args.threads)
    found = [main, *tools.peers()]
    if not args.quick:
        found.append(movers3("boto3", args.workers, args.threads))
    if workload.name == "large" and not args.quick:
        # The large-object path: sequential UploadPartCopy today; part sizes, and one CopyObject.
        for part in ("16MiB", "32MiB"):
            found.append(
                movers3(
                    "crt",
                    args.workers,
                    args.threads,
                    f"movers3 crt parts of {part}",
                    MULTIPART_THRESHOLD="16MiB",
                    MULTIPART_CHUNKSIZE=part,
                )
            )
        found.append(
            movers3("crt", args.workers, args.threads, "movers3 crt single CopyObject", MULTIPART_THRESHOLD="5GiB")
        )
    return found


# -- tables ---------------------------------------------------------------------------------------


def _fmt(value: float, digits: int = 0) -> str:
    return f"{value:,.{digits}f}"


def table(workload: harness.Workload, results: list[Result], main_name: str) -> list[str]:
    by_tool: dict[str, list[Result]] = {}
    for r in results:
        by_tool.setdefault(r.tool, []).append(r)
    main_rate = median([r.objects_per_second for r in by_tool.get(main_name, [])])
    head = (
        f"{'contender':<34} {'obj/s min':>9} {'obj/s med':>9} {'MB/s min':>8} {'MB/s med':>8} "
        f"{'client CPU':>10} {'S3 CPU':>7} {'DB CPU':>6} {'DB share':>8} {'objects':>11} "
        f"{'type+meta':>10} {'movers3':>8}"
    )
    units = (
        f"{'':<34} {'':>9} {'':>9} {'':>8} {'':>8} {'ms/obj':>10} {'ms/obj':>7} {'ms/obj':>6} "
        f"{'of CPU':>8} {'present':>11} {'survived':>10} {'ratio':>8}"
    )
    lines = [
        f"{workload.label} ({workload.bytes / 1e6:,.1f} MB), runs per contender: "
        f"{max(len(v) for v in by_tool.values())}",
        head,
        units,
    ]
    for name, runs in by_tool.items():
        rates = [r.objects_per_second for r in runs]
        mbs = [r.mb_per_second for r in runs]
        per = lambda attr: median([getattr(r, attr) / r.objects * 1000 for r in runs])  # noqa: E731
        share = median([r.db_cpu / max(1e-9, r.client_cpu + r.s3_cpu + r.db_cpu) for r in runs])
        present = min(r.present for r in runs)
        worst = min(runs, key=lambda r: r.attrs_kept / max(1, r.attrs_checked))
        attrs = (
            "kept"
            if worst.attrs_kept == worst.attrs_checked
            else f"lost {worst.attrs_checked - worst.attrs_kept}/{worst.attrs_checked}"
        )
        ratio = main_rate / median(rates) if median(rates) else float("nan")
        notes = "; ".join(sorted({r.note for r in runs if r.note}))
        lines.append(
            f"{name:<34} {_fmt(min(rates)):>9} {_fmt(median(rates)):>9} {_fmt(min(mbs), 1):>8} "
            f"{_fmt(median(mbs), 1):>8} {_fmt(per('client_cpu'), 2):>10} {_fmt(per('s3_cpu'), 2):>7} "
            f"{_fmt(per('db_cpu'), 2):>6} {share:>8.0%} {f'{present}/{workload.count}':>11} "
            f"{attrs:>10} {ratio:>7.2f}x" + (f"  ({notes})" if notes else "")
        )
    return lines


def rss_lines(results: list[Result]) -> list[str]:
    lines = []
    for r in results:
        if r.worker_rss_kib:
            lines.append((r.tool, r.workload, max(r.worker_rss_kib)))
    grouped: dict[tuple[str, str], list[int]] = {}
    for tool, workload, rss in lines:
        grouped.setdefault((tool, workload), []).append(rss)
    return [
        f"  {tool:<34} {workload:<6} peak RSS per worker: max {max(v) / 1024:,.0f} MiB over {len(v)} runs"
        for (tool, workload), v in grouped.items()
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny workloads, one run each (the test suite's mode)")
    parser.add_argument("--runs", type=int, default=None, help="runs per contender and workload (default 3, quick 1)")
    parser.add_argument("--only", default="small,large,mixed", help="workloads to run, comma-separated")
    parser.add_argument("--workers", type=int, default=RECOMMENDED_WORKERS, help="movers3 worker processes")
    parser.add_argument("--threads", type=int, default=RECOMMENDED_THREADS, help="movers3 WORKER_THREADS")
    parser.add_argument("--no-scaling", action="store_true", help="skip the 1/2/4/8 worker processes series")
    parser.add_argument("--no-audit", action="store_true", help="skip the strace check of every connection")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs) at the end")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="only profile one movers3 worker per engine on the small workload (py-spy)",
    )
    args = parser.parse_args(argv)
    runs = args.runs or (1 if args.quick else 3)

    def interrupted(_signum, _frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    bench = harness.Bench(keep=args.keep)
    out: list[str] = []
    started = time.monotonic()
    try:
        print(f"bench: machine: {harness.machine()}", flush=True)
        print(f"bench: starting MariaDB and SeaweedFS on 127.0.0.1 under {bench.base}", flush=True)
        bench.start()
        chosen = [w for w in harness.workloads(args.quick) if w.name in args.only.split(",")]
        if args.profile:
            small = next(w for w in harness.workloads(args.quick) if w.name == "small")
            bench.seed_source(small)
            for engine in ("crt", "boto3"):
                out += ["", *profile.profile(bench, engine, small, args.threads)]
            print("\n".join(out), flush=True)
            return 0
        all_results: list[Result] = []
        main_name = movers3("crt", args.workers, args.threads).name
        for workload in chosen:
            print(f"bench: seeding {workload.label} under {harness.OLD_BUCKET}/{bench.src(workload)}/", flush=True)
            bench.seed_source(workload)
            results = []
            field = contenders(args, workload)
            for number in range(1, runs + 1):
                shift = (number - 1) % len(field)
                for tool in field[shift:] + field[:shift]:
                    r = bench.run(tool, workload, number)
                    results.append(r)
                    print(
                        f"  {workload.name} run {number}/{runs} {tool.name}: {r.objects_per_second:,.0f} obj/s, "
                        f"{r.mb_per_second:,.1f} MB/s, {r.seconds:.2f} s, client CPU {r.client_cpu:.2f} s, "
                        f"S3 CPU {r.s3_cpu:.2f} s, DB CPU {r.db_cpu:.2f} s, {r.present}/{r.objects} present"
                        + (f" ({r.note})" if r.note else ""),
                        flush=True,
                    )
            all_results.extend(results)
            out += ["", *table(workload, results, main_name)]
        small = next((w for w in chosen if w.name == "small"), None)
        if small and not args.no_scaling:
            series = []
            for workers in SCALING_WORKERS[:2] if args.quick else SCALING_WORKERS:
                tool = movers3("crt", workers, args.threads)
                for number in range(1, runs + 1):
                    r = bench.run(tool, small, number)
                    series.append(r)
                    print(f"  scaling {workers} workers run {number}: {r.objects_per_second:,.0f} obj/s", flush=True)
            out += [
                "",
                f"Scaling ({small.label}, WORKER_THREADS={args.threads}, COPY_ENGINE=crt):",
                *table(small, series, main_name)[1:],
            ]
        out += ["", "Peak RSS per movers3 worker (ru_maxrss):", *rss_lines(all_results)]
        if small:
            trips = bench.ledger_round_trips(movers3("crt", args.workers, args.threads), small)
            out += [
                "",
                f"Ledger round trips ({small.label}, {args.workers} workers, general log on, untimed):",
                f"  claimed batches {trips['claims']} ({trips['claims_with_finish']} carrying the previous "
                f"batch's outcomes); worker round trips {trips['worker_packets']} = {trips['polls']} "
                f"SELECT..SKIP LOCKED (claims tried) + {trips['claims']} claim UPDATE(+finish)+COMMIT + "
                f"{trips['finishes_alone']} finish UPDATE+COMMIT alone + {trips['commits_alone']} COMMIT alone "
                f"+ {trips['other']} other (session set-up, schema check, rescues, checks for work left)",
                f"  round trips per claimed batch: {trips['per_batch']:.2f} "
                f"(rows per batch {trips['rows'] / max(1, trips['claims']):.1f}); "
                f"Questions from all clients (init, seed, workers): {trips['questions_all_clients']}",
            ]
            if not args.no_audit:
                tiny = harness.Workload("audit", "audit: 20 x 4 KiB", (4096,) * 20)
                bench.seed_source(tiny)
                out += [
                    "",
                    "Network audit (strace -e connect, one run each):",
                    *harness.audit_network(bench, contenders(args, tiny), tiny),
                ]
        out += ["", f"bench: finished in {time.monotonic() - started:,.0f} s"]
        print("\n".join(out), flush=True)
        return 0
    except KeyboardInterrupt:
        print("bench: interrupted; stopping everything it started", file=sys.stderr)
        return 130
    except procs.BenchError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 1
    finally:
        bench.stop()


if __name__ == "__main__":
    sys.exit(main())
