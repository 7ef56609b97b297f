"""Re-pointing: the application's own records follow each object in the transaction that marks its
ledger row done.

REPOINT_SQL_FILE names a file holding exactly one UPDATE statement that uses only the named
parameters %(old_bucket)s, %(old_key)s, %(new_bucket)s and %(new_key)s, e.g.

    UPDATE users SET avatar = %(new_key)s WHERE avatar = %(old_key)s

At start-up the statement is parsed (sqlparse) and refused unless it is one UPDATE with a WHERE
clause, uses at least one old_* and one new_* parameter, names no other parameter, and holds no stray
'%' (write '%%' for a literal one); then the server prepares it (PREPARE checks its syntax, tables,
columns and the worker's privileges) without running it. A worker then runs it, with the row's
values bound as parameters (PyMySQL escapes each one as a string literal; nothing from a key is ever
spliced into the SQL text), once for each row it finishes as done, in the same transaction as the
ledger's finish and only for rows it still owns: the ledger and the application never disagree.

Keys are exact UTF-8 byte strings in the ledger (VARBINARY); they are bound as text, decoded from
UTF-8, so that a utf8mb4 column receives exactly those characters (a binary column receives the same
bytes). Beware of the application column's collation: with a case-insensitive or PAD SPACE one,
`avatar = %(old_key)s` also matches 'Case.png' for 'case.png' or 'a ' for 'a'. docs/operations.md shows an exact
comparison that still uses the column's index.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from movers3.exceptions import ConfigError, LedgerError
from movers3.ledger.db import Database

NAMES = ("old_bucket", "old_key", "new_bucket", "new_key")
MAX_FILE_BYTES = 64 * 1024
_PLACEHOLDER = re.compile(r"%\((\w+)\)s")
SETTING = "REPOINT_SQL_FILE"


@dataclasses.dataclass(frozen=True)
class Repoint:
    statement: str  # PyMySQL form: %(name)s placeholders, %% for a literal %
    names: tuple[str, ...]

    def params(self, old_bucket: str, old_key: str, new_bucket: str, new_key: str) -> dict[str, str]:
        values = {"old_bucket": old_bucket, "old_key": old_key, "new_bucket": new_bucket, "new_key": new_key}
        return {name: values[name] for name in self.names}

    def server_form(self) -> str:
        """The statement as PREPARE takes it: ? for each parameter, % for %%."""
        return _PLACEHOLDER.sub("?", self.statement).replace("%%", "%")


def load(path: str) -> Repoint:
    file = Path(path)
    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{SETTING}: cannot read {path}: {exc.strerror}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigError(f"{SETTING}: {path} is over {MAX_FILE_BYTES // 1024} KiB; it must hold one UPDATE")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{SETTING}: {path} is not UTF-8 text") from None
    return parse(text)


def parse(text: str) -> Repoint:
    import sqlparse  # a tenth of a second, paid only by workers that re-point
    import sqlparse.sql
    import sqlparse.tokens

    statements = [s for s in sqlparse.split(text) if sqlparse.format(s, strip_comments=True).strip()]
    if len(statements) != 1:
        raise ConfigError(f"{SETTING}: must hold exactly one statement (found {len(statements)})")
    statement = sqlparse.format(statements[0], strip_comments=True).strip().rstrip(";").strip()
    parsed = sqlparse.parse(statement)[0]
    if parsed.get_type() != "UPDATE":
        raise ConfigError(f"{SETTING}: must be an UPDATE statement (found {parsed.get_type() or 'unknown'})")
    if not any(isinstance(token, sqlparse.sql.Where) for token in parsed.tokens):
        raise ConfigError(f"{SETTING}: the UPDATE must have a WHERE clause (it runs once per object)")
    names = _PLACEHOLDER.findall(statement)
    unknown = sorted(set(names) - set(NAMES))
    if unknown:
        raise ConfigError(
            f"{SETTING}: unknown parameter(s) {', '.join(unknown)}; "
            f"allowed: {', '.join('%(' + n + ')s' for n in NAMES)}"
        )
    stray = _PLACEHOLDER.sub("", statement).replace("%%", "")
    if "%" in stray:
        raise ConfigError(f"{SETTING}: a '%' that is not a parameter; write '%%' for a literal '%'")
    if not any(n.startswith("old_") for n in names) or not any(n.startswith("new_") for n in names):
        raise ConfigError(f"{SETTING}: must use an old_* parameter (which record) and a new_* one (its new value)")
    if any(t.ttype is sqlparse.tokens.Name.Placeholder and not t.value.startswith("%(") for t in parsed.flatten()):
        raise ConfigError(f"{SETTING}: only named parameters such as %(new_key)s may be used")
    return Repoint(statement, tuple(dict.fromkeys(names)))


def check(db: Database, repoint: Repoint) -> None:
    """The server prepares the statement (nothing runs): unknown table or column, bad syntax or a
    missing UPDATE privilege stop the worker before it claims anything."""

    def work(tx) -> None:
        tx.execute("repoint_prepare", {"statement": repoint.server_form()})
        tx.execute("repoint_deallocate")

    try:
        db.transaction(work)
    except LedgerError as exc:
        raise ConfigError(f"{SETTING}: the ledger database refuses the statement: {exc}") from None
