"""Bad input gets a clear answer: one line naming the problem, a documented exit code (README, "Exit
codes"), no traceback unless --debug, and no secret anywhere in the output. Extends the cases of
test_failures.py (wrong DB password, unknown database, unreachable MariaDB and S3, wrong secret key,
missing source bucket, a source bucket the role may not list) to the rest of the issue's list, and to
the other commands."""

from __future__ import annotations

import os
import uuid

import pytest

from movers3.ledger import schema
from tests.support.helpers import run_cli
from tests.support.services import DB_ROLES, S3_IDENTITIES

pytestmark = pytest.mark.acceptance

SECRETS = [spec["secret"] for spec in S3_IDENTITIES.values()] + [password for password, _ in DB_ROLES.values()]


def clear_answer(result, code: int, *needles: str, extra_secrets=()) -> str:
    """The one `movers3: ...` line of a failed command, after checking everything else about it."""
    output = result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("movers3: ")]
    assert result.returncode == code, (result.returncode, result.stderr[-3000:])
    assert len(lines) == 1, result.stderr[-3000:]
    assert all(needle in lines[0] for needle in needles), lines[0]
    assert "Traceback" not in output
    for secret in [*SECRETS, *extra_secrets]:
        assert secret not in output, secret
    return lines[0]


# -- settings: refused before anything is touched ---------------------------------------------------

PASSWORD_IN_URL = "pw-Sup3rSecret-in-url"
# A password that breaks the URL's parsing when not percent-encoded: still never echoed.
RAW_PASSWORD = "pw-Sup3r#Secret/@x"

CONFIG_CASES = [
    ({"MYSQL_URL": "garbage"}, "MYSQL_URL"),
    ({"MYSQL_URL": ""}, "MYSQL_URL"),
    ({"MYSQL_URL": "postgres://u:{pw}@127.0.0.1/sketch"}, "MYSQL_URL: scheme"),
    ({"MYSQL_URL": "mysql+pymysql://127.0.0.1/sketch"}, "MYSQL_URL: has no user name"),
    ({"MYSQL_URL": "mysql+pymysql://u:{pw}@127.0.0.1"}, "MYSQL_URL: must name one database"),
    ({"MYSQL_URL": "mysql+pymysql://u:{pw}@127.0.0.1:99999/sketch"}, "MYSQL_URL: is not a URL"),
    ({"MYSQL_URL": "mysql+pymysql://u:{pw}@127.0.0.1/sketch?sslmode=on"}, "MYSQL_URL: unsupported query"),
    ({"MYSQL_URL": "mysql+pymysql://u:{raw}@127.0.0.1/sketch"}, "MYSQL_URL: "),
    ({"OLD_PREFIX": ""}, "OLD_PREFIX: must name a folder"),
    ({"OLD_PREFIX": "   "}, "OLD_PREFIX: must name a folder"),
    ({"NEW_PREFIX": ""}, "NEW_PREFIX: must name a folder"),
    ({"NEW_PREFIX": "/avatar"}, "NEW_PREFIX: must not start with '/'"),
    ({"NEW_PREFIX": "a//b"}, "NEW_PREFIX: must not contain empty"),
    ({"NEW_PREFIX": "../avatar"}, "NEW_PREFIX: must not contain empty, '.' or '..'"),
    ({"OLD_PREFIX": "images/\n"}, "OLD_PREFIX: must not contain control characters"),
    ({"NEW_PREFIX": "é" * 300}, "NEW_PREFIX: must be at most 512 bytes"),
    ({"NEW_BUCKET": "{old_bucket}", "NEW_PREFIX": "{old_prefix}"}, "NEW_BUCKET/NEW_PREFIX: must not be equal to"),
    ({"NEW_BUCKET": "{old_bucket}", "NEW_PREFIX": "{old_prefix}/copies"}, "NEW_BUCKET/NEW_PREFIX"),
    # a bucket's root is around every folder of that bucket
    ({"NEW_BUCKET": "{old_bucket}", "OLD_PREFIX": "/"}, "NEW_BUCKET/NEW_PREFIX: must not be equal to"),
    ({"NEW_BUCKET": "{old_bucket}", "NEW_PREFIX": "/"}, "NEW_BUCKET/NEW_PREFIX: must not be equal to"),
    (
        {"NEW_BUCKET": "{old_bucket}", "OLD_PREFIX": "{old_prefix}/deeper", "NEW_PREFIX": "{old_prefix}"},
        "NEW_BUCKET/NEW_PREFIX",
    ),
    (  # one service written two ways: refused before any request, so AWS need not be reachable
        {
            "OLD_URL_ENDPOINT": "https://s3.amazonaws.com",
            "NEW_URL_ENDPOINT": "https://S3.US-EAST-1.AMAZONAWS.COM:443/",
            "NEW_BUCKET": "{old_bucket}",
            "NEW_PREFIX": "{old_prefix}",
        },
        "NEW_BUCKET/NEW_PREFIX: must not be equal to",
    ),
    (
        {"OLD_URL_ENDPOINT": "https://{old_bucket}.s3.eu-west-1.amazonaws.com"},
        "OLD_URL_ENDPOINT: names the bucket",
    ),
    ({"WORKER_THREADS": "0"}, "WORKER_THREADS: must be from 1 to 256 (got 0)"),
    ({"WORKER_THREADS": "1000000"}, "WORKER_THREADS: must be from 1 to 256"),
    ({"WORKER_THREADS": "1e3"}, "WORKER_THREADS: must be a whole number"),
    ({"LEASE_SECONDS": "-30"}, "LEASE_SECONDS: must be from 5 to 86400 (got -30)"),
    ({"LEASE_SECONDS": "0"}, "LEASE_SECONDS"),
    ({"LEASE_SECONDS": "99999999999999999999999"}, "LEASE_SECONDS"),
    ({"MAX_ATTEMPTS": "0"}, "MAX_ATTEMPTS: must be from 1 to 100 (got 0)"),
    ({"MAX_ATTEMPTS": "-3"}, "MAX_ATTEMPTS"),
    ({"URL_ENDPOINT": "ftp://user:{pw}@127.0.0.1"}, "URL_ENDPOINT: must not carry credentials"),
    ({"URL_ENDPOINT": "http://user:{pw}@127.0.0.1:99999"}, "URL_ENDPOINT: must not carry credentials"),
    ({"URL_ENDPOINT": "ftp://127.0.0.1"}, "URL_ENDPOINT: must be an http:// or https:// URL"),
    ({"URL_ENDPOINT": "http://127.0.0.1:99999"}, "URL_ENDPOINT: has an invalid port"),
    ({"NEW_URL_ENDPOINT": "http://user:{pw}@127.0.0.1:9000"}, "NEW_URL_ENDPOINT: must not carry credentials"),
    ({"URL_ENDPOINT": "http://[::1"}, "URL_ENDPOINT: is not a valid URL"),
    ({"AWS_REGION": "us east 1"}, "AWS_REGION: 'us east 1' is not a valid region name"),
    ({"NEW_REGION": "eu/west"}, "NEW_REGION"),
    ({"OLD_URL_ENDPOINT": "http://user:{raw}@127.0.0.1:9000"}, "OLD_URL_ENDPOINT: must not carry credentials"),
]


