"""The re-pointing statement's validation (pure: the server-side PREPARE is tested in integration)."""

import pytest

from movers3.exceptions import ConfigError
from movers3.ledger import repoint

GOOD = "UPDATE users SET avatar = %(new_key)s WHERE avatar = %(old_key)s"


def test_one_update_with_named_parameters_is_accepted():
    r = repoint.parse(GOOD + ";\n")
    assert r.statement == GOOD and r.names == ("new_key", "old_key")
    assert r.server_form() == "UPDATE users SET avatar = ? WHERE avatar = ?"
    assert r.params("b1", "k1", "b2", "k2") == {"new_key": "k2", "old_key": "k1"}


def test_comments_and_literal_percent_are_fine():
    text = (
        "-- re-point avatars\nUPDATE users /* exact */ SET avatar = CONCAT(%(new_bucket)s, '/', %(new_key)s), "
        "note = 'moved 100%%' WHERE avatar = %(old_key)s"
    )
    r = repoint.parse(text)
    assert "100%'" in r.server_form() and r.server_form().count("?") == 3


@pytest.mark.parametrize(
    "text, needle",
    [
        ("", "exactly one statement"),
        (GOOD + "; " + GOOD, "exactly one statement"),
        (GOOD + "; DROP TABLE users", "exactly one statement"),
        ("DELETE FROM users WHERE avatar = %(old_key)s", "must be an UPDATE"),
        ("SELECT %(old_key)s, %(new_key)s", "must be an UPDATE"),
        ("UPDATE users SET avatar = %(new_key)s", "WHERE clause"),
        ("UPDATE users SET avatar = %(new_key)s WHERE id = %(user_id)s", "unknown parameter"),
        ("UPDATE users SET avatar = %s WHERE avatar = %(old_key)s AND x = %(new_key)s", "'%'"),
        ("UPDATE users SET avatar = 'x' WHERE avatar LIKE 'a%' AND a = %(old_key)s AND b = %(new_key)s", "'%'"),
        ("UPDATE users SET avatar = %(old_key)s WHERE avatar = %(old_key)s", "new_*"),
        ("UPDATE users SET avatar = ? WHERE avatar = %(old_key)s AND b = %(new_key)s", "named parameters"),
    ],
)
def test_anything_else_is_refused_with_one_line(text, needle):
    with pytest.raises(ConfigError) as err:
        repoint.parse(text)
    assert needle in str(err.value) and "\n" not in str(err.value)
