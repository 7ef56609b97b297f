"""The ledger at scale: a benchmark, not a test (`make bench-ledger`). No S3 is needed.

For each ledger size (default 10 thousand, 1 million, 10 million rows; BENCH_SIZES=10000,200000 for a
quick run) it fills a private MariaDB with synthetic rows (the first 100k pending, then 90 % done and 10 % pending,
interleaved), then
measures, through movers3's own ledger code:
- claim latency p50/p99 (one claimer, CLAIM_BATCH rows, the finish of the batch measured apart),
- claim throughput with 8 concurrent claimer processes (claim + finish as done, rows/s),
- seed insert rate (1000-row pages through the seeder's path: look-ups, insert, cursor),
- `status` latency (trigger-kept counters) against an exact COUNT(*) GROUP BY state,
- the cost of the counting triggers on claim and finish (the same measure with the triggers dropped).
Figures are noisy on a shared machine: run it alone, and read them as orders of magnitude.
"""

from __future__ import annotations

import multiprocessing
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from movers3 import routes
from movers3.ledger import schema
from movers3.ledger.db import Database
from movers3.ledger.reads import Reads
from movers3.ledger.seeds import PageWrite, PartSpec, Seeds
from movers3.ledger.work import Outcome, WorkQueue
from movers3.seed.judge import Listed, judge
from movers3.settings import load, parse_mysql_url
from tests.support.services import DATABASE, MariaDB

SIZES = [int(s) for s in os.environ.get("BENCH_SIZES", "10000,1000000,10000000").split(",")]
BATCH = int(os.environ.get("BENCH_CLAIM_BATCH", "64"))
CLAIMS = int(os.environ.get("BENCH_CLAIMS", "300"))
CLAIMERS = int(os.environ.get("BENCH_CLAIMERS", "8"))
THROUGHPUT_SECONDS = float(os.environ.get("BENCH_SECONDS", "10"))
INSERT_PAGES = int(os.environ.get("BENCH_INSERT_PAGES", "40"))
BUFFER_POOL = os.environ.get("BENCH_BUFFER_POOL", "4G")
LOG_FILE_SIZE = os.environ.get("BENCH_LOG_FILE_SIZE", "1G")
FLUSH = os.environ.get("BENCH_FLUSH_AT_COMMIT", "1")  # 2: fsync once a second (what a commit costs without it)
FILL_CHUNK = 500_000
# The first rows are all pending (so that a small ledger has enough to claim); then one in ten.
PENDING_FLOOR = 100_000
TRIGGERS = ("movers3_objects_count_insert", "movers3_objects_count_update", "movers3_objects_count_delete")


def main() -> None:
    base = Path(tempfile.mkdtemp(prefix="m3b-", dir="/tmp"))
    base.chmod(0o755)
    tmp = base / "tmp"  # the server's own temp files, where no cleaner of /tmp can reach them
    tmp.mkdir()
    if os.geteuid() == 0:
        shutil.chown(tmp, "mysql", "mysql")
    db = MariaDB(
        base / "db",
        options=[
            f"--innodb-buffer-pool-size={BUFFER_POOL}",
            f"--innodb-log-file-size={LOG_FILE_SIZE}",
            f"--innodb-flush-log-at-trx-commit={FLUSH}",
            f"--tmpdir={tmp}",
        ],
    )
    try:
        db.start()
        db.create_database()
        url = f"mysql+pymysql://root@localhost/{DATABASE}?unix_socket={db.socket}"
        machine()
        print(
            f"MariaDB {server_version(db)}, innodb_buffer_pool_size={BUFFER_POOL}, "
            f"innodb_flush_log_at_trx_commit={FLUSH}" + (" (every commit an fsync)" if FLUSH == "1" else "")
        )
        print(f"claim batch {BATCH}; {CLAIMERS} concurrent claimer processes for {THROUGHPUT_SECONDS:.0f} s\n")
        schema.create(Database(parse_mysql_url(url)))
        filled = 0
        results = []
        for size in SIZES:
            filled = fill(db, filled, size)
            results.append(measure(db, url, size))
        print_table(results)
    finally:
        db.stop()
        shutil.rmtree(base, ignore_errors=True)


def machine() -> None:
    model = "unknown cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        mem = int(Path("/proc/meminfo").read_text().split()[1]) // (1024 * 1024)
    except OSError:
        mem = 0
    print(
        f"machine: {model}, {os.cpu_count()} cores, {mem} GiB RAM, {platform.system()} {platform.release()}, "
        f"Python {sys.version.split()[0]}"
    )


def server_version(db: MariaDB) -> str:
    with db.admin() as conn, conn.cursor() as cur:
        cur.execute("SELECT VERSION()")
        return cur.fetchone()[0]


