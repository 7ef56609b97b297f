"""Fixtures shared by the three layers. The real services start once per session, only when a test
asks for them (unit tests never do); each test gets its own source and destination folders and an
empty ledger."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from pathlib import Path

import pytest

from movers3.ledger import schema
from movers3.ledger.db import Database
from movers3.ledger.seeds import Seeds
from movers3.ledger.work import WorkQueue
from movers3.settings import load, parse_mysql_url
from tests.support.helpers import Route, Stack
from tests.support.services import DATABASE, MariaDB, Moto, SeaweedFS


@pytest.fixture(scope="session")
def stack():
    # Short path: the MariaDB socket path must stay under 108 bytes.
    base = Path(tempfile.mkdtemp(prefix="m3t-", dir="/tmp"))
    base.chmod(0o755)  # mariadbd runs as the mysql user and must reach its datadir
    db = MariaDB(base / "db")
    s3 = SeaweedFS(base / "s3")
    try:
        db.start()
        s3.start()
        db.create_database()
        schema.create(Database(parse_mysql_url(db.role_url("m3_init"))))
        db.grant_roles()
        yield Stack(db, s3)
    finally:
        s3.stop()
        db.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def moto():
    """A second S3 endpoint, started only for the tests that need two."""
    base = Path(tempfile.mkdtemp(prefix="m3m-", dir="/tmp"))
    server = Moto(base)
    try:
        yield server.start()
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def route(stack: Stack) -> Route:
    with stack.db.admin(DATABASE) as conn, conn.cursor() as cur:
        cur.execute("DELETE FROM movers3_objects")
        cur.execute("DELETE FROM movers3_seeds")
        # Parts outlive their seed row (no foreign key): a test counting parts must see only its own.
        cur.execute("DELETE FROM movers3_seed_parts")
    tag = "t" + uuid.uuid4().hex[:10]
    return Route(stack, old_prefix=f"{tag}/images", new_prefix=f"{tag}/avatar")


@pytest.fixture
def env(route: Route) -> dict[str, str]:
    """The environment of a production worker: least-privilege S3 identity and DB account."""
    return route.env("worker", "m3_worker")


@pytest.fixture
def ledger(route: Route) -> WorkQueue:
    return WorkQueue(Database(load(route.env("worker", "m3_worker")).mysql))


@pytest.fixture
def seeder_ledger(route: Route) -> Seeds:
    return Seeds(Database(load(route.env("seeder", "m3_seeder")).mysql))
