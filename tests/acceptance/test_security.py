"""Security: least-privilege roles that are really enforced, hostile keys migrated exactly without
breaking a query, a log line or the CSV report, and no secret in any output of a full run, at any log
level, nor in any process title.

Keys SeaweedFS can't hold as given (backslashes, `.`/`..` segments, `//`, a leading `/` after the
folder, one segment over ~255 bytes, folder markers) are migrated on moto, end to end through the CLI.

CSV injection (docs/operations.md, "The ledger and the report"): a cell that a spreadsheet would read as a formula
(starting with `=`, `+`, `-`, `@`, tab or CR) is written with a leading `'`, as OWASP recommends. Keys
always start with their folder, so only a folder (or an error) starting with one of those is affected;
the ledger keeps the exact key.
"""

from __future__ import annotations

import csv
import io
import uuid
from pathlib import Path

import pymysql
import pytest

from tests.support.helpers import Route, assert_forbidden, json_events, run_cli, start_cli, wait_for
from tests.support.keys import HOSTILE
from tests.support.services import DB_ROLES, S3_IDENTITIES

pytestmark = pytest.mark.acceptance

SECRETS = [spec["secret"] for spec in S3_IDENTITIES.values()] + [password for password, _ in DB_ROLES.values()]
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# Keys that try to forge a log line or a CSV row, or to break a statement.
FORGERS = [
    'x\n{"event": "forged", "level": "error", "timestamp": "2030-01-01T00:00:00Z"}',
    "y\r\n2030-01-01 00:00:00 [error    ] forged console line",
    'z",\n"legacy-s3","=cmd|calc!A0',
    "a'; DELETE FROM movers3_objects; --",
    "b'); DROP TABLE movers3_seeds; -- ",
    "c\x1b[31mred\x1b[0m\x07\x7f",
]


def csv_rows(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text, newline="")))


def unguarded(cell: str) -> str:
    """A report cell as the key it stands for: the documented rule, undone."""
    return cell[1:] if cell.startswith("'") and cell[1:].startswith(FORMULA_STARTS) else cell


# -- roles ----------------------------------------------------------------------------------------


def test_the_worker_roles_are_enforced_by_both_servers(route, stack):
    """The accounts every worker in these tests runs with may do what docs/permissions.md says and nothing
    more: were they wider, the tests that use them would prove less."""
    route.put("probe.bin", b"probe")
    worker = stack.s3.client("worker-iam")
    assert worker.get_object(Bucket=route.old_bucket, Key=route.old("probe.bin"))["Body"].read() == b"probe"
    worker.copy_object(
        Bucket=route.new_bucket,
        Key=route.new("probe.bin"),
        CopySource={"Bucket": route.old_bucket, "Key": route.old("probe.bin")},
    )
    forbidden = {
        "DeleteObject on the new bucket": lambda: worker.delete_object(
            Bucket=route.new_bucket, Key=route.new("probe.bin")
        ),
        "GetObject on the new bucket": lambda: worker.get_object(Bucket=route.new_bucket, Key=route.new("probe.bin")),
        "ListBucket on the new bucket": lambda: worker.list_objects_v2(
            Bucket=route.new_bucket, Prefix=route.new_prefix
        ),
        "PutObject on the old bucket": lambda: worker.put_object(
            Bucket=route.old_bucket, Key=route.old("x"), Body=b"x"
        ),
        "DeleteObject on the old bucket": lambda: worker.delete_object(
            Bucket=route.old_bucket, Key=route.old("probe.bin")
        ),
        "CreateBucket": lambda: worker.create_bucket(Bucket="m3-" + uuid.uuid4().hex[:8]),
    }
    assert_forbidden(forbidden, worker)

    conn = pymysql.connect(
        host="127.0.0.1",
        port=stack.db.port,
        user="m3_worker",
        password=DB_ROLES["m3_worker"][0],
        database="sketch",
        autocommit=True,
    )
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM movers3_objects")
            for statement in (
                "DELETE FROM movers3_objects",
                "INSERT INTO movers3_schema (singleton, version) VALUES (1, 1)",
                "CREATE TABLE m3_x (id INT)",
                "DROP TABLE movers3_seeds",
                "ALTER TABLE movers3_objects ADD COLUMN x INT",
            ):
                with pytest.raises(pymysql.err.OperationalError) as denied:
                    cur.execute(statement)
                assert denied.value.args[0] in (1142, 1044), (statement, denied.value)
    finally:
        conn.close()


