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
        "200 x 4 KiB",  # the headline small workload (20,000 in the real run)
        "40 x 4 KiB",  # the start-up one (2,000)
        "3 x 9 MiB",
        "20 mixed",
        "S3 requests per object, 40 x 4 KiB",
        "Scaling",
        "Peak RSS per movers3 worker",
        "Ledger round trips",
        "Network audit",
        "Targets (issue 17",
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
    # movers3 rows carry their copy phase's rate from the ledger (none when every row was finished in
    # one batch, as 40 rows may be); the peers have none.
    for line in rows:
        assert re.search(r"x +(-|[\d,]+)$", line), line
        if not line.startswith("movers3"):
            assert line.endswith(" -"), line
    headline = out[out.index("200 x 4 KiB") :].split("\n\n")[0].splitlines()
    assert all(re.search(r"x +[\d,]+$", line) for line in headline if line.startswith("movers3")), headline
    _check_request_counts(out, PEERS | {"movers3 crt"})
    # Every target is printed as a ratio with its verdict (never asserted: speed is not a test's).
    targets = out[out.index("Targets (issue 17") :].split("\n\n")[0].splitlines()[1:]
    assert len(targets) == 8, targets
    for line in targets:
        goal = r"(>=|<=) \d\.\d\dx|movers3 <= \d\.\d\d ms"
        assert re.search(rf"= \d+\.\d\dx \(target ({goal})\): (met|NOT met)$|\(target none\)$", line), line
    # No contender failed and every movers3 run left every row done: a run's notes ("exit N", "ledger
    # {...}") would stand in brackets on its lines.
    assert not re.search(r"[(;] ?(exit -?\d+|ledger \{)", out), out[-3000:]


PEERS = {"s5cmd COPY", "s5cmd dflt", "rclone", "aws s3 cp"}


def _check_request_counts(out: str, columns: set[str]) -> None:
    """The counting pass's block: one column per contender, every object copied by exactly one
    CopyObject (4 KiB objects), requests and connections counted for each."""
    block = out[out.index("S3 requests per object, 40 x 4 KiB") :].split("\n\n")[0].splitlines()

    def cells(line: str) -> list[str]:  # a 44-character label, then 12-character columns
        return [line[at : at + 12].strip() for at in range(44, len(line), 12)]

    header = cells(block[1])
    assert set(header) == columns, header
    table = {line[:44].strip(): cells(line) for line in block[2:] if not line.startswith("  ")}
    assert table["CopyObject"] == ["1.00"] * len(header), table
    assert all(float(v) >= 1.0 for v in table["all requests"]), table
    assert all(int(v) > 0 for v in table["TCP connections opened (in all)"]), table
    assert table["objects present after the run"] == ["40/40"] * len(header), table
    assert any(label.startswith("ListObjects") for label in table), table
    assert not any(line.startswith("  ! ") for line in block), block
