"""The benchmark's moving parts: the private services, the workloads, one timed run of a contender
and the checks after it. `__main__` decides what to run and prints the tables."""

from __future__ import annotations

import compileall
import dataclasses
import hashlib
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil

import movers3
from movers3.ledger import schema
from movers3.ledger.db import Database
from movers3.settings import parse_mysql_url
from movers3.values import MIB
from tests.bench import procs, tools
from tests.support.services import DATABASE, NEW_BUCKET, OLD_BUCKET, MariaDB, SeaweedFS

MOVERS3 = [sys.executable, "-m", "movers3"]
KIB = 1024
CONTENT_TYPES = ("image/png", "application/json", "text/plain; charset=utf-8", "image/webp")
RUN_TIMEOUT_SECONDS = 900
CHECK_SAMPLE = 100  # objects whose Content-Type and metadata are read back after each run


@dataclasses.dataclass(frozen=True)
class Workload:
    name: str
    label: str
    sizes: tuple[int, ...]

    @property
    def count(self) -> int:
        return len(self.sizes)

    @property
    def bytes(self) -> int:
        return sum(self.sizes)


def mixed_sizes(count: int, seed: int = 8) -> tuple[int, ...]:
    """Mostly small objects, some of a few MiB, and one in twenty between 16 and 96 MiB (so that
    some cross the 64 MiB multipart threshold and the AWS CLI's 8 MiB one)."""
    rng = random.Random(seed)
    sizes = []
    for _ in range(count):
        roll = rng.random()
        if roll < 0.70:
            sizes.append(rng.randint(1 * KIB, 256 * KIB))
        elif roll < 0.95:
            sizes.append(rng.randint(256 * KIB, 8 * MIB))
        else:
            sizes.append(rng.randint(16 * MIB, 96 * MIB))
    return tuple(sizes)


def workloads(quick: bool) -> list[Workload]:
    """small20k is the headline small workload (the steady state: start-up is a few % of its run);
    small2k, the same objects a tenth as many, is the start-up figure."""
    if quick:
        return [
            Workload("small20k", "200 x 4 KiB", (4 * KIB,) * 200),
            Workload("small2k", "40 x 4 KiB", (4 * KIB,) * 40),
            Workload("large", "3 x 9 MiB", (9 * MIB,) * 3),
            Workload("mixed", "20 mixed", mixed_sizes(20, seed=3)),
        ]
    return [
        Workload("small20k", "20,000 x 4 KiB", (4 * KIB,) * 20000),
        Workload("small2k", "2,000 x 4 KiB", (4 * KIB,) * 2000),
        Workload("large", "20 x 64 MiB", (64 * MIB,) * 20),
        Workload("mixed", "200 mixed (1 KiB-96 MiB)", mixed_sizes(200)),
    ]


@dataclasses.dataclass
class Result:
    tool: str
    workload: str
    run: int
    seconds: float
    objects: int
    bytes: int
    client_cpu: float
    s3_cpu: float
    db_cpu: float
    present: int  # destination objects with the right key and size
    attrs_kept: int  # sampled objects whose Content-Type and metadata survived
    attrs_checked: int
    worker_rss_kib: list[int] = dataclasses.field(default_factory=list)
    db_questions: int = 0
    note: str = ""
    # movers3 only: rows done per second over the copy phase, from the ledger's done_at (nan if unknown)
    copy_rate: float = float("nan")

    @property
    def objects_per_second(self) -> float:
        return self.objects / self.seconds

    @property
    def mb_per_second(self) -> float:
        return self.bytes / self.seconds / 1e6