def fill(db: MariaDB, have: int, want: int) -> int:
    """Grow the ledger to `want` rows server-side, with the triggers off; then `init` puts them back
    and recounts (its time is printed: the upgrade cost of a ledger this size)."""
    if want <= have:
        return have
    started = time.monotonic()
    with db.admin(DATABASE) as conn, conn.cursor() as cur:
        for name in TRIGGERS:
            cur.execute(f"DROP TRIGGER IF EXISTS {name}")
        start = have
        while start < want:
            count = min(FILL_CHUNK, want - start)
            cur.execute(
                "INSERT INTO movers3_objects (old_bucket, old_key, new_bucket, new_key, size, source_etag, "
                "storage_class, state, attempts, done_at, dest_etag, copy_method, verified_by) "
                "SELECT 'legacy-s3', CONCAT('images/u', n DIV 1000, '/', MD5(n), '.png'), 'production-s3', "
                "CONCAT('avatar/u', n DIV 1000, '/', MD5(n), '.png'), 1000 + n % 100000, MD5(n), 'STANDARD', "
                "IF(p, 'pending', 'done'), IF(p, 0, 1), IF(p, NULL, NOW(6) - INTERVAL 1 DAY), "
                "IF(p, NULL, MD5(n)), IF(p, NULL, 'copy'), IF(p, NULL, 'etag') "
                f"FROM (SELECT seq + {start} AS n, (seq + {start}) % 10 = 0 OR seq + {start} <= {PENDING_FLOOR} AS p "
                f"FROM seq_1_to_{count}) AS s"
            )
            start += count
    filled = time.monotonic() - started
    url = f"mysql+pymysql://root@localhost/{DATABASE}?unix_socket={db.socket}"
    started = time.monotonic()
    schema.create(Database(parse_mysql_url(url)))
    print(
        f"filled to {want:,} rows in {filled:.0f} s; "
        f"`init` (triggers + recount) took {time.monotonic() - started:.1f} s",
        flush=True,
    )
    return want


def ledger_for(url: str) -> WorkQueue:
    return WorkQueue(Database(parse_mysql_url(url)))


def claim_latency(url: str) -> tuple[list[float], list[float], list[int]]:
    ledger = ledger_for(url)
    schema.check(ledger.db)
    claims, finishes, ids = [], [], []
    for _ in range(CLAIMS):
        started = time.perf_counter()
        rows = ledger.claim_and_finish("bench", BATCH, 600)[0]
        claims.append(time.perf_counter() - started)
        if not rows:
            break
        outcomes = [
            Outcome(
                r.id, "done", r.attempts, dest_etag=r.source_etag, copy_method="copy", verified_by="etag", token=r.token
            )
            for r in rows
        ]
        started = time.perf_counter()
        ledger.finish("bench", outcomes)
        finishes.append(time.perf_counter() - started)
        ids.extend(r.id for r in rows)
    return claims, finishes, ids


def _claimer(url: str, name: str, seconds: float, ready, queue) -> None:
    done, ids, error = 0, [], None
    try:
        ledger = ledger_for(url)
        schema.check(ledger.db)
        ready.wait()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            rows = ledger.claim_and_finish(name, BATCH, 600)[0]
            if not rows:
                break
            ledger.finish(
                name,
                [
                    Outcome(
                        r.id, "done", r.attempts, dest_etag="e", copy_method="copy", verified_by="etag", token=r.token
                    )
                    for r in rows
                ],
            )
            done += len(rows)
            ids.extend(r.id for r in rows)
    except BaseException as exc:  # reported by the parent
        error = f"{type(exc).__name__}: {exc}"
    queue.put((done, ids, error))


def claim_throughput(url: str) -> tuple[float, list[int]]:
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Barrier(CLAIMERS + 1)
    queue = ctx.Queue()
    procs = [
        ctx.Process(target=_claimer, args=(url, f"c{i}", THROUGHPUT_SECONDS, ready, queue)) for i in range(CLAIMERS)
    ]
    for p in procs:
        p.start()
    ready.wait()
    started = time.monotonic()
    results = [queue.get(timeout=THROUGHPUT_SECONDS + 120) for _ in procs]
    elapsed = time.monotonic() - started
    for p in procs:
        p.join(30)
    errors = [r[2] for r in results if r[2]]
    if errors:
        raise RuntimeError(f"claimers failed: {errors[:3]}")
    total = sum(r[0] for r in results)
    return total / elapsed, [i for r in results for i in r[1]]


def restore_pending(db: MariaDB, ids: list[int]) -> None:
    """Put the rows a measure finished back to pending, so that every size starts alike."""
    with db.admin(DATABASE) as conn, conn.cursor() as cur:
        for i in range(0, len(ids), 5000):
            cur.execute(
                "UPDATE movers3_objects SET state = 'pending', lease_owner = NULL, lease_expires_at = NULL, "
                "done_at = NULL, attempts = 0 WHERE id IN %s",
                (tuple(ids[i : i + 5000]),),
            )


