"""The SQL proxy of tests/support/sqlproxy.py against the session's real MariaDB, with PyMySQL as movers3
uses it (autocommit off, multi-statements on): bytes pass through unchanged, and a dropped COMMIT is one
the server has applied although the client lost its connection, which is the case that tests of retried
ledger transactions need to be able to produce at will."""

from __future__ import annotations

import hashlib
import re
import socket
import threading
import uuid

import pymysql
import pytest
from pymysql.constants import CLIENT, CR

from tests.support.services import MariaDB
from tests.support.sqlproxy import SqlProxy, ends_with_commit

pytestmark = pytest.mark.integration

# A database and account of their own: the scratch tables stay out of movers3's schema, and the account
# has a password (root logs in by socket only, and the proxy is TCP).
SCRATCH_DB = "sqlproxy_test"
USER = "sqlproxy"
PASSWORD = "sqlproxy-pass-0123456789"


@pytest.fixture(scope="module")
def db(stack) -> MariaDB:
    with stack.db.admin() as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE IF NOT EXISTS `{SCRATCH_DB}`")
        cur.execute(f"CREATE USER IF NOT EXISTS '{USER}'@'%%' IDENTIFIED BY %s", (PASSWORD,))
        cur.execute(f"GRANT ALL ON `{SCRATCH_DB}`.* TO '{USER}'@'%'")
    return stack.db


@pytest.fixture
def table(db: MariaDB):
    name = "scratch_" + uuid.uuid4().hex[:8]
    with db.admin(SCRATCH_DB) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE TABLE {name} (id INT AUTO_INCREMENT PRIMARY KEY, tag VARCHAR(64) NOT NULL) ENGINE=InnoDB")
    yield name
    with db.admin(SCRATCH_DB) as conn, conn.cursor() as cur:
        cur.execute(f"DROP TABLE {name}")


@pytest.fixture
def proxy(db: MariaDB):
    proxy = SqlProxy("127.0.0.1", db.port).start()
    yield proxy
    proxy.stop()  # raises if a thread outlives it


@pytest.fixture
def connect():
    """Connections as movers3's ledger opens them, closed at the end unless a fault already did."""
    opened: list[pymysql.connections.Connection] = []

    def open_through(proxy: SqlProxy) -> pymysql.connections.Connection:
        conn = pymysql.connect(
            host="127.0.0.1",
            port=proxy.port,
            user=USER,
            password=PASSWORD,
            database=SCRATCH_DB,
            charset="utf8mb4",
            autocommit=False,
            client_flag=CLIENT.MULTI_STATEMENTS,
            connect_timeout=3,
            read_timeout=3,
            write_timeout=3,
        )
        opened.append(conn)
        return conn

    yield open_through
    for conn in opened:
        if conn.open:
            conn.close()


def tags(db: MariaDB, table: str) -> list[str]:
    """What the server holds, read beside the proxy."""
    with db.admin(SCRATCH_DB) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT tag FROM {table} ORDER BY id")
        return [tag for (tag,) in cur.fetchall()]


def lost(excinfo: pytest.ExceptionInfo) -> bool:
    return isinstance(excinfo.value, pymysql.err.OperationalError) and excinfo.value.args[0] == CR.CR_SERVER_LOST


def test_commit_detection():
    # What movers3 sends in one COM_QUERY, and what PyMySQL's conn.commit() sends.
    assert ends_with_commit(b"UPDATE a SET x = 1;\nUPDATE b SET y = 2;\nCOMMIT")
    assert ends_with_commit(b"COMMIT")
    assert ends_with_commit(b"  commit ;  ")
    # PyMySQL's own connection set-up, and words that only end in "commit".
    assert not ends_with_commit(b"SET AUTOCOMMIT = 0")
    assert not ends_with_commit(b"SET autocommit")
    assert not ends_with_commit(b"SELECT nocommit")
    # A tail cut out of a longer query: its start is no boundary.
    assert not ends_with_commit(b"commit", whole=False)
    assert ends_with_commit(b";COMMIT", whole=False)


