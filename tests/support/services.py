"""Real services on loopback for the tests, the demo and the benchmark: a private MariaDB (own datadir,
port and socket, so that tests can stop and restart it) and a SeaweedFS S3 server with per-identity
permissions. Processes are started here and stopped here, by PID; a service that can't start raises,
so a missing service is a failure, never a skip."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import quote

import boto3
import botocore.config
import botocore.exceptions
import pymysql

OLD_BUCKET = "legacy-s3"
NEW_BUCKET = "production-s3"
# Where S3 Inventory reports land; `seed --manifest s3://...` reads them (s3:GetObject).
INVENTORY_BUCKET = "inventory-s3"
DATABASE = "sketch"

# The IAM policy documents shipped for each role (docs/permissions.md), written for OLD_BUCKET and NEW_BUCKET.
POLICIES = Path(__file__).resolve().parents[2] / "compose" / "policies"


def shipped_policy(role: str) -> dict:
    """A shipped policy document, read verbatim."""
    return json.loads((POLICIES / f"{role}.json").read_text())


# The original tool's minimal worker role (compose/policies/worker-minimal.json, for COPY_TAGS=false), as a
# SeaweedFS IAM policy: no DeleteObject, no read or list of the new bucket, no tags.
WORKER_POLICY = shipped_policy("worker-minimal")
# One account for two identities below, as on AWS, where objects belong to accounts and a role writes for
# its account. SeaweedFS gives a server-side copy the owner of its source (AWS gives it the requester's
# account) and lets only that owner, or a global Admin, change the copy's ACL; an identity with no account
# of its own is its own account. Sources written by `account-writer` are therefore the worker's account's
# own, and `account-worker`, the worker policy and nothing more, may apply NEW_ACL to its
# server-side copies of them (tests/acceptance/test_least_privilege.py).
SHARED_ACCOUNT = {"id": "movers3-account", "displayName": "movers3 account"}

# The roles of docs/permissions.md, as the tests and the demo create them.
S3_IDENTITIES = {
    "admin": {
        "secret": "admin-secret-0123456789",
        "actions": ["Admin", "Read", "List", "Write", "Tagging", "ReadAcp", "WriteAcp"],
    },
    # The production worker: ListBucket + GetObject on the old bucket, PutObject (+ACL) on the new one.
    "worker": {
        "secret": "worker-secret-0123456789",
        "actions": [f"List:{OLD_BUCKET}", f"Read:{OLD_BUCKET}", f"Write:{NEW_BUCKET}", f"WriteAcp:{NEW_BUCKET}/*"],
    },
    # The seeder only lists the source.
    "seeder": {"secret": "seeder-secret-0123456789", "actions": [f"List:{OLD_BUCKET}", f"Read:{INVENTORY_BUCKET}"]},
    # The worker's IAM policy exactly as docs/permissions.md states it: no DeleteObject, no read or list of the new
    # bucket. SeaweedFS grants PutObjectAcl only through the WriteAcp action, not through a policy.
    "worker-iam": {
        "secret": "worker-iam-secret-0123456789",
        "actions": [f"WriteAcp:{NEW_BUCKET}/*"],
        "policy": WORKER_POLICY,
    },
    # The same worker rights in the account of the source objects' writer (SHARED_ACCOUNT).
    "account-worker": {
        "secret": "account-worker-secret-0123456789",
        "actions": [f"WriteAcp:{NEW_BUCKET}/*"],
        "policy": WORKER_POLICY,
        "account": SHARED_ACCOUNT,
    },
    # Writes the source objects of the least-privilege tests, for SHARED_ACCOUNT.
    "account-writer": {
        "secret": "account-writer-secret-0123456789",
        "actions": [f"Write:{OLD_BUCKET}"],
        "account": SHARED_ACCOUNT,
    },
    # Two identities with the worker's rights whose keys a credential server hands out in turn while
    # SeaweedFS removes the old ones (tests/acceptance/test_credentials.py).
    "rotation-a": {
        "secret": "rotation-a-secret-0123456789",
        "actions": [f"List:{OLD_BUCKET}", f"Read:{OLD_BUCKET}", f"Write:{NEW_BUCKET}", f"WriteAcp:{NEW_BUCKET}/*"],
    },
    "rotation-b": {
        "secret": "rotation-b-secret-0123456789",
        "actions": [f"List:{OLD_BUCKET}", f"Read:{OLD_BUCKET}", f"Write:{NEW_BUCKET}", f"WriteAcp:{NEW_BUCKET}/*"],
    },
    # May read the source but not write the destination: a worker misconfigured this way must stop.
    "reader": {"secret": "reader-secret-0123456789", "actions": [f"List:{OLD_BUCKET}", f"Read:{OLD_BUCKET}"]},
    # delete-source: HEAD both sides, delete on the old bucket (SeaweedFS's Write also allows PutObject;
    # on AWS the role is s3:GetObject on both buckets and s3:DeleteObject(+Version) on the old one).
    "deleter": {
        "secret": "deleter-secret-0123456789",
        "actions": [f"Read:{OLD_BUCKET}", f"Write:{OLD_BUCKET}", f"Read:{NEW_BUCKET}"],
    },
}

DB_ROLES = {
    # name: (password, [grant statements with {db}])
    # init also creates the counting triggers (TRIGGER), which then run with its rights.
    "m3_init": (
        "init-pass-0123456789",
        ["GRANT CREATE, ALTER, INDEX, SELECT, INSERT, UPDATE, TRIGGER ON `{db}`.* TO {user}"],
    ),
    "m3_seeder": (
        "seeder-pass-0123456789",
        [
            "GRANT SELECT, INSERT, UPDATE ON `{db}`.`movers3_objects` TO {user}",
            "GRANT SELECT, INSERT, UPDATE ON `{db}`.`movers3_seeds` TO {user}",
            "GRANT SELECT, INSERT, UPDATE ON `{db}`.`movers3_seed_parts` TO {user}",
            "GRANT SELECT ON `{db}`.`movers3_counts` TO {user}",
            "GRANT SELECT ON `{db}`.`movers3_schema` TO {user}",
        ],
    ),
    "m3_worker": (
        "worker-pass-0123456789",
        [
            "GRANT SELECT, UPDATE ON `{db}`.`movers3_objects` TO {user}",
            "GRANT SELECT, UPDATE ON `{db}`.`movers3_seeds` TO {user}",
            "GRANT SELECT ON `{db}`.`movers3_seed_parts` TO {user}",
            "GRANT SELECT ON `{db}`.`movers3_counts` TO {user}",
            "GRANT SELECT, UPDATE ON `{db}`.`movers3_schema` TO {user}",
        ],
    ),
    # delete-source: reads verified rows and records each deletion on its row.
    "m3_deleter": (
        "deleter-pass-0123456789",
        [
            "GRANT SELECT, UPDATE ON `{db}`.`movers3_objects` TO {user}",
            "GRANT SELECT ON `{db}`.`movers3_schema` TO {user}",
        ],
    ),
}


def s3_client(url: str, key: str, secret: str, **config):
    """A boto3 client of a test server, path-style, as one identity."""
    return boto3.client(
        "s3",
        endpoint_url=url,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        region_name="us-east-1",
        config=botocore.config.Config(s3={"addressing_style": "path"}, **config),
    )


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def port_free(port: int) -> bool:
    return _port_free(port)


def free_port(*, with_grpc: bool = False, avoid: set[int] | None = None) -> int:
    """A free loopback port in 20000-29999 (and its +10000 gRPC twin when asked)."""
    avoid = avoid or set()
    for _ in range(500):
        port = random.randint(20000, 29999)
        if port in avoid or (port + 10000) in avoid:
            continue
        if _port_free(port) and (not with_grpc or _port_free(port + 10000)):
            avoid.update({port, port + 10000})
            return port
    raise RuntimeError("no free loopback port found")


def _wait(what: str, ready, seconds: float, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"{what} exited with {proc.returncode} while starting; log {log}:\n"
                + log.read_text(errors="replace")[-3000:]
            )
        if ready():
            return
        time.sleep(0.2)
    raise RuntimeError(
        f"{what} did not become ready in {seconds}s; log {log}:\n" + log.read_text(errors="replace")[-3000:]
    )


def _stop(proc: subprocess.Popen | None, seconds: float = 20) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def _binary(name: str, *candidates: str) -> str:
    for path in (shutil.which(name), *candidates):
        if path and os.access(path, os.X_OK):
            return path
    raise RuntimeError(f"{name} not found: install mariadb-server (`make system-deps`) and the test extras")


class MariaDB:
    """A private mariadbd under `base`, on its own port and socket."""

    def __init__(self, base: Path, port: int | None = None, options: list[str] | None = None) -> None:
        self.base = Path(base)
        self.options = list(options or [])  # later ones win: the benchmark's bigger buffer pool
        self.datadir = self.base / "data"
        self.socket = self.base / "mysqld.sock"
        self.log = self.base / "mariadbd.log"
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None

    def start(self) -> MariaDB:
        self.base.mkdir(parents=True, exist_ok=True)
        as_root = os.geteuid() == 0
        user = ["--user=mysql"] if as_root else []
        if not (self.datadir / "mysql").exists():
            self.datadir.mkdir(parents=True, exist_ok=True)
            if as_root:
                shutil.chown(self.base, "mysql", "mysql")
                shutil.chown(self.datadir, "mysql", "mysql")
            install = _binary("mariadb-install-db", "/usr/bin/mariadb-install-db", "/usr/bin/mysql_install_db")
            done = subprocess.run(
                [
                    install,
                    "--no-defaults",
                    *user,
                    f"--datadir={self.datadir}",
                    "--skip-test-db",
                    "--auth-root-authentication-method=socket",
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            if done.returncode != 0:
                raise RuntimeError(f"mariadb-install-db failed ({done.returncode}):\n{done.stdout[-3000:]}")
        # Its own temp folder: the finish's multi-table UPDATE writes temp tables there, and a shared
        # /tmp may be swept by other processes while a statement still needs them.
        tmp = self.base / "tmp"
        tmp.mkdir(exist_ok=True)
        if as_root:
            shutil.chown(tmp, "mysql", "mysql")
        server = _binary("mariadbd", "/usr/sbin/mariadbd", "/usr/sbin/mysqld")
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [
                    server,
                    "--no-defaults",
                    *user,
                    f"--datadir={self.datadir}",
                    f"--socket={self.socket}",
                    f"--port={self.port}",
                    "--bind-address=127.0.0.1",
                    "--skip-log-bin",
                    "--skip-name-resolve",
                    "--innodb-buffer-pool-size=256M",
                    "--max-connections=500",
                    f"--pid-file={self.base}/mysqld.pid",
                    f"--tmpdir={tmp}",
                    *self.options,
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _wait("mariadbd", self._ping, 60, self.proc, self.log)
        return self

    def _ping(self) -> bool:
        try:
            self.admin().close()
            return True
        except pymysql.MySQLError:
            return False

    def stop(self) -> None:
        _stop(self.proc, 60)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def admin(self, database: str | None = None) -> pymysql.connections.Connection:
        return pymysql.connect(
            unix_socket=str(self.socket), user="root", database=database, autocommit=True, connect_timeout=5
        )

    def load_time_zones(self) -> None:
        """The server's time zone tables, from the system's zoneinfo, as Debian's package would load them."""
        zones = subprocess.run(
            [
                _binary("mariadb-tzinfo-to-sql", "/usr/bin/mariadb-tzinfo-to-sql", "/usr/bin/mysql_tzinfo_to_sql"),
                "/usr/share/zoneinfo",
            ],
            capture_output=True,
            check=True,
            timeout=120,
        ).stdout
        client = _binary("mariadb", "/usr/bin/mariadb", "/usr/bin/mysql")
        subprocess.run(
            [client, "--no-defaults", f"--socket={self.socket}", "-uroot", "mysql"],
            input=zones,
            capture_output=True,
            check=True,
            timeout=300,
        )

    def url(self, user: str, password: str, database: str = DATABASE) -> str:
        return f"mysql+pymysql://{quote(user, safe='')}:{quote(password, safe='')}@127.0.0.1:{self.port}/{database}"

    def create_database(self, database: str = DATABASE) -> None:
        with self.admin() as conn, conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE IF NOT EXISTS `{database}`")
            cur.execute("CREATE USER IF NOT EXISTS 'm3_init'@'%%' IDENTIFIED BY %s", (DB_ROLES["m3_init"][0],))
            cur.execute(DB_ROLES["m3_init"][1][0].format(db=database, user="'m3_init'@'%'"))

    def grant_roles(self, database: str = DATABASE) -> None:
        """The seeder and worker accounts; table grants need the tables, so call after `init`."""
        with self.admin() as conn, conn.cursor() as cur:
            for name, (password, grants) in DB_ROLES.items():
                cur.execute(f"CREATE USER IF NOT EXISTS '{name}'@'%%' IDENTIFIED BY %s", (password,))
                for grant in grants:
                    cur.execute(grant.format(db=database, user=f"'{name}'@'%'"))

    def role_url(self, role: str, database: str = DATABASE) -> str:
        return self.url(role, DB_ROLES[role][0], database)


