"""The named queries: every one used, every one used exists, each module of movers3.ledger runs only
its own file's queries, and the worker's files hold nothing its database role may not run."""

import ast
import re
from pathlib import Path

import sqlparse

from movers3.ledger import db, schema

LEDGER = Path(db.__file__).parent
PACKAGE = LEDGER.parent
# What README's permissions table grants the worker role (SELECT on every table, UPDATE on these).
WORKER_MAY_UPDATE = {"movers3_objects", "movers3_seeds", "movers3_schema"}
WORKER_TABLES = WORKER_MAY_UPDATE | {"movers3_seed_parts", "movers3_counts"}
# The modules a worker process runs queries through, beside schema.check (init.sql's schema_version)
# and, with METRICS_PORT, the ledger's counts for its metrics (reads.sql's counts_by_state).
WORKER_FILES = ("work", "uploads", "repoint")
WORKER_READS = ("schema_version", "counts_by_state")
QUERY_CALLS = {"execute", "executemany", "one", "row", "all", "stream", "_write"}


def used_queries(path: Path) -> set[str]:
    """Query names a module hands to a transaction: the first argument of tx.execute/one/row/all/...
    (after the row for the journal's _write), and (name, params) pairs for execute_and_commit."""
    used = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in QUERY_CALLS:
            args = node.args[1:] if node.func.attr == "_write" else node.args
            if args and isinstance(args[0], ast.Constant) and isinstance(args[0].value, str):
                used.add(args[0].value)
        if (
            isinstance(node, ast.Tuple)
            and len(node.elts) == 2
            and isinstance(node.elts[0], ast.Constant)
            and isinstance(node.elts[0].value, str)
            and re.fullmatch(r"[a-z]+_[a-z_]+", node.elts[0].value)
        ):
            used.add(node.elts[0].value)
    return used


def test_every_named_query_used_in_code_exists_and_every_query_is_used():
    used = set().union(*(used_queries(p) for p in LEDGER.glob("*.py")))
    assert used <= set(db.QUERIES), used - set(db.QUERIES)
    assert set(db.QUERIES) <= used, set(db.QUERIES) - used


def test_each_module_runs_only_the_queries_of_its_own_file():
    module_of = {name: "schema" if name == "init" else name for name in db.QUERY_FILES}
    for name, module in module_of.items():
        assert used_queries(LEDGER / f"{module}.py") == set(db.load_queries(name)), module
    for path in LEDGER.glob("*.py"):
        if path.stem not in module_of.values():
            assert not used_queries(path), path.name


def test_queries_outside_the_ledger_package_do_not_exist():
    for path in PACKAGE.rglob("*.py"):
        if path.parent != LEDGER:
            assert not used_queries(path), path


def test_the_worker_runs_only_what_its_role_may():
    statements = {name: sql for f in WORKER_FILES for name, sql in db.load_queries(f).items()}
    statements.update({name: db.QUERIES[name] for name in WORKER_READS})
    assert len(statements) > 15
    for name, sql in statements.items():
        kind = sqlparse.parse(sql)[0].get_type()
        tables = set(re.findall(r"\bmovers3_\w+", sql))
        if name.startswith("repoint_"):  # PREPARE/DEALLOCATE of the operator's own statement
            assert kind == "UNKNOWN" and tables == {"movers3_repoint"}, name  # a statement name, not a table
            continue
        assert kind in ("SELECT", "UPDATE"), (name, kind)
        assert tables and tables <= WORKER_TABLES, (name, tables)
        written = set(re.findall(r"^\s*UPDATE\s+(movers3_\w+)", sql, re.M | re.I))
        if "FOR UPDATE" in sql.upper():
            written |= set(re.findall(r"\bFROM\s+(movers3_\w+)", sql, re.I))
        assert written <= WORKER_MAY_UPDATE, (name, written)


def test_queries_have_no_comments_or_semicolons_left():
    for name, sql in db.QUERIES.items():
        assert not sql.startswith("--"), name
        assert not sql.rstrip().endswith(";"), name
        assert sql.split()[0] in {"SELECT", "UPDATE", "INSERT", "PREPARE", "DEALLOCATE", "SHOW"}, name


def test_schema_statements_are_idempotent():
    statements = schema.statements()
    assert sum(s.startswith("CREATE TABLE IF NOT EXISTS") for s in statements) == 5
    assert all(
        s.startswith(
            (
                "CREATE TABLE IF NOT EXISTS",
                "ALTER TABLE movers3_objects ADD COLUMN IF NOT EXISTS",
                "ALTER TABLE movers3_seeds ADD COLUMN IF NOT EXISTS",
                "CREATE INDEX IF NOT EXISTS",
                "CREATE UNIQUE INDEX IF NOT EXISTS",
                "DROP INDEX IF EXISTS",
                "CREATE OR REPLACE TRIGGER",
            )
        )
        for s in statements
    ), [s[:60] for s in statements]
    triggers = [s for s in statements if s.startswith("CREATE OR REPLACE TRIGGER")]
    assert len(triggers) == 3 and all("DELIMITER" not in s and not s.endswith("$$") for s in triggers)
    assert triggers[1].count("END IF") == 2 and triggers[1].count(";") == 4  # its body kept whole


def test_no_sql_strings_in_python():
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        assert not re.search(r'"\s*(SELECT|UPDATE|INSERT|DELETE)\s+\w', text), path.name
