import re
from pathlib import Path

from movers3 import db

PACKAGE = Path(db.__file__).parent


def test_every_named_query_used_in_code_exists_and_every_query_is_used():
    used = set()
    for path in PACKAGE.glob("*.py"):
        text = path.read_text()
        used |= set(re.findall(r'(?:execute|executemany|one|all|stream|_write)\((?:row, )?"(\w+)"', text))
        # (name, params) pairs handed to execute_and_commit
        used |= set(re.findall(r'(?<![\w.])\("([a-z]+_[a-z_]+)", [\w{]', text))
    assert used <= set(db.QUERIES), used - set(db.QUERIES)
    assert set(db.QUERIES) <= used, set(db.QUERIES) - used


def test_queries_have_no_comments_or_semicolons_left():
    for name, sql in db.QUERIES.items():
        assert not sql.startswith("--"), name
        assert not sql.rstrip().endswith(";"), name
        assert sql.split()[0] in {"SELECT", "UPDATE", "INSERT", "PREPARE", "DEALLOCATE"}, name


def test_schema_statements_are_idempotent():
    statements = db.schema_statements()
    assert sum(s.startswith("CREATE TABLE IF NOT EXISTS") for s in statements) == 5
    assert all(s.startswith(("CREATE TABLE IF NOT EXISTS", "ALTER TABLE movers3_objects ADD COLUMN IF NOT EXISTS",
                             "ALTER TABLE movers3_seeds ADD COLUMN IF NOT EXISTS", "CREATE INDEX IF NOT EXISTS",
                             "CREATE OR REPLACE TRIGGER"))
               for s in statements), [s[:60] for s in statements]
    triggers = [s for s in statements if s.startswith("CREATE OR REPLACE TRIGGER")]
    assert len(triggers) == 3 and all("DELIMITER" not in s and not s.endswith("$$") for s in triggers)
    assert "END IF" in triggers[1] and triggers[1].count(";") == 1  # its body kept whole


def test_no_sql_strings_in_python():
    for path in PACKAGE.glob("*.py"):
        text = path.read_text()
        assert not re.search(r'"\s*(SELECT|UPDATE|INSERT|DELETE)\s+\w', text), path.name
