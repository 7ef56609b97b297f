"""The MariaDB connection: named queries from sql/*.sql, transactions, and translation of driver
errors into our own types.

One `Database` is one connection and is used by one thread only. A transaction that fails because
the connection dropped, or because InnoDB chose it as a deadlock victim, is run again from the start
with bounded backoff; every transaction movers3 runs is safe to repeat (claims re-select, finishes are
guarded by owner and state, seeds insert-if-new).
"""

from __future__ import annotations

import importlib.resources
import re
import ssl
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

import pymysql
import pymysql.constants.CLIENT
import pymysql.cursors
import structlog
import tenacity

from movers3.exceptions import DuplicateKey, LedgerConflict, LedgerError, LedgerUnavailable, SchemaError
from movers3.values import MysqlUrl

log = structlog.get_logger(__name__)

T = TypeVar("T")

CONNECT_TIMEOUT_SECONDS = 10
# A dead server must not hang a worker forever; the longest statement we run is a page insert.
READ_TIMEOUT_SECONDS = 60
# After a session once worked, how long to keep reconnecting through an outage (failover, restart).
RECONNECT_SECONDS = 120

# MariaDB / client error codes
_ACCESS_DENIED = 1045
_DB_ACCESS_DENIED = 1044
_UNKNOWN_DB = 1049
_NO_SUCH_TABLE = 1146
_DUPLICATE_KEY = (1062, 1586)
_TLS_UNSUPPORTED = 2026  # CR_SSL_CONNECTION_ERROR: TLS asked for, the server has none
_COMMAND_DENIED = (1142, 1143)
_DEADLOCK, _LOCK_WAIT = 1213, 1205
_CANT_CONNECT = (2002, 2003, 2005)
_LOST = (2006, 2013, 2014, 2055, 1053, 1927, 4031)

_BLOCK = re.compile(r"^-- (\w+) --\n(?:--[^\n]*\n)*(.*?)(?=^-- \w+ --\n|\Z)", re.MULTILINE | re.DOTALL)


# One file per module of this package that runs queries (work.sql for work.py, ...): a test checks
# that each module runs only its own file's queries, and what the worker's files may do.
QUERY_FILES = ("init", "work", "uploads", "seeds", "reads", "repoint", "account")


def utc_text(moment: datetime | None) -> str | None:
    """A moment as the ledger's DATETIME text, in UTC (every session runs with time_zone '+00:00'; a
    naive moment is taken as UTC already): for a statement's parameters and the JSON some take."""
    if moment is None:
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")


def utc_moment(value: datetime | None) -> datetime | None:
    """A DATETIME read from the ledger (naive, in UTC) as an aware moment."""
    return value.replace(tzinfo=UTC) if value is not None else None


def read_sql(name: str) -> str:
    return importlib.resources.files("movers3.ledger").joinpath("sql", name).read_text("utf-8")


def load_queries(name: str) -> dict[str, str]:
    """Named blocks of sql/NAME.sql, each without its comments and trailing semicolon."""
    return {m.group(1): m.group(2).strip().rstrip(";") for m in _BLOCK.finditer(read_sql(f"{name}.sql"))}


def _all_queries() -> dict[str, str]:
    queries: dict[str, str] = {}
    for name in QUERY_FILES:
        for query, text in load_queries(name).items():
            if query in queries:
                raise RuntimeError(f"query {query!r} is named twice in sql/")
            queries[query] = text
    return queries


QUERIES = _all_queries()