def test_plain_queries_pass_through(db, table, proxy, connect):
    conn = connect(proxy)
    with conn.cursor() as cur:
        cur.execute("SELECT 1")
        assert cur.fetchone() == (1,)
        cur.execute(f"INSERT INTO {table} (tag) VALUES (%s)", ("single",))
        conn.commit()
        # Several statements in one COM_QUERY: every result comes back, in order.
        cur.execute(
            f"INSERT INTO {table} (tag) VALUES ('multi-1');\n"
            f"INSERT INTO {table} (tag) VALUES ('multi-2');\n"
            f"SELECT COUNT(*) FROM {table}"
        )
        assert cur.rowcount == 1
        assert cur.nextset() and cur.rowcount == 1
        assert cur.nextset() and cur.fetchone() == (3,)
        assert not cur.nextset()
        # movers3's shape, with no fault armed: the statements and their COMMIT in one query.
        cur.execute(f"INSERT INTO {table} (tag) VALUES ('with-commit');\nCOMMIT")
        while cur.nextset():
            pass
        # Larger than the proxy's 64 KiB reads, both ways: the packets are cut anywhere and still arrive whole.
        big = "x" * 300_000
        cur.execute("SELECT %s, MD5(%s)", (big, big))
        assert cur.fetchone() == (big, hashlib.md5(big.encode()).hexdigest())
    assert tags(db, table) == ["single", "multi-1", "multi-2", "with-commit"]
    assert proxy.connections == 1
    assert proxy.commits_dropped == 0
    assert proxy.queries >= 6  # ours, and PyMySQL's SET NAMES


def test_commit_in_a_multi_statement_query_lands_and_the_client_loses_it(db, table, proxy, connect):
    proxy.drop_after_commit()  # armed before connecting: the handshake passes untouched
    conn = connect(proxy)
    with conn.cursor() as cur:
        cur.execute(f"SELECT COUNT(*) FROM {table}")  # not a COMMIT: passes
        assert cur.fetchone() == (0,)
        with pytest.raises(pymysql.MySQLError) as excinfo:
            # A result set in the middle (column definitions, rows, EOFs) for the proxy to read through, and
            # a pause that makes the COMMIT come late: a proxy that cut the connection before the whole
            # reply had come would let the check below run before the COMMIT.
            cur.execute(
                f"INSERT INTO {table} (tag) VALUES ('landed');\nSELECT id, tag FROM {table};\nDO SLEEP(0.3);\nCOMMIT"
            )
    assert lost(excinfo), excinfo.value
    assert not conn.open
    # The client can't know, but the server committed before the connection dropped.
    assert tags(db, table) == ["landed"]
    assert proxy.commits_dropped == 1
    assert proxy.armed() == 0


def test_separate_commit_lands_and_the_client_loses_it(db, table, proxy, connect):
    proxy.drop_after_commit()
    conn = connect(proxy)
    with conn.cursor() as cur:
        cur.execute(f"INSERT INTO {table} (tag) VALUES ('landed')")
    with pytest.raises(pymysql.MySQLError) as excinfo:
        conn.commit()  # a COM_QUERY "COMMIT" of its own
    assert lost(excinfo), excinfo.value
    assert tags(db, table) == ["landed"]
    assert proxy.commits_dropped == 1


def test_the_proxy_serves_new_connections_after_a_fault(db, table, proxy, connect):
    proxy.drop_after_commit()
    with connect(proxy).cursor() as cur, pytest.raises(pymysql.MySQLError) as excinfo:
        cur.execute(f"INSERT INTO {table} (tag) VALUES ('first');\nCOMMIT")
    assert lost(excinfo)
    # The retry's connection: everything passes again, its COMMIT's answer included.
    conn = connect(proxy)
    with conn.cursor() as cur:
        cur.execute("SELECT 1")
        assert cur.fetchone() == (1,)
        cur.execute(f"INSERT INTO {table} (tag) VALUES ('second');\nCOMMIT")
        while cur.nextset():
            pass
    assert tags(db, table) == ["first", "second"]
    assert proxy.connections == 2
    assert proxy.commits_dropped == 1