class Moto:
    """moto's S3 server on loopback: slow and permissive, but it keeps every key and attribute exactly
    (website redirects, folder markers, backslashes), so it is the second endpoint of the tests."""

    def __init__(self, base: Path) -> None:
        self.base = Path(base)
        self.log = self.base / "moto.log"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> Moto:
        self.base.mkdir(parents=True, exist_ok=True)
        server = _binary("moto_server", str(Path(sys.executable).parent / "moto_server"))
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [server, "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _wait("moto_server", self._ready, 60, self.proc, self.log)
        for bucket in (OLD_BUCKET, NEW_BUCKET):
            self.client().create_bucket(Bucket=bucket)
        return self

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/moto-api/", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def stop(self) -> None:
        _stop(self.proc, 20)
        self.proc = None

    def credentials(self, identity: str) -> tuple[str, str]:
        return f"moto-{identity}", f"moto-secret-{identity}-0123456789"

    def client(self, identity: str = "admin"):
        return s3_client(self.url, *self.credentials(identity))


class SeaweedFS:
    """`weed mini` on loopback only, telemetry off, with the identities of S3_IDENTITIES (or those given)."""

    def __init__(self, base: Path, s3_port: int | None = None, identities: dict | None = None) -> None:
        self.base = Path(base)
        self.identities = S3_IDENTITIES if identities is None else identities
        self.log = self.base / "weed.log"
        self.proc: subprocess.Popen | None = None
        taken: set[int] = {s3_port, s3_port + 10000} if s3_port else set()
        self.ports = {
            name: free_port(with_grpc=True, avoid=taken) for name in ("s3", "master", "volume", "filer", "admin")
        }
        if s3_port:
            self.ports["s3"] = s3_port
        self.url = f"http://127.0.0.1:{self.ports['s3']}"
        # Identities whose keys were changed while running (`set_keys`): name -> [(access, secret)].
        self.keys: dict[str, list[tuple[str, str]]] = {}

    def _config(self) -> dict:
        return {
            "identities": [
                {
                    "name": name,
                    "credentials": [
                        {"accessKey": key, "secretKey": secret}
                        for key, secret in self.keys.get(name, [(name, spec["secret"])])
                    ],
                    "actions": spec["actions"],
                    **({"policyNames": [f"{name}-policy"]} if "policy" in spec else {}),
                    **({"account": spec["account"]} if "account" in spec else {}),
                }
                for name, spec in self.identities.items()
            ],
            "policies": [
                {"name": f"{name}-policy", "content": json.dumps(spec["policy"])}
                for name, spec in self.identities.items()
                if "policy" in spec
            ],
        }

    def start(self) -> SeaweedFS:
        self.base.mkdir(parents=True, exist_ok=True)
        (self.base / "data").mkdir(exist_ok=True)
        (self.base / "s3.json").write_text(json.dumps(self._config()))
        weed = _binary("weed", str(Path(sys.executable).parent / "weed"))
        p = self.ports
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [
                    weed,
                    "mini",
                    f"-dir={self.base / 'data'}",
                    "-ip=127.0.0.1",
                    "-ip.bind=127.0.0.1",
                    "-master.telemetry=false",
                    "-admin.ui=false",
                    "-webdav=false",
                    "-s3.port.iceberg=0",
                    "-s3.port.lance=0",
                    f"-s3.port={p['s3']}",
                    f"-master.port={p['master']}",
                    f"-volume.port={p['volume']}",
                    f"-filer.port={p['filer']}",
                    f"-admin.port={p['admin']}",
                    f"-s3.config={self.base / 's3.json'}",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _wait("SeaweedFS", self._healthy, 90, self.proc, self.log)
        admin = self.client("admin")
        for bucket in (OLD_BUCKET, NEW_BUCKET, INVENTORY_BUCKET):
            self._create_bucket(admin, bucket)
        return self

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    @staticmethod
    def _create_bucket(client, bucket: str) -> None:
        deadline = time.monotonic() + 30
        while True:
            try:
                client.create_bucket(Bucket=bucket)
                break
            except client.exceptions.BucketAlreadyOwnedByYou:
                break
            except Exception:
                # The filer may still be joining the master for a moment after /healthz.
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        # NEW_ACL needs ACLs enabled on the bucket (AWS's default since 2023 is BucketOwnerEnforced).
        client.put_bucket_ownership_controls(
            Bucket=bucket, OwnershipControls={"Rules": [{"ObjectOwnership": "ObjectWriter"}]}
        )

    def stop(self) -> None:
        _stop(self.proc, 30)
        self.proc = None

    def set_keys(self, identity: str, keys: list[tuple[str, str]]) -> None:
        """Give `identity` these keys (none: it can sign nothing) while the server runs, as a key
        rotation does: the config file is rewritten and SeaweedFS reloads it on SIGHUP. Returns once
        every key removed is refused and every key given is accepted."""
        removed = [k for k in self.keys.get(identity, [self.credentials(identity)]) if k not in keys]
        self.keys[identity] = list(keys)
        (self.base / "s3.json").write_text(json.dumps(self._config()))
        assert self.proc is not None
        self.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while not (all(not self.key_known(k) for k in removed) and all(self.key_known(k) for k in keys)):
            if time.monotonic() > deadline:
                raise RuntimeError(f"SeaweedFS did not reload the keys of {identity!r} in 30s")
            time.sleep(0.05)

    def key_known(self, key: tuple[str, str]) -> bool:
        """Whether SeaweedFS knows this key (it answers InvalidAccessKeyId if not), whatever its rights."""
        try:
            s3_client(self.url, *key).list_buckets()
        except botocore.exceptions.ClientError as exc:
            return exc.response["Error"]["Code"] != "InvalidAccessKeyId"
        return True

    def credentials(self, identity: str) -> tuple[str, str]:
        return identity, self.identities[identity]["secret"]

    def client(self, identity: str = "admin"):
        return s3_client(self.url, *self.credentials(identity), retries={"mode": "standard", "max_attempts": 5})