class Tx:
    """The cursor of one transaction, speaking in query names."""

    def __init__(self, cursor: pymysql.cursors.Cursor) -> None:
        self._cursor = cursor
        self.committed = False

    def execute_and_commit(self, *statements: tuple[str, Any]) -> list[int]:
        """Named statements and the COMMIT in one round trip; their affected-row counts.

        A worker's write path is one SELECT ... SKIP LOCKED and then this: the previous batch's
        outcomes, the new batch's claim and the commit travel together, so a claimed batch costs two
        round trips, not five. Each statement is rendered with its parameters escaped by the driver,
        exactly as `execute` does; if one fails, the rest (and the COMMIT) do not run and the
        transaction is rolled back."""
        rendered = [self._cursor.mogrify(QUERIES[name], params) for name, params in statements]
        counts = [self._cursor.execute(";\n".join([*rendered, "COMMIT"]))]
        while self._cursor.nextset():
            counts.append(self._cursor.rowcount)
        self.committed = True
        return counts[: len(statements)]

    def execute(self, name: str, params: Any = None) -> int:
        return self._cursor.execute(QUERIES[name], params)

    def executemany(self, name: str, rows: Sequence[Sequence[Any]]) -> int:
        return self._cursor.executemany(QUERIES[name], rows) or 0

    def one(self, name: str, params: Any = None) -> tuple | None:
        self._cursor.execute(QUERIES[name], params)
        return self._cursor.fetchone()

    def row(self, name: str, params: Any = None) -> tuple:
        """The one row of a query that always returns one (an aggregate, or a row locked just before)."""
        found = self.one(name, params)
        if found is None:
            raise LedgerError(f"ledger query {name} returned no row")
        return found

    def all(self, name: str, params: Any = None) -> list[tuple]:
        self._cursor.execute(QUERIES[name], params)
        return list(self._cursor.fetchall())

    def raw(self, sql: str) -> None:
        """For schema.sql statements only: they take no parameters."""
        self._cursor.execute(sql)

    def operator(self, sql: str, params: dict) -> int:
        """The operator's own validated statement (REPOINT_SQL_FILE), its parameters bound."""
        return self._cursor.execute(sql, params)


