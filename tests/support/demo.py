"""`make demo`: a real migration on this machine. A private MariaDB and a SeaweedFS S3 server on
loopback under .demo/ in the repo, sample objects, `movers3 run` with several worker processes, a
check that every object arrived byte-identical with its metadata, and the final status. Running it
again reuses the same data: the second run finds everything done and copies nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.support.services import DATABASE, MariaDB, SeaweedFS, free_port, port_free

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / ".demo"
SAMPLES = 500
WORKERS = 3
DB_USER, DB_PASSWORD = "sketchUser", "sketchPassword"  # the original tool's defaults


def main() -> int:
    BASE.mkdir(exist_ok=True)
    os.chmod(BASE, 0o755)  # mariadbd runs as the mysql user
    db = MariaDB(BASE / "mariadb", port=3307 if port_free(3307) else free_port())
    s3 = SeaweedFS(BASE / "s3", s3_port=8080 if port_free(8080) and port_free(18080) else None)
    try:
        print(f"demo: starting MariaDB on 127.0.0.1:{db.port} and SeaweedFS S3 on {s3.url} (data in {BASE})")
        db.start()
        s3.start()
        with db.admin() as conn, conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE IF NOT EXISTS `{DATABASE}`")
            cur.execute(f"CREATE USER IF NOT EXISTS '{DB_USER}'@'%%' IDENTIFIED BY %s", (DB_PASSWORD,))
            cur.execute(f"GRANT ALL ON `{DATABASE}`.* TO '{DB_USER}'@'%'")
        key, secret = s3.credentials("admin")
        env = {
            **os.environ,
            "URL_ENDPOINT": s3.url,
            "AWS_ACCESS_KEY_ID": key,
            "AWS_SECRET_ACCESS_KEY": secret,
            "MYSQL_URL": db.url(DB_USER, DB_PASSWORD),
            "LOAD_FILES": "true",
            "LOG_FORMAT": "console",
        }
        for name in ("OLD_BUCKET", "OLD_PREFIX", "NEW_BUCKET", "NEW_PREFIX"):
            env.pop(name, None)  # the defaults: legacy-s3/images -> production-s3/avatar
        print(f"demo: movers3 run --workers {WORKERS} --count {SAMPLES} (LOAD_FILES=true)", flush=True)
        run = subprocess.run(
            [sys.executable, "-m", "movers3", "run", "--workers", str(WORKERS), "--count", str(SAMPLES)],
            env=env,
            stdin=subprocess.DEVNULL,
        )
        checked = verify(s3)
        print(
            f"demo: {checked} of {SAMPLES} sample objects are under production-s3/avatar/, byte-identical, "
            "with their Content-Type, Cache-Control and metadata"
        )
        print("demo: final status (movers3 status):", flush=True)
        subprocess.run([sys.executable, "-m", "movers3", "status"], env=env, check=True)
        return 0 if run.returncode == 0 and checked == SAMPLES else 1
    finally:
        s3.stop()
        db.stop()


def verify(s3: SeaweedFS) -> int:
    client = s3.client()

    def same(index: int) -> bool:
        old = client.get_object(Bucket="legacy-s3", Key=f"images/{index}.png")
        new = client.get_object(Bucket="production-s3", Key=f"avatar/{index}.png")
        return old["Body"].read() == new["Body"].read() and all(
            old.get(a) == new.get(a) for a in ("ContentType", "CacheControl", "Metadata")
        )

    with ThreadPoolExecutor(16) as pool:
        return sum(pool.map(same, range(1, SAMPLES + 1)))


if __name__ == "__main__":
    sys.exit(main())
