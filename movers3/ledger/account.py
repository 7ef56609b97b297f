"""The ledger's account as the server sees it, for `movers3 check`: who the session is (the account
whose grants apply, which a wildcard host or an anonymous user can make another than the name
given), what it may do (its grants, read back from SHOW GRANTS), and whether the session is
encrypted. Reading these needs no privilege beyond a working login."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable

from movers3.ledger.db import Database, Tx

ALL = "ALL PRIVILEGES"

# A grant line's tokens: `quoted` and 'quoted' names, words, and single characters.
_TOKEN = re.compile(r"`(?:[^`]|``)*`|'(?:[^'\\]|\\.|'')*'|\w+|\S")


@dataclasses.dataclass(frozen=True)
class Session:
    account: str  # CURRENT_USER(): user@host as the server matched it
    server_version: str
    cipher: str  # '' when the session is not encrypted
    tls_version: str
    grants: Grants


def session(db: Database) -> Session:
    def work(tx: Tx) -> Session:
        account, version = tx.row("account_who")
        lines = [row[0] for row in tx.all("account_grants")]
        status = {name.lower(): value for name, value in tx.all("account_tls")}
        return Session(
            account=str(account),
            server_version=str(version),
            cipher=status.get("ssl_cipher") or "",
            tls_version=status.get("ssl_version") or "",
            grants=parse_grants(lines),
        )

    return db.transaction(work)


@dataclasses.dataclass
class Grants:
    """Privileges by level, as SHOW GRANTS states them. Database names of database-level grants are
    LIKE patterns (`%`, `_`, and `\\_` for a literal underscore), as the server matches them."""

    on_all: set[str] = dataclasses.field(default_factory=set)  # ON *.*
    on_databases: list[tuple[re.Pattern[str], set[str]]] = dataclasses.field(default_factory=list)
    on_tables: dict[tuple[str, str], set[str]] = dataclasses.field(default_factory=dict)
    # Column-level grants cover some columns only: they never make a table's privilege whole.
    on_columns: set[tuple[str, str, str]] = dataclasses.field(default_factory=set)

    def allows(self, privilege: str, database: str, table: str | None = None) -> bool:
        """Whether `privilege` holds on the whole database (table None) or on one table of it."""
        held = set(self.on_all)
        for pattern, privileges in self.on_databases:
            if pattern.fullmatch(database):
                held |= privileges
        if table is not None:
            held |= self.on_tables.get((database, table), set())
        return privilege in held or ALL in held

    def columns_only(self, privilege: str, database: str, table: str) -> bool:
        return (database, table, privilege) in self.on_columns


def parse_grants(lines: Iterable[str]) -> Grants:
    """The privileges of SHOW GRANTS lines. Role grants (`GRANT role TO ...`), PROXY and routine
    grants are left out: a role's own privileges come as lines of their own when it is enabled."""
    grants = Grants()
    for line in lines:
        tokens = _TOKEN.findall(line)
        if not tokens or tokens[0].upper() != "GRANT":
            continue
        parsed = _privileges(tokens[1:])
        if parsed is None:
            continue
        privileges, columns, rest = parsed
        if len(rest) < 3 or rest[1] != "." or rest[0].upper() in ("PROCEDURE", "FUNCTION", "PACKAGE"):
            continue
        database, table = rest[0], rest[2]
        if database == "*":
            grants.on_all |= privileges
        elif table == "*":
            grants.on_databases.append((_like(_unquote(database)), privileges))
        else:
            where = (_unquote(database), _unquote(table))
            grants.on_tables.setdefault(where, set()).update(privileges)
            grants.on_columns.update((*where, p) for p in columns)
    return grants


def _privileges(tokens: list[str]) -> tuple[set[str], set[str], list[str]] | None:
    """The privileges before ON (table-wide ones, and those with a column list), and the tokens after
    ON; None for a grant of a role or of PROXY."""
    whole: set[str] = set()
    columns: set[str] = set()
    words: list[str] = []
    depth = 0
    for i, token in enumerate(tokens):
        if depth == 0 and token.upper() in ("ON", "TO"):
            if token.upper() == "TO" or (words and words[0] == "PROXY"):
                return None
            whole.add(" ".join(words))
            return whole - {"USAGE", ""}, columns, tokens[i + 1 :]
        if token == "(":
            depth += 1
            if depth == 1 and words:
                columns.add(" ".join(words))
                words = []
        elif token == ")":
            depth -= 1
        elif depth == 0 and token == ",":
            if words:
                whole.add(" ".join(words))
            words = []
        elif depth == 0:
            if token.startswith("`"):
                return None  # a role's name: GRANT `role` TO ...
            words.append(token.upper())
    return None


def _unquote(name: str) -> str:
    return name[1:-1].replace("``", "`") if name.startswith("`") else name


def _like(pattern: str) -> re.Pattern[str]:
    """A database-level grant's name as the server matches it: `%` any run, `_` one character, a
    backslash escapes the next."""
    out, escaped = [], False
    for char in pattern:
        if escaped:
            out.append(re.escape(char))
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "%":
            out.append(".*")
        elif char == "_":
            out.append(".")
        else:
            out.append(re.escape(char))
    return re.compile("".join(out), re.DOTALL)