class Database:
    def __init__(
        self, url: MysqlUrl, *, reconnect_seconds: float = RECONNECT_SECONDS, reached: threading.Event | None = None
    ) -> None:
        self.url = url
        self.reconnect_seconds = reconnect_seconds
        self._conn: pymysql.connections.Connection | None = None
        self._ever_connected = False  # this connection: a later connect is a reconnect
        # Set once this connection or a sibling of it (`another`) reached the ledger: from then on an
        # outage is waited out, by a sibling that first connects during it too (a worker's upload
        # journal, whose first write may come in the middle of a MariaDB restart). Before that, a
        # ledger that can't be reached is a configuration error, told at once.
        self._reached = reached or threading.Event()

    def another(self) -> Database:
        """A connection of its own to the same ledger, for another thread."""
        return Database(self.url, reconnect_seconds=self.reconnect_seconds, reached=self._reached)

    # -- connection ------------------------------------------------------------------------

    def _connect(self) -> pymysql.connections.Connection:
        if self._conn is not None and self._conn.open:
            return self._conn
        url = self.url
        try:
            self._conn = pymysql.connect(
                host=url.host,
                port=url.port,
                unix_socket=url.unix_socket,
                user=url.user,
                password=url.password.reveal(),
                database=url.database,
                charset="utf8mb4",
                autocommit=False,
                connect_timeout=CONNECT_TIMEOUT_SECONDS,
                read_timeout=READ_TIMEOUT_SECONDS,
                write_timeout=READ_TIMEOUT_SECONDS,
                # ssl_ca, ssl_cert, ssl_key, ssl_verify_cert, ssl_verify_identity, as MYSQL_URL gave them:
                # with a CA, the server's certificate and host name are checked unless it says otherwise.
                **dict(url.tls or ()),
                # READ COMMITTED: SKIP LOCKED claims take no gap locks, so claimers never wait on each other.
                # UTC: leases are NOW(6) + seconds, compared with NOW(6) by other sessions; in the
                # server's own zone a daylight-saving change would expire every lease at once in spring
                # and stretch them by an hour in autumn. Every time the ledger writes is UTC.
                init_command="SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED; SET time_zone = '+00:00'",
                # MULTI_STATEMENTS for Tx.execute_and_commit (every statement is a named query with escaped
                # parameters). FOUND_ROWS: a guarded write counts the rows its guard matched, not only
                # those it changed, so that one run again after a dropped COMMIT (its values already
                # there) counts as written, not as a lease lost.
                client_flag=pymysql.constants.CLIENT.MULTI_STATEMENTS | pymysql.constants.CLIENT.FOUND_ROWS,
            )
        except pymysql.MySQLError as exc:
            raise self._translate(exc) from exc
        if self._ever_connected:
            log.info("ledger_reconnected", database=url.safe())
        self._ever_connected = True
        self._reached.set()
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except pymysql.MySQLError:
                pass
            self._conn = None

    # -- transactions ----------------------------------------------------------------------

    def transaction(self, work: Callable[[Tx], T]) -> T:
        """Run `work` in one transaction and commit. Repeated from the start on a dropped connection
        (once the ledger has been reached at all) or a deadlock, with bounded backoff."""
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(self._worth_repeating),
            stop=tenacity.stop_after_delay(self.reconnect_seconds),
            wait=tenacity.wait_random_exponential(multiplier=0.2, max=5.0),
            before_sleep=self._log_repeat,
            reraise=True,
        )
        return retrying(self._run_once, work)

    def _run_once(self, work: Callable[[Tx], T]) -> T:
        conn = self._connect()
        try:
            with conn.cursor() as cursor:
                tx = Tx(cursor)
                result = work(tx)
            if not tx.committed:
                conn.commit()
            return result
        except pymysql.MySQLError as exc:
            self._discard_after(exc)
            raise self._translate(exc) from exc
        except BaseException:
            self._rollback_quietly()
            raise

    @contextmanager
    def stream(self, name: str, params: Any = None) -> Iterator[Iterator[tuple]]:
        """Rows of a query fetched as they come (an unbuffered cursor), for reports of any size."""
        conn = self._connect()
        cursor = conn.cursor(pymysql.cursors.SSCursor)
        try:
            cursor.execute(QUERIES[name], params)
            yield iter(cursor.fetchone, None)
        except pymysql.MySQLError as exc:
            self._discard_after(exc)
            raise self._translate(exc) from exc
        finally:
            try:
                cursor.close()
                conn.rollback()
            except pymysql.MySQLError:
                self.close()

    def _worth_repeating(self, exc: BaseException) -> bool:
        if isinstance(exc, LedgerConflict):
            return True
        return isinstance(exc, LedgerUnavailable) and self._reached.is_set()

    def _log_repeat(self, state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.warning("ledger_retrying", attempt=state.attempt_number, error=str(exc))

    def _discard_after(self, exc: pymysql.MySQLError) -> None:
        code = _code(exc)
        if code in _LOST or code in _CANT_CONNECT or isinstance(exc, pymysql.err.InterfaceError):
            self.close()
        else:
            self._rollback_quietly()

    def _rollback_quietly(self) -> None:
        try:
            if self._conn is not None:
                self._conn.rollback()
        except pymysql.MySQLError:
            self.close()

    def _translate(self, exc: pymysql.MySQLError) -> LedgerError:
        code = _code(exc)
        where = self.url.safe()
        tls = _tls_failure(exc)
        if tls:
            # Configuration, not an outage: said at once, never waited out as a restart would be.
            return LedgerError(f"TLS with the ledger database at {where} failed: {tls}")
        if code in _CANT_CONNECT or code in _LOST or isinstance(exc, pymysql.err.InterfaceError):
            return LedgerUnavailable(f"cannot reach the ledger database at {where} (error {code})")
        if code == _ACCESS_DENIED:
            return LedgerError(f"access denied to the ledger database {where}: wrong user or password")
        if code == _DB_ACCESS_DENIED:
            return LedgerError(f"user {self.url.user!r} may not use database {self.url.database!r}")
        if code == _UNKNOWN_DB:
            return LedgerError(f"unknown database {self.url.database!r} at {where}")
        if code == _NO_SUCH_TABLE:
            return SchemaError(f"the ledger schema is missing in {self.url.database!r}: run `movers3 init`")
        if code in (_DEADLOCK, _LOCK_WAIT):
            return LedgerConflict(f"ledger transaction rolled back (error {code}), repeating it")
        if code in _DUPLICATE_KEY:
            return DuplicateKey(f"ledger database error {code}: a unique key would have two rows")
        if code in _COMMAND_DENIED:
            return LedgerError(f"the ledger account lacks a privilege: {_message(exc)}")
        return LedgerError(f"ledger database error {code}: {_message(exc)}")


def _code(exc: pymysql.MySQLError) -> int:
    return exc.args[0] if exc.args and isinstance(exc.args[0], int) else 0


def _tls_failure(exc: pymysql.MySQLError) -> str | None:
    """Why TLS failed (a certificate not trusted, a name that doesn't match, a server without TLS), or
    None for any other failure. PyMySQL keeps the socket's own error as `original_exception`."""
    if _code(exc) == _TLS_UNSUPPORTED:
        return _message(exc)
    original = getattr(exc, "original_exception", None)
    if isinstance(original, ssl.SSLError):
        return re.sub(r"\s*\(_ssl\.c:\d+\)$", "", str(original))
    return None


def _message(exc: pymysql.MySQLError) -> str:
    return str(exc.args[1]) if len(exc.args) > 1 else type(exc).__name__
