"""`make bench` on a tiny workload: it runs, every contender copies every object, and it prints its
tables. No timing is asserted here; speed is what the benchmark reports, not what a test checks."""

import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.acceptance


def test_the_benchmark_runs_and_prints_its_tables():
    done = subprocess.run(
        [sys.executable, "-m", "tests.bench", "--quick"],
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    for heading in (
        "40 x 4 KiB",
        "3 x 9 MiB",
        "20 mixed",
        "Scaling",
        "Peak RSS per movers3 worker",
        "Ledger round trips",
        "Network audit",
    ):
        assert heading in out, heading
    rows = [line for line in out.splitlines() if re.match(r"^(movers3|s5cmd|rclone|aws) ", line)]
    names = {line[:34].strip() for line in rows}
    assert any(name.startswith("movers3 crt ") for name in names), names
    assert {
        "s5cmd --metadata-directive COPY",
        "s5cmd (defaults)",
        "rclone copy (server-side)",
        "aws s3 cp --recursive (v1)",
    } <= names, names
    # Every contender's destination held every object in every workload.
    for line in rows:
        present = re.search(r"\s(\d+)/(\d+)\s", line)
        assert present and present.group(1) == present.group(2), line
    # movers3 and s5cmd with COPY keep Content-Type and metadata; s5cmd's defaults do not.
    for line in rows:
        if line.startswith(("movers3", "s5cmd --metadata-directive COPY")):
            assert " kept " in line, line
        if line.startswith("s5cmd (defaults)"):
            assert " lost " in line, line
    assert "OUTSIDE" not in out
    # No contender failed and every movers3 run left every row done: a run's notes ("exit N", "ledger
    # {...}") would stand in brackets on its lines.
    assert not re.search(r"[(;] ?(exit -?\d+|ledger \{)", out), out[-3000:]
