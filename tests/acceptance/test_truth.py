"""The end of a migration tells the truth: `verify` checks every row it says it checked, at a size above
its pages and windows, and marks every bad copy for `retry` to repair; after `delete-source`, it
checks the copies against what the ledger recorded, not against sources removed on purpose, and
`retry` leaves such rows alone; `status` and `report` show them apart."""

import json
import os
import re
from concurrent.futures import ThreadPoolExecutor

import pytest

from movers3.ledger.reads import DONE_PAGE
from movers3.verify import WINDOW
from tests.support.helpers import admin_exec, run_cli

pytestmark = pytest.mark.acceptance

ROWS = 5_000
BAD = 1_000


def migrate(route, env, count: int, size: int = 64) -> None:
    route.put_many(((f"{i:05d}.bin", os.urandom(size)) for i in range(count)), threads=32)
    run_cli("seed", env=route.env("seeder", "m3_seeder"))
    run_cli("worker", "--exit-when-done", env={**env, "WORKER_THREADS": "32"}, timeout=600)
    assert route.states() == {"done": count}


def overwrite_copies(route, names: list[str]) -> None:
    client = route.stack.s3.client()
    with ThreadPoolExecutor(32) as pool:
        list(
            pool.map(
                lambda n: client.put_object(Bucket=route.new_bucket, Key=route.new(n), Body=b"not the copy"), names
            )
        )


def summary(out: str) -> tuple[int, int, int]:
    found = re.search(r"verified ([\d,]+) done rows.*: ([\d,]+) ok, ([\d,]+) mismatched", out)
    assert found, out[-2000:]
    return tuple(int(g.replace(",", "")) for g in found.groups())


def test_verify_finds_and_marks_every_bad_copy_of_thousands_and_retry_repairs_them(route, env):
    assert ROWS > 2 * DONE_PAGE and ROWS > 10 * WINDOW  # several pages of reads, many windows of checks
    migrate(route, env, ROWS)
    bad = [f"{i:05d}.bin" for i in range(0, ROWS, ROWS // BAD)]
    assert len(bad) == BAD
    overwrite_copies(route, bad)
    verifier = route.env("admin", "m3_worker")

    result = run_cli("verify", "--sample", "0", "--mark-failed", env=verifier, check=False, timeout=600)
    print(f"TRUTH verify: {result.stdout.strip().splitlines()[-1]}")
    assert result.returncode == 1
    assert summary(result.stdout) == (ROWS, ROWS - BAD, BAD)
    assert f"{BAD:,} marked failed" in result.stdout
    # Progress shows on stderr as it goes, and once at the end with the rate.
    final = [json.loads(line) for line in result.stderr.splitlines() if '"progress_final"' in line]
    assert len(final) == 1 and (final[0]["rows"], final[0]["mismatched"]) == (ROWS, BAD)
    assert final[0]["rows_per_second"] > 0
    flagged = {
        line.split(" -> ")[0].rsplit("/", 1)[1] for line in result.stdout.splitlines() if line.startswith("MISMATCH")
    }
    assert flagged == set(bad)
    assert route.states() == {"done": ROWS - BAD, "failed": BAD}

    assert f"{BAD:,} failed rows are pending again" in run_cli("retry", env=env).stdout
    run_cli("worker", "--exit-when-done", env={**env, "WORKER_THREADS": "32"}, timeout=600)
    assert route.states() == {"done": ROWS}
    again = run_cli("verify", "--sample", "0", env=verifier, check=False, timeout=600)
    assert again.returncode == 0 and summary(again.stdout) == (ROWS, ROWS, 0), again.stdout[-2000:]


def test_after_delete_source_verify_checks_copies_against_the_ledger_and_retry_leaves_them(route, env):
    migrate(route, env, 40, size=5_000)
    deleted = run_cli("delete-source", "--max-deletes", "40", env=route.env("deleter", "m3_deleter"))
    assert "deleted 40 " in deleted.stdout
    final = [json.loads(line) for line in deleted.stderr.splitlines() if '"progress_final"' in line]
    assert len(final) == 1 and (final[0]["rows"], final[0]["deleted"]) == (40, 40)
    verifier = route.env("admin", "m3_worker")

    # Every source is gone on purpose: no mismatch for that, and --mark-failed marks nothing.
    for full in ([], ["--full"]):
        checked = run_cli("verify", "--sample", "0", "--mark-failed", *full, env=verifier, check=False)
        assert checked.returncode == 0 and summary(checked.stdout) == (40, 40, 0), checked.stdout + checked.stderr
    assert route.states() == {"done": 40}

    # A copy damaged after the cut-over is still found, against the MD5 the copy recorded...
    overwrite_copies(route, ["00007.bin"])
    broken = run_cli("verify", "--sample", "0", "--full", "--mark-failed", env=verifier, check=False)
    assert broken.returncode == 1 and summary(broken.stdout) == (40, 39, 1)
    # ...and `retry` does not queue a row that has nothing left to copy from.
    retried = run_cli("retry", env=env).stdout
    assert "0 failed rows are pending again; 1 stay failed: their source was deleted" in retried
    assert route.states() == {"done": 39, "failed": 1}

    # status and report show the moved rows apart.
    status = json.loads(run_cli("status", "--json", env=env).stdout)
    assert (status["done"], status["source_deleted"]) == (39, 40)
    assert "40  of all rows: source deleted by delete-source" in run_cli("status", env=env).stdout
    report = [json.loads(line) for line in run_cli("report", "--format", "jsonl", env=env).stdout.splitlines()]
    assert len(report) == 40 and all(r["source_deleted_at"] for r in report)
    exact = json.loads(run_cli("status", "--json", "--exact", env=env).stdout)
    assert exact["source_deleted"] == 40
    (recorded,) = admin_exec(route, "SELECT COUNT(*) FROM movers3_objects WHERE source_deleted_at IS NOT NULL")[0]
    assert recorded == 40