def _sample_peaks(pid: int, peaks: dict[int, int]) -> None:
    """VmHWM (the kernel's own peak RSS) of every worker process under `pid`, in KiB."""
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return
    for child in children:
        try:
            if "worker" not in child.cmdline():
                continue
            for line in Path(f"/proc/{child.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peaks[child.pid] = max(peaks.get(child.pid, 0), int(line.split()[1]))
        except (psutil.Error, OSError, ValueError):
            continue


def _cpu(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


class Bench:
    def __init__(self, *, keep: bool = False) -> None:
        # Short path: the MariaDB socket path must stay under 108 bytes.
        self.base = Path(tempfile.mkdtemp(prefix="m3bench-", dir="/tmp"))
        self.base.chmod(0o755)  # mariadbd runs as the mysql user and must reach its datadir
        self.home = self.base / "home"
        self.logs = self.base / "logs"
        self.home.mkdir()
        self.logs.mkdir()
        (self.home / "empty").write_text("")
        self.keep = keep
        self.registry = procs.Registry()
        self.db = MariaDB(self.base / "db")
        self.s3 = SeaweedFS(self.base / "s3")
        self.sources: dict[str, dict[str, tuple[int, str, str]]] = {}  # workload -> rel key -> (size, type, idx)
        self._log_seq = 0

    # -- services ----------------------------------------------------------------------------

    def start(self) -> None:
        # Byte-compiled first, as pip leaves an installed wheel (and the image): the runs set
        # PYTHONDONTWRITEBYTECODE, and a checkout's movers3 would otherwise be compiled again by
        # every process of every run, start-up the peers' binaries never pay.
        compileall.compile_dir(str(Path(movers3.__file__).parent), quiet=1)
        self.db.start()
        self.s3.start()
        self.db.create_database()
        schema.create(Database(parse_mysql_url(self.db.role_url("m3_init"))))
        self.db.grant_roles()
        self.admin = self.s3.client("admin")

    def stop(self) -> None:
        self.registry.stop_all()
        self.s3.stop()
        self.db.stop()
        if not self.keep:
            shutil.rmtree(self.base, ignore_errors=True)

    def log(self, name: str) -> Path:
        self._log_seq += 1
        return self.logs / f"{self._log_seq:04d}-{re.sub(r'[^A-Za-z0-9]+', '-', name)}.log"

    # -- source and destination ----------------------------------------------------------------

    def src(self, workload: Workload) -> str:
        return f"bench-{workload.name}/src"

    def dst(self, workload: Workload) -> str:
        return f"bench-{workload.name}/dst"

    def seed_source(self, workload: Workload) -> None:
        """A fresh source: every object with a Content-Type and user metadata, random bytes."""
        self._delete_prefix(OLD_BUCKET, self.src(workload) + "/")
        block = os.urandom(max(workload.sizes))
        expected = {}

        def put(index: int) -> None:
            size = workload.sizes[index]
            rel = f"o{index:05d}.bin"
            head = hashlib.sha256(f"{workload.name}/{index}".encode()).digest()
            body = (head + block[len(head) : size]) if size > len(head) else head[:size]
            ctype = CONTENT_TYPES[index % len(CONTENT_TYPES)]
            self.admin.put_object(
                Bucket=OLD_BUCKET,
                Key=f"{self.src(workload)}/{rel}",
                Body=body,
                ContentType=ctype,
                Metadata={"idx": str(index), "origin": "bench"},
            )
            expected[rel] = (size, ctype, str(index))

        # Once per workload, shared by every contender and run (the source is only read): 20,000
        # objects take about 25 s here.
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(put, range(workload.count)))
        self.sources[workload.name] = expected

    def _keys(self, bucket: str, prefix: str) -> dict[str, int]:
        found = {}
        for page in self.admin.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                found[obj["Key"]] = obj["Size"]
        return found

    def _delete_prefix(self, bucket: str, prefix: str) -> None:
        keys = list(self._keys(bucket, prefix))
        for start in range(0, len(keys), 1000):
            chunk = [{"Key": k} for k in keys[start : start + 1000]]
            self.admin.delete_objects(Bucket=bucket, Delete={"Objects": chunk, "Quiet": True})
        left = self._keys(bucket, prefix)
        if left:
            raise procs.BenchError(f"{len(left)} objects left under {bucket}/{prefix} after clearing it")

    def clear_destination(self, workload: Workload) -> None:
        self._delete_prefix(NEW_BUCKET, self.dst(workload) + "/")

    def check_destination(self, workload: Workload) -> tuple[int, int, int]:
        """(objects present with the right size, sampled objects with Content-Type and metadata kept,
        objects sampled)."""
        expected = self.sources[workload.name]
        prefix = self.dst(workload) + "/"
        found = {k[len(prefix) :]: size for k, size in self._keys(NEW_BUCKET, prefix).items()}
        present = sum(1 for rel, (size, _, _) in expected.items() if found.get(rel) == size)
        rels = sorted(expected)
        # The largest objects always, the rest evenly spread.
        step = max(1, len(rels) // CHECK_SAMPLE)
        sample = sorted(set(rels[::step]) | set(sorted(rels, key=lambda r: -expected[r][0])[:10]))
        sample = [r for r in sample if r in found]

        def kept(rel: str) -> bool:
            head = self.admin.head_object(Bucket=NEW_BUCKET, Key=prefix + rel)
            _, ctype, idx = expected[rel]
            return head.get("ContentType") == ctype and head.get("Metadata") == {"idx": idx, "origin": "bench"}

        with ThreadPoolExecutor(16) as pool:
            kept_count = sum(pool.map(kept, sample))
        return present, kept_count, len(sample)

    # -- the ledger ----------------------------------------------------------------------------

    def clear_ledger(self) -> None:
        with self.db.admin(DATABASE) as conn, conn.cursor() as cur:
            cur.execute("DELETE FROM movers3_objects")
            cur.execute("DELETE FROM movers3_seeds")

    def ledger_states(self) -> dict[str, int]:
        with self.db.admin(DATABASE) as conn, conn.cursor() as cur:
            cur.execute("SELECT state, COUNT(*) FROM movers3_objects GROUP BY state")
            return {state: int(n) for state, n in cur.fetchall()}

    def copy_phase_rate(self) -> float:
        """Rows done per second between the first finish and the last one, from done_at. The ledger
        keeps no claim time once a row is done (its finish overwrites updated_at and the lease), so the
        phase starts at the first batch's finish: its rows are left out of the count, and what is
        measured is the worker's steady state, without the start-up of `run`, the seed's first page
        and the workers' imports before it."""
        with self.db.admin(DATABASE) as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT COUNT(*), TIMESTAMPDIFF(MICROSECOND, MIN(done_at), MAX(done_at)), "
                "SUM(done_at = (SELECT MIN(done_at) FROM movers3_objects WHERE state = 'done')) "
                "FROM movers3_objects WHERE state = 'done'"
            )
            done, span, first = cur.fetchone()
        if not done or not span:
            return float("nan")
        return (int(done) - int(first)) / (int(span) / 1e6)

    def db_status(self) -> dict[str, int]:
        with self.db.admin() as conn, conn.cursor() as cur:
            cur.execute("SHOW GLOBAL STATUS WHERE Variable_name IN ('Questions', 'Com_commit')")
            return {name: int(value) for name, value in cur.fetchall()}

    # -- one timed run ------------------------------------------------------------------------

    def movers3_env(self, workload: Workload, identity: str, role: str, tool: tools.Tool) -> dict[str, str]:
        key, secret = self.s3.credentials(identity)
        env = tools.clean_env(self.home)
        env.update(
            {
                "URL_ENDPOINT": self.s3.url,
                "AWS_ACCESS_KEY_ID": key,
                "AWS_SECRET_ACCESS_KEY": secret,
                "AWS_REGION": "us-east-1",
                "MYSQL_URL": self.db.role_url(role),
                "OLD_BUCKET": OLD_BUCKET,
                "OLD_PREFIX": self.src(workload),
                "NEW_BUCKET": NEW_BUCKET,
                "NEW_PREFIX": self.dst(workload),
                "LOG_FORMAT": "json",
                "LOG_LEVEL": "info",
                "WORKER_THREADS": str(tool.threads),
                "COPY_ENGINE": tool.engine,
                "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
            }
        )
        env.update(dict(tool.extra_env))
        return env

    def run(
        self,
        tool: tools.Tool,
        workload: Workload,
        number: int,
        *,
        wrap: list[str] | None = None,
        endpoint: str = "",
    ) -> Result:
        """One run from an empty destination (and ledger): timed from the first process started to the
        last one finished; then the destination is checked and cleared. `endpoint` points the
        contender elsewhere than the S3 server itself (the counting proxy); checks go direct."""
        url = endpoint or self.s3.url
        self.clear_destination(workload)
        if tool.kind == "movers3":
            self.clear_ledger()
        s3_pid, db_pid = self.s3.proc.pid, self.db.proc.pid
        status0 = self.db_status()
        s3_cpu0, db_cpu0 = _cpu(s3_pid), _cpu(db_pid)
        started = time.monotonic()
        if tool.kind == "movers3":
            finished, rss = self._movers3(tool, workload, wrap or [], url)
        else:
            key, secret = self.s3.credentials(tools.NEW_BUCKET_ROLE)
            argv, env = tools.peer_command(
                tool,
                url=url,
                key=key,
                secret=secret,
                home=self.home,
                src=self.src(workload),
                dst=self.dst(workload),
                old_bucket=OLD_BUCKET,
                new_bucket=NEW_BUCKET,
            )
            finished = [
                procs.run(
                    self.registry, tool.name, [*(wrap or []), *argv], env, self.log(tool.name), RUN_TIMEOUT_SECONDS
                )
            ]
            rss = []
        seconds = time.monotonic() - started
        s3_cpu, db_cpu = _cpu(s3_pid) - s3_cpu0, _cpu(db_pid) - db_cpu0
        status1 = self.db_status()
        failed = [f for f in finished if f.code != 0]
        note = ""
        if failed:
            note = f"exit {failed[0].code}"
            print(
                f"  ! {failed[0].name} exited {failed[0].code}; log {failed[0].log}:\n{failed[0].tail(1500)}",
                file=sys.stderr,
            )
        copy_rate = float("nan")
        if tool.kind == "movers3":
            states = self.ledger_states()
            if states.get("done", 0) != workload.count:
                note = (note + " " if note else "") + f"ledger {states}"
            copy_rate = self.copy_phase_rate()
        present, kept, checked = self.check_destination(workload)
        result = Result(
            tool.name,
            workload.name,
            number,
            seconds,
            workload.count,
            workload.bytes,
            sum(f.cpu_seconds for f in finished),
            s3_cpu,
            db_cpu,
            present,
            kept,
            checked,
            rss,
            status1["Questions"] - status0["Questions"],
            note,
            copy_rate,
        )
        self.clear_destination(workload)
        return result

    def _movers3(
        self, tool: tools.Tool, workload: Workload, wrap: list[str], url: str
    ) -> tuple[list[procs.Finished], list[int]]:
        """`movers3 run`: init, N worker processes and the seed side by side, as a user runs it on one
        machine, with the migrator's roles (docs/permissions.md). Its rusage covers the
        workers it waited for; each worker's peak RSS is read from /proc while it runs."""
        env = self.movers3_env(workload, "worker", "m3_init", tool)
        env["URL_ENDPOINT"] = url
        proc = self.registry.start(
            "movers3 run", [*wrap, *MOVERS3, "run", "--workers", str(tool.workers)], env, self.log("run")
        )
        peaks: dict[int, int] = {}
        deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
        while not proc.done() and time.monotonic() < deadline:
            _sample_peaks(proc.popen.pid, peaks)
            time.sleep(0.05)
        return [proc.finish(deadline)], list(peaks.values())

    # -- the ledger's round trips ----------------------------------------------------------------

    def ledger_round_trips(self, tool: tools.Tool, workload: Workload) -> dict[str, float]:
        """One untimed movers3 run with MariaDB's general log on: every packet the workers' connections
        sent, counted by kind. An entry of the general log is one client packet, i.e. one round trip
        (movers3 sends `UPDATE ...; COMMIT` as one multi-statement packet, logged as one entry); the
        statements a trigger runs are logged too and are dropped here, they cost no round trip."""
        with self.db.admin() as conn, conn.cursor() as cur:
            cur.execute("SET GLOBAL log_output = 'TABLE'")
            cur.execute("TRUNCATE TABLE mysql.general_log")
            cur.execute("SET GLOBAL general_log = 'ON'")
        try:
            result = self.run(tool, workload, 0)
        finally:
            with self.db.admin() as conn, conn.cursor() as cur:
                cur.execute("SET GLOBAL general_log = 'OFF'")
        with self.db.admin() as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT thread_id, CAST(argument AS CHAR CHARACTER SET utf8mb4) FROM mysql.general_log "
                "WHERE command_type = 'Query' AND user_host LIKE 'm3\\_init%' ORDER BY event_time"
            )
            logged = [
                (thread, text)
                for thread, text in cur.fetchall()
                if not text.lstrip().startswith("INSERT INTO movers3_counts")
            ]  # trigger bodies
            cur.execute("TRUNCATE TABLE mysql.general_log")
        claim = "attempts = attempts + 1"  # only the claim's UPDATE says this
        workers = {thread for thread, text in logged if claim in text}
        packets = [text for thread, text in logged if thread in workers]
        (self.base / "general-log.txt").write_text("\n----\n".join(packets), encoding="utf-8")
        claims = sum(1 for s in packets if claim in s)
        counts = {
            "rows": workload.count,
            "polls": sum(1 for s in packets if "SKIP LOCKED" in s),
            "claims": claims,
            "claims_with_finish": sum(1 for s in packets if claim in s and "JSON_TABLE" in s),
            "worker_packets": len(packets),
            "finishes_alone": sum(1 for s in packets if "JSON_TABLE" in s and claim not in s),
            "commits_alone": sum(1 for s in packets if s.strip().upper() == "COMMIT"),
            "questions_all_clients": result.db_questions,
        }
        counts["other"] = (
            counts["worker_packets"]
            - counts["polls"]
            - counts["claims"]
            - counts["finishes_alone"]
            - counts["commits_alone"]
        )
        counts["per_batch"] = counts["worker_packets"] / claims if claims else float("nan")
        return counts


