"""A tiny run of the ledger benchmark (`make bench-ledger`), so that it keeps working: its figures are
not checked (speed lives in the benchmark), only that every measure ran and status was exact."""

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.acceptance


def test_the_ledger_benchmark_runs_end_to_end():
    env = {
        **os.environ,
        "BENCH_SIZES": "2000,3000",
        "BENCH_SECONDS": "1",
        "BENCH_CLAIMS": "10",
        "BENCH_INSERT_PAGES": "2",
        "BENCH_CLAIMERS": "2",
        "BENCH_BUFFER_POOL": "128M",
        "BENCH_LOG_FILE_SIZE": "48M",
    }
    done = subprocess.run(
        [sys.executable, "-m", "tests.bench.ledger"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert done.stdout.count("equal: True") == 2
    rows = [line for line in done.stdout.splitlines() if line.startswith("| 2,000 |") or line.startswith("| 3,000 |")]
    assert len(rows) == 2