# -- hostile keys ------------------------------------------------------------------------------------


def test_hostile_keys_on_seaweedfs_survive_the_ledger_the_logs_and_the_report(stack, tmp_path):
    """Under folders that start with `=` and `@` (the CSV formula guard's case), with keys that try to
    forge log lines and CSV rows, break SQL, and one of exactly 1024 bytes of multi-byte UTF-8."""
    tag = uuid.uuid4().hex[:8]
    route = Route(stack, old_prefix=f"=HYPERLINK(1)+{tag}/in", new_prefix=f"@SUM(1000000)-{tag}/ou")
    head = len(route.old("").encode())
    assert head == len(route.new("").encode())
    exact = "k/" + "/".join(["😀" * 50] * 4) + "/"  # segments of 200 bytes, as SeaweedFS keeps them
    exact += "é" * ((1024 - head - len(exact.encode())) // 2)
    exact += "x" * (1024 - head - len(exact.encode()))
    keys = HOSTILE + FORGERS + [exact, "-minus", "+plus", "=eq", "@at", "%41%2F..%2F", "q?x=1#frag", "sp ace "]
    assert len(route.old(exact).encode()) == 1024
    for key in keys:
        route.put(key, body=key.encode())
    with stack.db.admin("sketch") as conn, conn.cursor() as cur:
        cur.execute("DELETE FROM movers3_objects")
        cur.execute("DELETE FROM movers3_seeds")
    run_cli("seed", env=route.env("seeder", "m3_seeder"))
    env = route.env("worker-iam", "m3_worker", LOG_LEVEL="debug")
    worker = run_cli("worker", "--exit-when-done", env=env)
    events = json_events(worker.stdout)  # every line one JSON event: no key split a line
    assert not any(e.get("event") == "forged" for e in events)
    assert sorted(e["key"] for e in events if e.get("event") == "object_copied") == sorted(route.old(k) for k in keys)
    assert sorted(route.new_keys()) == sorted(route.new(k) for k in keys)
    for key in keys:
        assert route.read_new(key)["Body"].read() == key.encode()
    assert route.states() == {"done": len(keys)}

    # To a file: the test's own pipe would turn the CR of a key into a newline (universal newlines).
    run_cli("report", "--output", str(tmp_path / "report.csv"), env=env)
    with open(tmp_path / "report.csv", newline="", encoding="utf-8") as out:
        rows = list(csv.DictReader(out))
    assert len(rows) == len(keys)
    for row in rows:
        assert not row["old_key"].startswith(FORMULA_STARTS) and not row["new_key"].startswith(FORMULA_STARTS)
        assert row["old_key"].startswith("'=") and row["new_key"].startswith("'@")
    assert sorted(unguarded(r["old_key"]) for r in rows) == sorted(route.old(k) for k in keys)
    assert sorted(unguarded(r["new_key"]) for r in rows) == sorted(route.new(k) for k in keys)

    # The console format escapes what the JSON format encodes: no key starts a line of its own.
    console = run_cli("status", env={**env, "LOG_FORMAT": "console"})
    for line in console.stderr.splitlines() + console.stdout.splitlines():
        assert "forged" not in line


def test_keys_only_moto_keeps_exactly_are_migrated_end_to_end(route, moto):
    """Backslashes, `.` and `..` segments, `//`, a leading `/` after the folder, a segment of 1000 bytes
    and more (the whole key 1024 bytes) and folder markers, server-side on moto through the CLI."""
    key, secret = moto.credentials("worker")
    on_moto = {
        "URL_ENDPOINT": moto.url,
        "AWS_ACCESS_KEY_ID": key,
        "AWS_SECRET_ACCESS_KEY": secret,
        "COPY_MODE": "server",
        "LOG_LEVEL": "debug",
    }
    head = len(route.old("").encode())
    long_segment = "big/" + "😀" * 250
    long_segment += "x" * (1024 - head - len(long_segment.encode()))
    keys = [
        "back\\slash.png",
        "..\\..\\win.ini",
        "../up.png",
        "a/../../b.png",
        "./here",
        "a/./b",
        "double//slash",
        "/leading-slash",
        "//two-leading",
        "trailing-dot.",
        "folder/",
        "nested/folder/",
        "a\\",
        "dots/.../x",
        long_segment,
        FORGERS[-1],
        "b\\'); DROP TABLE movers3_seeds; -- \\",
    ]  # moto's HTTP layer refuses a newline in a key; SeaweedFS keeps it
    client = moto.client()
    for k in keys:
        client.put_object(Bucket=route.old_bucket, Key=route.old(k), Body=k.encode())
    assert len(route.old(long_segment).encode()) == 1024
    run_cli("seed", env=route.env("seeder", "m3_seeder", **on_moto))
    env = route.env("worker", "m3_worker", **on_moto)
    worker = run_cli("worker", "--exit-when-done", env=env)
    json_events(worker.stdout)  # every line one JSON event: no key split a line
    got = client.list_objects_v2(Bucket=route.new_bucket, Prefix=route.new_prefix + "/")
    assert sorted(o["Key"] for o in got.get("Contents", [])) == sorted(route.new(k) for k in keys)
    for k in keys:
        assert client.get_object(Bucket=route.new_bucket, Key=route.new(k))["Body"].read() == k.encode()
    assert route.states() == {"done": len(keys)}
    rows = csv_rows(run_cli("report", env=env).stdout)
    assert sorted(r["old_key"] for r in rows) == sorted(route.old(k) for k in keys)


# -- secrets --------------------------------------------------------------------------------------


def test_no_secret_in_any_output_of_a_full_run_or_any_process_title(route, tmp_path):
    """init, load-samples, seed, run (workers as child processes), worker, status, report, retry, verify
    and failing commands, all at debug level: every byte they print, and the command line of every
    process they start, is searched for every password and secret key of the test accounts."""
    outputs: list[str] = []
    debug = {"LOG_LEVEL": "debug", "LOG_FORMAT": "json"}
    admin_env = route.env("admin", "m3_init", **debug)

    def run(*args, env, check=True):
        result = run_cli(*args, env=env, check=check, timeout=300)
        outputs.extend([result.stdout, result.stderr])
        return result

    run("init", env=admin_env)
    run("load-samples", "--count", "30", env=admin_env)
    run("seed", env=route.env("seeder", "m3_seeder", **debug))
    worker_env = route.env("worker-iam", "m3_worker", **debug)

    # A worker as a long-running process: its command line, read while it works.
    worker = start_cli("worker", "--worker-id", "titled", env=worker_env, log=tmp_path / "titled.log")
    try:
        wait_for(lambda: "worker_started" in (tmp_path / "titled.log").read_text(), timeout=120, what="worker up")
        titles = [Path(f"/proc/{worker.pid}/cmdline").read_bytes().decode(errors="replace")]
    finally:
        worker.terminate()
        worker.wait(30)
    outputs.append((tmp_path / "titled.log").read_text())

    # `run` starts its workers as child processes: their command lines too.
    route.put("extra.png", b"one more")
    runner = start_cli("run", "--workers", "2", env=route.env("admin", "m3_init", **debug), log=tmp_path / "run.log")
    children = wait_for(lambda: _children(runner.pid), timeout=120, what="run's worker processes")
    titles += [Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace") for pid in children]
    assert runner.wait(300) == 0, (tmp_path / "run.log").read_text()[-3000:]
    outputs.append((tmp_path / "run.log").read_text())

    run("status", env=worker_env)
    run("status", "--json", env=worker_env)
    run("report", env=worker_env)
    run("retry", env=worker_env)
    run("verify", "--sample", "0", "--full", env=route.env("admin", "m3_worker", **debug))
    # Failures print errors, and --debug tracebacks: wrong password, wrong secret key.
    wrong_db = {
        **worker_env,
        "MYSQL_URL": worker_env["MYSQL_URL"].replace(DB_ROLES["m3_worker"][0], "not-" + DB_ROLES["m3_worker"][0]),
    }
    run("worker", "--debug", env=wrong_db, check=False)
    run(
        "worker",
        "--debug",
        env={**worker_env, "AWS_SECRET_ACCESS_KEY": "not-" + S3_IDENTITIES["worker-iam"]["secret"]},
        check=False,
    )

    assert route.states() == {"done": 31}
    assert len(titles) >= 3 and all("movers3" in t for t in titles)
    leaked = [(secret, i) for secret in SECRETS for i, text in enumerate(outputs + titles) if secret in text]
    assert leaked == []
    assert sum(len(text) for text in outputs) > 10_000  # the run did print: this searched real output


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found if len(found) >= 2 else []