@pytest.mark.parametrize(
    "change,needle", CONFIG_CASES, ids=[f"{list(c)[0]}-{i}" for i, (c, _) in enumerate(CONFIG_CASES)]
)
def test_bad_settings_are_refused_with_one_line_and_code_2(route, env, change, needle):
    bad = dict(env)
    for key, value in change.items():
        bad[key] = value.format(
            pw=PASSWORD_IN_URL, raw=RAW_PASSWORD, old_bucket=route.old_bucket, old_prefix=route.old_prefix
        )
    result = run_cli("worker", env=bad, check=False, timeout=60)
    clear_answer(result, 2, needle, extra_secrets=[PASSWORD_IN_URL, RAW_PASSWORD, "Sup3r"])


@pytest.mark.parametrize("command", ["init", "seed", "status", "report", "retry", "verify", "run", "load-samples"])
def test_every_command_refuses_bad_settings_the_same_way(env, command):
    bad = {**env, "LEASE_SECONDS": "-1", "MYSQL_URL": f"mysql+pymysql://u:{RAW_PASSWORD}@127.0.0.1/sketch"}
    clear_answer(run_cli(command, env=bad, check=False, timeout=60), 2, "MYSQL_URL", extra_secrets=[RAW_PASSWORD])


# -- the ledger ------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["init", "seed", "worker", "status", "report", "retry", "verify", "run"])
def test_every_command_answers_an_unreachable_ledger_with_code_3(env, command):
    bad = {**env, "MYSQL_URL": env["MYSQL_URL"].replace(env["MYSQL_URL"].split("@")[1].split("/")[0], "127.0.0.1:1")}
    clear_answer(
        run_cli(command, env=bad, check=False, timeout=120), 3, "cannot reach the ledger database", "127.0.0.1:1"
    )


@pytest.mark.parametrize("command", ["seed", "worker", "report"])
def test_a_wrong_password_is_code_3_and_never_echoed(env, command):
    wrong = "Wr0ng-but-secret-pass-42"
    bad = {**env, "MYSQL_URL": env["MYSQL_URL"].replace(DB_ROLES["m3_worker"][0], wrong)}
    clear_answer(run_cli(command, env=bad, check=False, timeout=60), 3, "wrong user or password", extra_secrets=[wrong])