def audit_network(bench: Bench, contenders: list[tools.Tool], workload: Workload) -> list[str]:
    """Run each contender once under strace and list every address it connect()ed to that is not
    loopback. Returns lines to print."""
    strace = shutil.which("strace")
    if not strace:
        return [
            "network audit: strace is not installed, so connections were not traced "
            "(apt-get install strace); the peers were still given only 127.0.0.1"
        ]
    lines = []
    for tool in contenders:
        trace = bench.base / f"strace-{re.sub(r'[^a-z0-9]+', '-', tool.name.lower())}.txt"
        wrap = [strace, "-f", "-qq", "-e", "trace=connect", "-o", str(trace)]
        bench.run(tool, workload, 0, wrap=wrap)
        text = trace.read_text(errors="replace") if trace.exists() else ""
        addresses = set(re.findall(r'inet_addr\("([^"]+)"\)', text)) | set(
            re.findall(r'inet_pton\(AF_INET6, "([^"]+)"', text)
        )
        outside = sorted(a for a in addresses if not (a.startswith("127.") or a in ("::1", "::ffff:127.0.0.1")))
        verdict = "only loopback" if not outside else "OUTSIDE: " + ", ".join(outside)
        lines.append(
            f"  {tool.name}: {len(re.findall('connect', text))} connect() calls, "
            f"{verdict} ({', '.join(sorted(addresses)) or 'none over IP'})"
        )
    return lines


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = psutil.virtual_memory().total / 2**30
    kernel = os.uname().release
    load = os.getloadavg()
    versions = []
    for name, argv in (
        ("s5cmd", ["s5cmd", "version"]),
        ("rclone", ["rclone", "version"]),
        ("aws", ["aws", "--version"]),
    ):
        try:
            out = subprocess.run(
                [tools.binary(argv[0]), *argv[1:]],
                capture_output=True,
                text=True,
                timeout=30,
                env=tools.clean_env(Path(tempfile.gettempdir())),
            )
            versions.append((out.stdout or out.stderr).splitlines()[0].strip())
        except (RuntimeError, OSError, subprocess.SubprocessError, IndexError):
            versions.append(f"{name}: not found")
    weed = subprocess.run([tools.binary("weed"), "version"], capture_output=True, text=True, timeout=30)
    maria = (
        subprocess.run(["mariadbd", "--version"], capture_output=True, text=True, timeout=30)
        if shutil.which("mariadbd")
        else None
    )
    weed_version = (weed.stdout or weed.stderr).strip().splitlines()[-1] if weed.stdout or weed.stderr else "?"
    return (
        f"{os.cpu_count()} cores, {model}, {memory:.0f} GiB RAM, Linux {kernel}, "
        f"load average before the run {load[0]:.2f}/{load[1]:.2f}/{load[2]:.2f}\n"
        f"peers: {'; '.join(versions)}\n"
        f"servers: SeaweedFS {weed_version}; "
        f"{maria.stdout.strip() if maria else 'mariadbd'}"
    )
