"""The ledger's schema: created or upgraded in place by `movers3 init` (sql/schema.sql, idempotent),
and checked by every other command before it touches a row."""

from __future__ import annotations

from typing import TYPE_CHECKING

from movers3.exceptions import DuplicateKey, SchemaError

if TYPE_CHECKING:  # STATES is read by the CLI's parser, which must not load the database driver
    from movers3.ledger.db import Database, Tx

SCHEMA_VERSION = 5
STATES = ("pending", "in_progress", "done", "failed")
# Counted beside the states: done rows whose source `delete-source` removed.
SOURCE_DELETED = "source_deleted"
COUNTER_SLOTS = 16  # movers3_counts rows per state; the triggers use CONNECTION_ID() % 16


def statements() -> list[str]:
    """Statements of schema.sql. A statement ends with the delimiter at the end of a line; as in the
    mysql client, `DELIMITER $$` switches it, so that trigger bodies may hold `;`."""
    from movers3.ledger.db import read_sql

    found, current, delimiter = [], [], ";"
    for line in read_sql("schema.sql").splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("--"):
            continue
        if stripped.upper().startswith("DELIMITER "):
            delimiter = stripped.split(None, 1)[1]
            continue
        if stripped.endswith(delimiter):
            current.append(line.rstrip()[: -len(delimiter)])
            found.append("\n".join(current).strip())
            current = []
        else:
            current.append(line)
    if "\n".join(current).strip():
        found.append("\n".join(current).strip())
    return [s for s in found if s]


def create(db: Database) -> int:
    """Create or upgrade the schema; returns its version."""

    def work(tx: Tx) -> int:
        for statement in statements():
            tx.raw(statement)
        tx.execute("schema_version_set", {"version": SCHEMA_VERSION})
        return SCHEMA_VERSION

    try:
        version = db.transaction(work)
    except DuplicateKey:
        shared = db.transaction(lambda tx: tx.row("routes_shared"))[0]
        raise SchemaError(
            f"cannot upgrade the ledger: {shared} destination keys belong to more than one row (two sources "
            "mapped onto one new key); `movers3 report` shows them: delete or re-route the extra rows, then "
            "run `movers3 init` again"
        ) from None
    recount(db)
    return version


def recount(db: Database) -> None:
    """Set the trigger-kept counters from the rows themselves: the upgrade from a version without
    them, and the repair after rows were changed with the triggers absent (e.g. TRUNCATE)."""

    def work(tx: Tx) -> None:
        counted = (*STATES, SOURCE_DELETED)
        tx.executemany("counts_slot_create", [(state, slot) for state in counted for slot in range(COUNTER_SLOTS)])
        tx.execute("counts_zero")
        tx.execute("counts_recount")

    db.transaction(work)


def current_version(db: Database) -> int:
    """The ledger's schema version; 0 when `init` never finished. Raises SchemaError when the schema
    is missing altogether."""
    row = db.transaction(lambda tx: tx.one("schema_version"))
    return int(row[0]) if row else 0


def check(db: Database) -> None:
    version = current_version(db)
    if version < SCHEMA_VERSION:
        raise SchemaError(
            f"the ledger schema is version {version}, this movers3 needs {SCHEMA_VERSION}: "
            "run `movers3 init` to upgrade it"
        )
    if version > SCHEMA_VERSION:
        raise SchemaError(
            f"the ledger schema is version {version}, newer than this movers3 knows ({SCHEMA_VERSION}): upgrade movers3"
        )
