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

from tests.bench import harness, procs, profile, s3ops, tools
from tests.bench.harness import Result, median

# What movers3 recommends for a 2-core machine where the S3 server and MariaDB share the cores
# (docs/benchmarks.md): the 1/2/4/8 series peaked at one process; each more adds its start-up.
RECOMMENDED_WORKERS = 1
RECOMMENDED_THREADS = 32
SCALING_WORKERS = (1, 2, 4, 8)


S5CMD_COPY = "s5cmd --metadata-directive COPY"
# Where the request counts are taken by default: per object, 2,000 small objects ask the same of the
# server as 20,000 (only the listing pages scale), at a tenth of the time through the proxy.
COUNT_ON = "small2k,large,mixed"


def movers3(engine: str, workers: int, threads: int, label: str = "", short: str = "", **env: str) -> tools.Tool:
    name = label or f"movers3 {engine} {workers}w x {threads}t"
    return tools.Tool(
        name,
        "movers3",
        engine=engine,
        workers=workers,
        threads=threads,
        extra_env=tuple(env.items()),
        short=short or f"movers3 {engine}",
    )


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
                    f"m3 {part} pt",
                    MULTIPART_THRESHOLD="16MiB",
                    MULTIPART_CHUNKSIZE=part,
                )
            )
        found.append(
            movers3(
                "crt",
                args.workers,
                args.threads,
                "movers3 crt single CopyObject",
                "m3 1 Copy",
                MULTIPART_THRESHOLD="5GiB",
            )
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
        f"{'type+meta':>10} {'movers3':>8} {'copy phase':>10}"
    )
    units = (
        f"{'':<34} {'':>9} {'':>9} {'':>8} {'':>8} {'ms/obj':>10} {'ms/obj':>7} {'ms/obj':>6} "
        f"{'of CPU':>8} {'present':>11} {'survived':>10} {'ratio':>8} {'obj/s med':>10}"
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
        copy_rates = [r.copy_rate for r in runs if r.copy_rate == r.copy_rate]  # not nan
        copy_phase = _fmt(median(copy_rates)) if copy_rates else "-"
        notes = "; ".join(sorted({r.note for r in runs if r.note}))
        lines.append(
            f"{name:<34} {_fmt(min(rates)):>9} {_fmt(median(rates)):>9} {_fmt(min(mbs), 1):>8} "
            f"{_fmt(median(mbs), 1):>8} {_fmt(per('client_cpu'), 2):>10} {_fmt(per('s3_cpu'), 2):>7} "
            f"{_fmt(per('db_cpu'), 2):>6} {share:>8.0%} {f'{present}/{workload.count}':>11} "
            f"{attrs:>10} {ratio:>7.2f}x {copy_phase:>10}" + (f"  ({notes})" if notes else "")
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
        f"  {tool:<34} {workload:<8} peak RSS per worker: max {max(v) / 1024:,.0f} MiB over {len(v)} runs"
        for (tool, workload), v in grouped.items()
    ]


def _median_of(runs: list[Result], value) -> float:
    return median([value(r) for r in runs]) if runs else float("nan")


def targets(by_workload: dict[str, list[Result]], labels: dict[str, str], main_name: str) -> list[str]:
    """Issue 17's targets as ratios of medians from this run: informational, never asserted (speed is
    what the benchmark reports, not what a test checks)."""

    def runs(workload: str, tool: str | None = None, peers: bool = False) -> list[Result]:
        found = by_workload.get(workload, [])
        if peers:
            return [r for r in found if not r.tool.startswith("movers3")]
        return [r for r in found if r.tool == tool]

    def rate(r: Result) -> float:
        return r.objects_per_second

    def cpu(attr: str):
        return lambda r: sum(getattr(r, a) for a in attr.split("+")) / r.objects * 1000

    lines = [f"Targets (issue 17; medians of this run, informational, main movers3 row: {main_name}):"]

    def line(
        text: str,
        mine: float,
        theirs: float,
        unit: str,
        at_least: float | None,
        at_most: float | None,
        mine_at_most: float | None = None,  # a target on movers3's own figure, in `unit`
    ) -> None:
        if mine != mine or theirs != theirs or not theirs:  # nan: not measured in this run
            lines.append(f"  {text}: not measured (workload not run)")
            return
        ratio = mine / theirs
        if at_least is not None:
            goal, met = f">= {at_least:.2f}x", ratio >= at_least
        elif at_most is not None:
            goal, met = f"<= {at_most:.2f}x", ratio <= at_most
        elif mine_at_most is not None:
            goal, met = f"movers3 <= {mine_at_most:.2f} {unit}", mine <= mine_at_most
        else:
            goal, met = "none", None
        verdict = "" if met is None else ("met" if met else "NOT met")
        lines.append(
            f"  {text}: {mine:,.2f} vs {theirs:,.2f} {unit} = {ratio:.2f}x (target {goal})"
            + (f": {verdict}" if verdict else "")
        )

    small = labels.get("small20k", "small20k")
    mine20k, s5 = runs("small20k", main_name), runs("small20k", S5CMD_COPY)
    line(
        f"{small} end to end (ledger included), movers3 vs s5cmd COPY (and never below 0.85x)",
        _median_of(mine20k, rate),
        _median_of(s5, rate),
        "obj/s",
        1.0,
        None,
    )
    copy_rates = [r.copy_rate for r in mine20k if r.copy_rate == r.copy_rate]
    line(
        f"{small} movers3 copy phase (ledger done_at) vs s5cmd COPY end to end",
        median(copy_rates),
        _median_of(s5, rate),
        "obj/s",
        None,
        None,
    )
    line(
        f"{small} client CPU per object, all movers3 processes (ledger work included) vs s5cmd COPY",
        _median_of(mine20k, cpu("client_cpu")),
        _median_of(s5, cpu("client_cpu")),
        "ms",
        None,
        None,
        0.5,
    )
    line(
        f"{small} client CPU per object plus MariaDB's (the ledger's server side) vs s5cmd COPY",
        _median_of(mine20k, cpu("client_cpu+db_cpu")),
        _median_of(s5, cpu("client_cpu")),
        "ms",
        None,
        None,
    )
    line(
        f"{small} S3 server CPU per object, movers3 vs s5cmd COPY",
        _median_of(mine20k, cpu("s3_cpu")),
        _median_of(s5, cpu("s3_cpu")),
        "ms",
        None,
        1.1,
    )
    line(
        f"{labels.get('mixed', 'mixed')}, movers3 vs s5cmd COPY",
        _median_of(runs("mixed", main_name), rate),
        _median_of(runs("mixed", S5CMD_COPY), rate),
        "obj/s",
        0.9,
        None,
    )
    peers = runs("large", peers=True)
    best = max(
        ({r.tool for r in peers}),
        key=lambda tool: _median_of([r for r in peers if r.tool == tool], lambda r: r.mb_per_second),
        default="",
    )
    line(
        f"{labels.get('large', 'large')}, movers3 vs the best peer ({best or 'none'})",
        _median_of(runs("large", main_name), lambda r: r.mb_per_second),
        _median_of([r for r in peers if r.tool == best], lambda r: r.mb_per_second),
        "MB/s",
        1.0,
        None,
    )
    peaks = {
        w: max(max(r.worker_rss_kib) for r in rs if r.tool == main_name and r.worker_rss_kib)
        for w, rs in by_workload.items()
        if any(r.tool == main_name and r.worker_rss_kib for r in rs)
    }
    if peaks:
        high, low = max(peaks, key=lambda w: peaks[w]), min(peaks, key=lambda w: peaks[w])
        line(
            f"memory: peak RSS per movers3 worker, highest ({high}) vs lowest ({low}) workload",
            peaks[high] / 1024,
            peaks[low] / 1024,
            "MiB",
            None,
            1.10,
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny workloads, one run each (the test suite's mode)")
    parser.add_argument("--runs", type=int, default=None, help="runs per contender and workload (default 3, quick 1)")
    parser.add_argument(
        "--workloads",
        "--only",
        default="small20k,small2k,large,mixed",
        help="workloads to run, comma-separated (default: %(default)s)",
    )
    parser.add_argument(
        "--count-on",
        default=None,
        help=f"workloads whose S3 requests are counted, one untimed run per contender through a proxy; "
        f"'none' for none (default {COUNT_ON}, quick small2k; small20k stands in for small2k when only it runs)",
    )
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
    names = args.workloads.split(",")
    unknown = set(names) - {w.name for w in harness.workloads(args.quick)}
    if unknown:
        parser.error(f"unknown workloads: {', '.join(sorted(unknown))}")

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
        chosen = [w for w in harness.workloads(args.quick) if w.name in names]
        by_name = {w.name: w for w in chosen}
        # The headline small workload is the steady state; the start-up one is cheaper for series.
        headline = by_name.get("small20k") or by_name.get("small2k")
        startup = by_name.get("small2k") or by_name.get("small20k")
        count_on = set((args.count_on or ("small2k" if args.quick else COUNT_ON)).split(","))
        if "small2k" in count_on and "small2k" not in by_name:
            count_on.add("small20k")
        if args.profile:
            small = headline or next(w for w in harness.workloads(args.quick) if w.name == "small20k")
            bench.seed_source(small)
            for engine in ("crt", "boto3"):
                out += ["", *profile.profile(bench, engine, small, args.threads)]
            print("\n".join(out), flush=True)
            return 0
        all_results: list[Result] = []
        by_workload: dict[str, list[Result]] = {}
        main_name = movers3("crt", args.workers, args.threads).name
        for workload in chosen:
            print(f"bench: seeding {workload.label} under {harness.OLD_BUCKET}/{bench.src(workload)}/", flush=True)
            seeding = time.monotonic()
            bench.seed_source(workload)
            print(f"bench: seeded in {time.monotonic() - seeding:,.1f} s", flush=True)
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
            by_workload[workload.name] = results
            out += ["", *table(workload, results, main_name)]
            if workload.name in count_on:
                counted = []
                for tool in field:
                    print(f"  {workload.name} counting requests: {tool.name}", flush=True)
                    counted.append(s3ops.count(bench, tool, workload))
                out += ["", *s3ops.table(workload, counted)]
        small = startup
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
        if headline:
            trips = bench.ledger_round_trips(movers3("crt", args.workers, args.threads), headline)
            out += [
                "",
                f"Ledger round trips ({headline.label}, {args.workers} workers, general log on, untimed):",
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
        out += ["", *targets(by_workload, {w.name: w.label for w in chosen}, main_name)]
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