def fresh_database(route, grants: dict[str, str]) -> str:
    name = "m3_" + uuid.uuid4().hex[:10]
    route.stack.db.create_database(name)
    with route.stack.db.admin() as conn, conn.cursor() as cur:
        for role, privileges in grants.items():
            cur.execute(f"GRANT {privileges} ON `{name}`.* TO '{role}'@'%'")
    return name


def on_database(env: dict[str, str], name: str) -> dict[str, str]:
    return {**env, "MYSQL_URL": env["MYSQL_URL"].rsplit("/", 1)[0] + "/" + name}


@pytest.mark.parametrize("command", ["seed", "worker", "status", "report", "retry"])
def test_a_missing_schema_says_run_init_with_code_4(route, env, command):
    name = fresh_database(route, {"m3_worker": "SELECT, UPDATE", "m3_seeder": "SELECT, INSERT, UPDATE"})
    line = clear_answer(run_cli(command, env=on_database(env, name), check=False), 4, "movers3 init")
    assert name in line


def test_a_ledger_from_an_older_version_says_run_init_and_init_upgrades_it_in_place(route, env):
    """A real version-1 ledger (the three tables as version 1 created them, one row seeded by it): the
    worker refuses it with code 4, `init` upgrades it keeping the row, and the worker then copies it."""
    name = fresh_database(
        route, {"m3_worker": "SELECT, UPDATE", "m3_init": "CREATE, ALTER, INDEX, SELECT, INSERT, UPDATE"}
    )
    body = os.urandom(1234)
    key = route.put("from-v1.bin", body)
    etag = route.stack.s3.client().head_object(Bucket=route.old_bucket, Key=key)["ETag"].strip('"')
    with route.stack.db.admin(name) as conn, conn.cursor() as cur:
        for statement in schema.statements():
            if statement.startswith("CREATE TABLE"):
                cur.execute(statement)
        cur.execute("INSERT INTO movers3_schema (singleton, version) VALUES (1, 1)")
        cur.execute(
            "INSERT INTO movers3_objects (old_bucket, old_key, new_bucket, new_key, size, source_etag) "
            "VALUES (%s, %s, %s, %s, %s, %s)",
            (route.old_bucket, key.encode(), route.new_bucket, route.new("from-v1.bin").encode(), len(body), etag),
        )
        cur.execute(
            "INSERT INTO movers3_seeds (old_bucket, old_prefix, new_bucket, new_prefix, state) "
            "VALUES (%s, %s, %s, %s, 'finished')",
            (route.old_bucket, route.old_prefix.encode(), route.new_bucket, route.new_prefix.encode()),
        )
    worker_env = on_database(env, name)
    for command in ("worker", "status"):
        line = clear_answer(run_cli(command, env=worker_env, check=False), 4, "version 1", "movers3 init")
        assert "this movers3 needs" in line
    upgraded = run_cli("init", env=on_database(route.env("admin", "m3_init"), name))
    assert "ledger schema is at version" in upgraded.stdout
    run_cli("worker", "--exit-when-done", env=worker_env)
    assert route.read_new("from-v1.bin")["Body"].read() == body
    with route.stack.db.admin(name) as conn, conn.cursor() as cur:
        cur.execute("SELECT state, verified_by FROM movers3_objects")
        assert cur.fetchall() == (("done", "etag"),)


def test_a_ledger_from_a_newer_version_says_upgrade_movers3(route, env):
    name = fresh_database(
        route, {"m3_init": "CREATE, ALTER, INDEX, SELECT, INSERT, UPDATE", "m3_worker": "SELECT, UPDATE"}
    )
    run_cli("init", env=on_database(route.env("admin", "m3_init"), name))
    with route.stack.db.admin(name) as conn, conn.cursor() as cur:
        cur.execute("UPDATE movers3_schema SET version = 99")
    clear_answer(run_cli("worker", env=on_database(env, name), check=False), 4, "version 99", "upgrade movers3")


def test_an_account_without_update_rights_is_code_3_naming_the_privilege(route, env):
    name = fresh_database(route, {"m3_init": "CREATE, ALTER, INDEX, SELECT, INSERT, UPDATE"})
    run_cli("init", env=on_database(route.env("admin", "m3_init"), name))
    with route.stack.db.admin() as conn, conn.cursor() as cur:
        cur.execute("CREATE USER IF NOT EXISTS 'm3_readonly'@'%%' IDENTIFIED BY %s", ("readonly-pass-0123456789",))
        cur.execute(f"GRANT SELECT ON `{name}`.* TO 'm3_readonly'@'%'")
    url = route.stack.db.url("m3_readonly", "readonly-pass-0123456789", name)
    clear_answer(
        run_cli("retry", env={**env, "MYSQL_URL": url}, check=False),
        3,
        "lacks a privilege",
        "UPDATE",
        extra_secrets=["readonly-pass-0123456789"],
    )