def insert_rate(url: str, size: int) -> float:
    """Seed pages of new keys through the seeder's own path: judge (two look-ups) and seed_page."""
    ledger = Seeds(ledger_for(url).db)
    env = {
        "MYSQL_URL": url,
        "OLD_BUCKET": "legacy-s3",
        "OLD_PREFIX": "images",
        "NEW_BUCKET": "production-s3",
        "NEW_PREFIX": "avatar",
    }
    settings = load(env)
    seed = ledger.seed_round("legacy-s3", f"bench{size}", "production-s3", "avatar", input=None, restart=True)
    ledger.seed_plan(seed, [PartSpec(prefix=f"bench{size}/")])
    part = ledger.part_claim(seed, "bench-seeder", 600)
    started = time.perf_counter()
    rows = 0
    for page in range(INSERT_PAGES):
        entries = [
            Listed(f"images/new{size}/p{page:05d}/{i:04d}.png", 1234, f"{page:08x}{i:024x}", "STANDARD")
            for i in range(1000)
        ]
        judgement = judge(entries, settings, lambda old, new: ledger.known("legacy-s3", old, "production-s3", new))
        write = PageWrite(
            old_bucket="legacy-s3",
            new_rows=[
                (
                    "legacy-s3",
                    routes.to_db(e.key),
                    "production-s3",
                    routes.to_db(n),
                    e.size,
                    e.etag,
                    e.storage_class,
                    None,
                )
                for e, n in judgement.new
            ],
            changes=[],
            parts=[],
            cursor=entries[-1].key,
            cursor_rows=0,
            listed=len(entries),
            skipped=0,
        )
        rows += ledger.seed_page(part, 600, write, seed)[0]
    return rows / (time.perf_counter() - started)


def status_latency(url: str) -> tuple[float, float, bool]:
    ledger = ledger_for(url)
    times = []
    for _ in range(20):
        started = time.perf_counter()
        fast = Reads(ledger.db).counts()
        times.append(time.perf_counter() - started)
    started = time.perf_counter()
    exact = Reads(ledger.db).counts(exact=True)
    exact_time = time.perf_counter() - started
    return statistics.median(times), exact_time, (fast.rows, fast.bytes) == (exact.rows, exact.bytes)


def set_triggers(db: MariaDB, url: str, on: bool) -> None:
    if on:
        schema.create(ledger_for(url).db)
        return
    with db.admin(DATABASE) as conn, conn.cursor() as cur:
        for name in TRIGGERS:
            cur.execute(f"DROP TRIGGER IF EXISTS {name}")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def measure(db: MariaDB, url: str, size: int) -> dict:
    result = {"size": size}
    set_triggers(db, url, False)
    claims, finishes, ids = claim_latency(url)
    restore_pending(db, ids)
    result["claim_p50_nt"], result["finish_p50_nt"] = pct(claims, 0.5), pct(finishes, 0.5)
    set_triggers(db, url, True)
    claims, finishes, ids = claim_latency(url)
    restore_pending(db, ids)
    result.update(
        claim_p50=pct(claims, 0.5),
        claim_p99=pct(claims, 0.99),
        finish_p50=pct(finishes, 0.5),
        finish_p99=pct(finishes, 0.99),
    )
    rate, ids = claim_throughput(url)
    restore_pending(db, ids)
    result["throughput"] = rate
    result["insert_rate"] = insert_rate(url, size)
    result["status"], result["status_exact"], result["status_correct"] = status_latency(url)
    print(
        f"{size:>12,} rows: claim p50 {result['claim_p50']:.2f} ms p99 {result['claim_p99']:.2f} ms "
        f"(without triggers p50 {result['claim_p50_nt']:.2f} ms); finish p50 {result['finish_p50']:.2f} ms "
        f"(without {result['finish_p50_nt']:.2f} ms); {CLAIMERS} claimers {rate:,.0f} rows/s; "
        f"insert {result['insert_rate']:,.0f} rows/s; status {result['status'] * 1000:.1f} ms "
        f"(exact count {result['status_exact'] * 1000:.0f} ms, equal: {result['status_correct']})",
        flush=True,
    )
    return result


def print_table(results: list[dict]) -> None:
    print(
        "\n| rows | claim p50 / p99 (ms) | finish p50 / p99 (ms) | claim / finish p50 without triggers | "
        f"{CLAIMERS} claimers (rows/s) | seed insert (rows/s) | status (ms) | exact COUNT(*) (ms) |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        print(
            f"| {r['size']:,} | {r['claim_p50']:.2f} / {r['claim_p99']:.2f} | {r['finish_p50']:.2f} / "
            f"{r['finish_p99']:.2f} | {r['claim_p50_nt']:.2f} / {r['finish_p50_nt']:.2f} | "
            f"{r['throughput']:,.0f} | {r['insert_rate']:,.0f} | "
            f"{r['status'] * 1000:.1f} | {r['status_exact'] * 1000:,.0f} |"
        )


if __name__ == "__main__":
    main()
