"""`movers3 check`'s pure logic: SHOW GRANTS lines read into privileges per level, as MariaDB 10.11
prints them (the lines below were copied from its output), the exit code and the lines, and where a
side's credentials come from (no request is made)."""

import uuid

from movers3 import check
from movers3.check.sides import Side
from movers3.ledger.account import parse_grants
from movers3.settings import Endpoint
from movers3.values import Secret

WORKER = [
    "GRANT USAGE ON *.* TO `m3_worker`@`%` IDENTIFIED BY PASSWORD '*FA3F03671002ED0C39F445881561973A058FAC48'",
    "GRANT SELECT, UPDATE ON `sketch`.`movers3_schema` TO `m3_worker`@`%`",
    "GRANT SELECT, UPDATE ON `sketch`.`movers3_seeds` TO `m3_worker`@`%`",
    "GRANT SELECT, UPDATE ON `sketch`.`movers3_objects` TO `m3_worker`@`%`",
    "GRANT SELECT ON `sketch`.`movers3_counts` TO `m3_worker`@`%`",
    "GRANT SELECT ON `sketch`.`movers3_seed_parts` TO `m3_worker`@`%`",
]


def test_table_grants():
    grants = parse_grants(WORKER)
    assert grants.allows("UPDATE", "sketch", "movers3_objects")
    assert grants.allows("SELECT", "sketch", "movers3_counts")
    assert not grants.allows("UPDATE", "sketch", "movers3_counts")
    assert not grants.allows("INSERT", "sketch", "movers3_objects")
    assert not grants.allows("SELECT", "other", "movers3_objects")
    assert not grants.allows("SELECT", "sketch")  # not on the whole database
    assert grants.on_all == set()


def test_database_and_global_grants_and_all_privileges():
    grants = parse_grants(
        [
            "GRANT SELECT, INSERT, UPDATE, CREATE, INDEX, ALTER, TRIGGER ON `sketch`.* TO `m3_init`@`%`",
            "GRANT ALL PRIVILEGES ON `sk\\_t%`.* TO `odd``user`@`localhost` WITH GRANT OPTION",
        ]
    )
    assert grants.allows("TRIGGER", "sketch") and grants.allows("SELECT", "sketch", "movers3_objects")
    assert not grants.allows("DELETE", "sketch", "movers3_objects")
    assert grants.allows("DELETE", "sk_tch", "movers3_objects")  # % matches any run
    assert not grants.allows("DELETE", "skXtch", "movers3_objects")  # \_ is a literal underscore
    root = parse_grants(
        [
            "GRANT ALL PRIVILEGES ON *.* TO `root`@`localhost` IDENTIFIED VIA mysql_native_password USING 'invalid' "
            "OR unix_socket WITH GRANT OPTION",
            "GRANT PROXY ON ``@`%` TO `root`@`localhost` WITH GRANT OPTION",
        ]
    )
    assert root.allows("CREATE", "anything") and root.allows("UPDATE", "x", "y")


def test_roles_proxy_and_column_grants():
    grants = parse_grants(
        [
            "GRANT `m3r` TO `odd``user`@`localhost`",
            "GRANT SELECT (`state`, `id`), UPDATE (`state`) ON `sketch`.`movers3_objects` TO `odd``user`@`localhost`",
            "GRANT SELECT ON `sketch`.`movers3_counts` TO `m3r`",  # the enabled role's own line
            "GRANT EXECUTE ON PROCEDURE `sketch`.`p` TO `m3r`",
            "SET DEFAULT ROLE `m3r` FOR `odd``user`@`localhost`",
        ]
    )
    assert not grants.allows("SELECT", "sketch", "movers3_objects")
    assert grants.columns_only("SELECT", "sketch", "movers3_objects")
    assert grants.columns_only("UPDATE", "sketch", "movers3_objects")
    assert grants.allows("SELECT", "sketch", "movers3_counts")
    assert not grants.allows("EXECUTE", "sketch", "p")


def test_exit_code_and_lines():
    good = [check.Check("settings", check.OK, "fine"), check.Check("s3:GetObject b", check.OK, "read")]
    assert check.exit_code(good) == 0
    assert check.exit_code([*good, check.Check("x", check.UNKNOWN, "?")]) == 1
    assert check.exit_code([*good, check.Check("x", check.PROBLEM, "!")]) == 1
    assert check.render(good).splitlines() == ["ok       settings        fine", "ok       s3:GetObject b  read"]


def test_every_role_is_documented():
    text = check.__file__.rsplit("/movers3/", 1)[0] + "/docs/permissions.md"
    permissions = open(text, encoding="utf-8").read()
    for role in check.ROLES:
        assert f"| {role} |" in permissions, role
    assert check.DEFAULT_ROLE in check.ROLES


def endpoint(**fields) -> Endpoint:
    base = {"url": "http://127.0.0.1:9", "access_key": None, "secret_key": None, "region": "us-east-1"}
    return Endpoint(**{**base, **fields}, addressing_style="path")


def test_keys_from_the_settings_say_whether_a_session_token_goes_with_them():
    keys = {"access_key": "ASIATEMP", "secret_key": Secret("temp-secret")}
    key, source = Side(endpoint(**keys, session_token=Secret("the-token-0123"))).credentials()
    assert key == "ASIATEMP" and source.endswith("; with a session token)")
    assert "the-token-0123" not in source and "temp-secret" not in source
    assert Side(endpoint(**keys)).credentials()[1].endswith("; no session token)")


def test_a_profile_is_named_from_the_settings(tmp_path, monkeypatch):
    profile = f"check-{uuid.uuid4().hex[:8]}"  # a session per profile lives as long as the process
    (tmp_path / "credentials").write_text(f"[{profile}]\naws_access_key_id = PROFILEKEY\naws_secret_access_key = s\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.delenv("AWS_PROFILE", raising=False)  # AWS_PROFILE the setting, not the variable
    key, source = Side(endpoint(profile=profile)).credentials()
    assert (key, source) == (
        "PROFILEKEY",
        f"the shared credentials file, profile {profile!r} [shared-credentials-file]",
    )


def test_a_missing_profile_is_a_problem_not_a_crash(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    side = Side(endpoint(profile="no-such-profile"))
    assert side.client is None and side.ask("head_bucket", Bucket="b") is None
    expected = "AWS_PROFILE: no profile 'no-such-profile' in the shared AWS config or credentials file"
    assert side.credentials() == (None, expected)
    assert side.refused is not None and side.refused.text() == expected