# -- S3 --------------------------------------------------------------------------------------------


def seeded(route, count: int, **extra) -> None:
    route.put_many((f"{i}.bin", os.urandom(64)) for i in range(count))
    run_cli("seed", env=route.env("seeder", "m3_seeder", **extra))


@pytest.mark.parametrize("command,identity,role", [("worker", "worker", "m3_worker"), ("seed", "seeder", "m3_seeder")])
def test_a_wrong_access_key_is_code_5(route, command, identity, role):
    bad = route.env(identity, role, AWS_ACCESS_KEY_ID="nobody-at-all")
    clear_answer(
        run_cli(command, env=bad, check=False, timeout=120), 5, "InvalidAccessKeyId", "wrong AWS_ACCESS_KEY_ID"
    )


def test_an_unreachable_endpoint_stops_seed_and_load_samples_with_code_5(route):
    bad = route.env("seeder", "m3_seeder", URL_ENDPOINT="http://127.0.0.1:1", MAX_ATTEMPTS="2")
    clear_answer(run_cli("seed", env=bad, check=False, timeout=120), 5, "ListObjectsV2", "EndpointConnectionError")
    clear_answer(run_cli("load-samples", "--count", "1", env=bad, check=False, timeout=120), 5)


def test_a_missing_destination_bucket_stops_the_worker_and_releases_its_rows(route, moto):
    """On moto: SeaweedFS answers a copy into a missing bucket with a 500 (and creates a bucket on PutObject)."""
    key, secret = moto.credentials("worker")
    on_moto = {
        "URL_ENDPOINT": moto.url,
        "AWS_ACCESS_KEY_ID": key,
        "AWS_SECRET_ACCESS_KEY": secret,
        "NEW_BUCKET": "no-such-destination",
    }
    client = moto.client()
    for i in range(5):
        client.put_object(Bucket=route.old_bucket, Key=route.old(f"{i}.bin"), Body=b"x" * i)
    run_cli("seed", env=route.env("seeder", "m3_seeder", **on_moto))
    admin = route.env("admin", "m3_worker", **on_moto)
    line = clear_answer(
        run_cli("worker", "--exit-when-done", env=admin, check=False, timeout=120),
        5,
        "NoSuchBucket",
        "rows released",
        extra_secrets=[secret],
    )
    assert line.startswith("movers3: error: worker stopped")
    assert {(r["state"], r["attempts"]) for r in route.rows()} == {("pending", 0)}


@pytest.mark.parametrize("identity,side", [("reader", "destination"), ("seeder", "source")])
def test_access_denied_on_every_copy_stops_the_worker_with_one_line(route, identity, side):
    """An identity that may list the source but not read it (`seeder`), or read it but not write the
    destination (`reader`): the worker trips its AccessDenied breaker, releases its rows and says so."""
    seeded(route, 12)
    denied = route.env(identity, "m3_worker", WORKER_THREADS="2")
    line = clear_answer(
        run_cli("worker", "--exit-when-done", env=denied, check=False, timeout=120),
        5,
        "AccessDenied",
        "GetObject on OLD_BUCKET and PutObject on NEW_BUCKET",
        "rows released",
    )
    assert line.startswith("movers3: error: worker stopped")
    assert {r["state"] for r in route.rows()} == {"pending"} and {r["attempts"] for r in route.rows()} == {0}


# -- --debug ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change,code",
    [
        ({"MYSQL_URL": "mysql+pymysql://m3_worker:{pw}@127.0.0.1:1/sketch"}, 3),
        ({"AWS_SECRET_ACCESS_KEY": "{pw}"}, 5),
        ({"MYSQL_URL": "mysql+pymysql://m3_worker:{pw}@127.0.0.1:notaport/sketch"}, 2),
    ],
)
def test_debug_adds_the_traceback_and_still_no_secret(env, change, code):
    password = "pw-Sup3rSecret-x"
    bad = {**env, **{k: v.format(pw=password) for k, v in change.items()}}
    result = run_cli("worker", "--debug", env=bad, check=False, timeout=120)
    assert result.returncode == code and "Traceback" in result.stderr
    assert [line for line in result.stderr.splitlines() if line.startswith("movers3: error: ")]
    for secret in [*SECRETS, password]:
        assert secret not in result.stdout + result.stderr