def test_match_and_times_choose_the_commits_dropped(db, table, proxy, connect):
    proxy.drop_after_commit(times=2, match=re.compile(r"'drop-\d'"))
    outcomes = {}
    for tag in ("keep", "drop-1", "drop-2", "drop-3"):
        with connect(proxy).cursor() as cur:
            try:
                cur.execute(f"INSERT INTO {table} (tag) VALUES ('{tag}');\nCOMMIT")
                outcomes[tag] = "answered"
            except pymysql.MySQLError:
                outcomes[tag] = "lost"
    assert outcomes == {"keep": "answered", "drop-1": "lost", "drop-2": "lost", "drop-3": "answered"}
    assert tags(db, table) == ["keep", "drop-1", "drop-2", "drop-3"]
    assert proxy.commits_dropped == 2


def test_a_query_longer_than_the_text_kept_is_still_recognised(db, table, proxy, connect):
    # 2 MB of SQL: `match` sees the first MiB, the COMMIT test the last bytes, and the rest only passes.
    proxy.drop_after_commit(match="'long'")
    filler = "y" * 2_000_000
    with connect(proxy).cursor() as cur, pytest.raises(pymysql.MySQLError) as excinfo:
        cur.execute(f"INSERT INTO {table} (tag) VALUES ('long');\nSELECT LENGTH('{filler}');\nCOMMIT")
    assert lost(excinfo)
    assert tags(db, table) == ["long"]
    assert proxy.commits_dropped == 1


def test_faults_fire_exactly_as_often_as_armed_across_concurrent_connections(db, table, proxy, connect):
    proxy.drop_after_commit(times=2)
    conns = [connect(proxy) for _ in range(6)]
    lost_count = []
    start = threading.Barrier(len(conns))

    def commit(i: int) -> None:
        with conns[i].cursor() as cur:
            start.wait(3)
            try:
                cur.execute(f"INSERT INTO {table} (tag) VALUES ('c{i}');\nCOMMIT")
            except pymysql.MySQLError:
                lost_count.append(i)  # list.append is atomic

    workers = [threading.Thread(target=commit, args=(i,)) for i in range(len(conns))]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(5)
    assert len(lost_count) == 2
    assert proxy.commits_dropped == 2
    assert sorted(tags(db, table)) == sorted(f"c{i}" for i in range(len(conns)))


def test_drop_next_query_cuts_the_connection_without_an_answer(db, table, proxy, connect):
    proxy.drop_next_query("SLEEP")
    conn = connect(proxy)
    with conn.cursor() as cur:
        cur.execute("SELECT 1")  # doesn't match: passes
        with pytest.raises(pymysql.MySQLError) as excinfo:
            cur.execute("SELECT SLEEP(0.5)")
    assert lost(excinfo), excinfo.value
    assert proxy.queries_dropped == 1
    assert proxy.commits_dropped == 0
    with connect(proxy).cursor() as cur:
        cur.execute("SELECT 1")
        assert cur.fetchone() == (1,)


def test_the_handshake_is_not_taken_for_a_query(proxy, connect):
    # A fault that matches any query, armed before connecting: it must not fire during authentication,
    # only on the first command, PyMySQL's SET NAMES.
    proxy.drop_next_query(re.compile(""))
    with pytest.raises(pymysql.MySQLError):
        connect(proxy)
    assert proxy.queries == 1
    assert proxy.queries_dropped == 1
    proxy.disarm()
    proxy.drop_next_query("never sent")
    proxy.disarm()
    assert proxy.armed() == 0
    with connect(proxy).cursor() as cur:
        cur.execute("SELECT 1")
        assert cur.fetchone() == (1,)


def test_stop_closes_everything_and_leaves_no_thread(db, connect):
    proxy = SqlProxy("127.0.0.1", db.port).start()
    idle = connect(proxy)  # its two pumps now wait in recv
    with idle.cursor() as cur:
        cur.execute("SELECT 1")
    assert len(proxy.threads()) == 3  # the acceptor and one connection's two pumps
    proxy.stop(timeout=3)
    assert proxy.threads() == []
    assert not [t for t in threading.enumerate() if t.name.startswith(proxy.name)]
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", proxy.port), timeout=1).close()
    # The client's connection went with it.
    with pytest.raises(pymysql.MySQLError), idle.cursor() as cur:
        cur.execute("SELECT 1")
