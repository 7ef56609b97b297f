"""The end of a migration at scale: a benchmark, not a test (`make bench-cutover`).

It fills a private MariaDB and SeaweedFS with BENCH_ROWS (default 100,000) migrated objects: each
source object, its copy, and a done, verified ledger row recording the copy's ETag and MD5. Then it
runs, as a user would, `movers3 verify --sample 0` (two HEADs a row) and `movers3 delete-source
--max-deletes N` (two HEADs and a DELETE a row), and prints for each the time, the rate, the peak
RSS of the process, and its last progress line. Figures are noisy on a shared machine: run it alone.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from movers3.ledger import schema
from movers3.ledger.db import Database
from movers3.settings import parse_mysql_url
from tests.support.helpers import MOVERS3
from tests.support.services import DATABASE, NEW_BUCKET, OLD_BUCKET, MariaDB, SeaweedFS

ROWS = int(os.environ.get("BENCH_ROWS", "100000"))
THREADS = 64
INSERT_CHUNK = 5_000


def body(i: int) -> bytes:
    return f"object {i:08d} ".encode() * 8


def main() -> None:
    base = Path(tempfile.mkdtemp(prefix="m3c-", dir="/tmp"))
    base.chmod(0o755)
    db, s3 = MariaDB(base / "db"), SeaweedFS(base / "s3")
    try:
        db.start()
        s3.start()
        db.create_database()
        url = f"mysql+pymysql://root@localhost/{DATABASE}?unix_socket={db.socket}"
        schema.create(Database(parse_mysql_url(url)))
        started = time.monotonic()
        fill(db, s3)
        print(f"filled {ROWS:,} objects on each side and {ROWS:,} done rows in {time.monotonic() - started:.0f} s")
        key, secret = s3.credentials("admin")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MYSQL_", "OLD_", "NEW_"))}
        env.update(
            URL_ENDPOINT=s3.url,
            AWS_ACCESS_KEY_ID=key,
            AWS_SECRET_ACCESS_KEY=secret,
            MYSQL_URL=url,
            OLD_BUCKET=OLD_BUCKET,
            OLD_PREFIX="bench",
            NEW_BUCKET=NEW_BUCKET,
            NEW_PREFIX="moved",
            LOG_FORMAT="json",
        )
        measure("verify --sample 0", ["verify", "--sample", "0"], env)
        measure("delete-source", ["delete-source", "--max-deletes", str(ROWS)], env)
    finally:
        s3.stop()
        db.stop()
        shutil.rmtree(base, ignore_errors=True)


def fill(db: MariaDB, s3: SeaweedFS) -> None:
    client = s3.client()

    def put(i: int) -> None:
        data = body(i)
        client.put_object(Bucket=OLD_BUCKET, Key=f"bench/{i:08d}.bin", Body=data)
        client.put_object(Bucket=NEW_BUCKET, Key=f"moved/{i:08d}.bin", Body=data)

    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(put, range(ROWS)))
    with db.admin(DATABASE) as conn, conn.cursor() as cur:
        for start in range(0, ROWS, INSERT_CHUNK):
            rows = []
            for i in range(start, min(start + INSERT_CHUNK, ROWS)):
                md5 = hashlib.md5(body(i)).hexdigest()  # noqa: S324 (S3's ETag)
                rows.append(
                    (
                        OLD_BUCKET,
                        f"bench/{i:08d}.bin".encode(),
                        NEW_BUCKET,
                        f"moved/{i:08d}.bin".encode(),
                        len(body(i)),
                        md5,
                        md5,
                        f"md5:{md5}",
                    )
                )
            cur.executemany(
                "INSERT INTO movers3_objects (old_bucket, old_key, new_bucket, new_key, size, source_etag, state, "
                "attempts, dest_etag, copy_method, verified_by, checksum, done_at) "
                "VALUES (%s, %s, %s, %s, %s, %s, 'done', 1, %s, 'copy', 'etag', %s, UTC_TIMESTAMP(6))",
                rows,
            )
            conn.commit()


# Runs the command as a child and prints that child's peak RSS last on stderr (ru_maxrss, KiB).
PEAK = (
    "import resource, subprocess, sys; code = subprocess.run(sys.argv[1:]).returncode; "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(code)"
)


def measure(label: str, args: list[str], env: dict[str, str]) -> None:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", PEAK, *MOVERS3, *args], env=env, capture_output=True, text=True, timeout=3600
    )
    seconds = time.monotonic() - started
    *stderr, peak = done.stderr.splitlines()
    final = [json.loads(line) for line in stderr if '"progress_final"' in line]
    progress = [line for line in stderr if '"event": "progress"' in line]
    print(
        f"\n{label}: exit {done.returncode}, {seconds:.1f} s, {ROWS / seconds:,.0f} rows/s, "
        f"peak RSS {int(peak) // 1024} MiB"
    )
    print(f"  progress lines: {len(progress)}; last: {final[-1] if final else '(none)'}")
    print(f"  stdout tail: {done.stdout.strip().splitlines()[-1] if done.stdout.strip() else '(empty)'}")


if __name__ == "__main__":
    main()
