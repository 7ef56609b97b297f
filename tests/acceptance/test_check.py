"""`movers3 check` against the real MariaDB and SeaweedFS: a good worker configuration is all ok, exit 0,
and changes nothing in either bucket or the ledger; each broken one names its problem and exits 1;
nothing it prints holds a secret.

The session's `worker` identity holds the minimal worker's rights (compose/policies/worker-minimal.json:
no tagging), which are written for COPY_TAGS=false, so these tests run with that; with COPY_TAGS=true
(the default) the tagging lines of that file are problems
(test_the_minimal_identity_lacks_the_tagging_rights_copy_tags_needs)."""

import json
import uuid

import pytest

from tests.support.credservers import clean_env, profile_env
from tests.support.helpers import admin_exec, run_cli
from tests.support.services import DATABASE, DB_ROLES, NEW_BUCKET, OLD_BUCKET, S3_IDENTITIES

pytestmark = pytest.mark.acceptance

SECRETS = [spec["secret"] for spec in S3_IDENTITIES.values()] + [password for password, _ in DB_ROLES.values()]


@pytest.fixture
def env(route) -> dict[str, str]:
    """The production worker's environment, with the settings its minimal rights are written for."""
    return route.env("worker", "m3_worker", COPY_TAGS="false")


def lines(output: str) -> dict[str, tuple[str, str]]:
    """name -> (status, detail) of each line of the text output."""
    found = {}
    for line in output.splitlines():
        status, rest = line.split(None, 1)
        name, detail = rest.split("  ", 1)
        found[name.strip()] = (status, detail.strip())
    return found


def everything(route) -> tuple:
    """Every bucket, every object of both buckets (key, ETag, size) and every ledger row."""
    admin = route.stack.s3.client()
    buckets = sorted(b["Name"] for b in admin.list_buckets()["Buckets"])
    objects = {}
    for bucket in buckets:
        pages = admin.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        objects[bucket] = sorted((o["Key"], o["ETag"], o["Size"]) for p in pages for o in p.get("Contents", []))
    ledger = tuple(
        admin_exec(route, f"SELECT * FROM {table} ORDER BY 1")
        for table in ("movers3_objects", "movers3_seeds", "movers3_seed_parts", "movers3_schema")
    )
    return buckets, objects, ledger


def assert_no_secret(result) -> None:
    for secret in SECRETS:
        assert secret not in result.stdout + result.stderr


def test_a_good_worker_configuration_is_all_ok_and_changes_nothing(route, env):
    route.put("a/first.png", b"first")
    before = everything(route)
    result = run_cli("check", env=env)
    print(result.stdout)
    found = lines(result.stdout)
    assert {status for status, _ in found.values()} == {"ok"}, result.stdout
    assert set(found) == {
        "settings",
        "ledger",
        "ledger TLS",
        "ledger schema",
        "ledger grants",
        "S3 credentials",
        "source bucket",
        "destination bucket",
        f"s3:ListBucket {OLD_BUCKET}",
        f"s3:GetObject {OLD_BUCKET}",
        f"s3:GetObjectTagging {OLD_BUCKET}",
        f"s3:PutObject {NEW_BUCKET}",
        f"s3:PutObjectTagging {NEW_BUCKET}",
        f"s3:AbortMultipartUpload {NEW_BUCKET}",
        f"s3:PutObjectAcl {NEW_BUCKET}",
    }
    assert found[f"s3:GetObjectTagging {OLD_BUCKET}"] == found[f"s3:PutObjectTagging {NEW_BUCKET}"]
    assert found[f"s3:PutObjectTagging {NEW_BUCKET}"] == ("ok", "not needed: COPY_TAGS=false")
    assert "answered NoSuchUpload" in found[f"s3:AbortMultipartUpload {NEW_BUCKET}"][1]
    assert "access key worker from movers3's settings" in found["S3 credentials"][1]
    assert "BadDigest" in found[f"s3:PutObject {NEW_BUCKET}"][1]
    assert f"read the first byte of {route.old('a/first.png')}" in found[f"s3:GetObject {OLD_BUCKET}"][1]
    assert "account m3_worker@%" in found["ledger"][1] and "not encrypted" in found["ledger TLS"][1]
    assert_no_secret(result)
    as_json = run_cli("check", "--json", env=env)
    listed = json.loads(as_json.stdout)
    assert [(c["name"], c["status"], c["detail"]) for c in listed] == [(n, s, d) for n, (s, d) in found.items()]
    # NEW_ACL is checked with a PutObjectAcl on a key that does not exist (NoSuchKey).
    with_acl = run_cli("check", env={**env, "NEW_ACL": "bucket-owner-full-control"})
    assert "answered NoSuchKey" in lines(with_acl.stdout)[f"s3:PutObjectAcl {NEW_BUCKET}"][1]
    assert everything(route) == before


def test_the_minimal_identity_lacks_the_tagging_rights_copy_tags_needs(route, env):
    """`worker-iam` holds worker-minimal.json itself (the `worker` identity's SeaweedFS `Read` action also
    allows GetObjectTagging)."""
    route.put("a/first.png", b"first")
    before = everything(route)
    key, secret = route.stack.s3.credentials("worker-iam")
    found = broken(route, env, AWS_ACCESS_KEY_ID=key, AWS_SECRET_ACCESS_KEY=secret, COPY_TAGS="true")
    assert {n: s for n, (s, _) in found.items() if s != "ok"} == {
        f"s3:GetObjectTagging {OLD_BUCKET}": "problem",
        f"s3:PutObjectTagging {NEW_BUCKET}": "problem",
    }
    for action, bucket in (("s3:GetObjectTagging", OLD_BUCKET), ("s3:PutObjectTagging", NEW_BUCKET)):
        assert found[f"{action} {bucket}"][1] == (
            f"AccessDenied: these credentials lack {action} on {bucket}: COPY_TAGS=true needs it "
            "(docs/permissions.md), or set COPY_TAGS=false"
        )
    assert everything(route) == before


def test_credentials_from_a_shared_credentials_file(route, env, tmp_path):
    key, secret = route.stack.s3.credentials("worker")
    env = {**clean_env(tmp_path, env), **profile_env(tmp_path, "migration", key, secret, "us-east-1")}
    result = run_cli("check", env=env)
    detail = lines(result.stdout)["S3 credentials"][1]
    assert "access key worker from the shared credentials file, profile 'migration' [shared-credentials-file]" in detail
    assert detail.endswith(": accepted")
    assert_no_secret(result)


def test_a_profile_the_shared_files_lack_is_a_problem_line(route, env, tmp_path):
    env = {**clean_env(tmp_path, env), "AWS_PROFILE": "no-such-profile"}
    result = run_cli("check", env=env, check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    found = lines(result.stdout)
    assert found["S3 credentials"] == (
        "problem",
        "AWS_PROFILE: no profile 'no-such-profile' in the shared AWS config or credentials file "
        f"(endpoint {route.stack.s3.url})",
    )
    assert found["ledger"][0] == "ok" and found[f"s3:PutObject {NEW_BUCKET}"][0] == "unknown"


def broken(route, env, **changes):
    result = run_cli("check", env={**env, **changes}, check=False)
    print(result.stdout)
    assert result.returncode == 1, result.stdout + result.stderr
    assert_no_secret(result)
    return lines(result.stdout)


def test_a_wrong_ledger_password(route, env):
    found = broken(route, env, MYSQL_URL=route.stack.db.url("m3_worker", "not-the-password-0123"))
    assert found["ledger"] == (
        "problem",
        f"access denied to the ledger database mysql://m3_worker@127.0.0.1:{route.stack.db.port}/{DATABASE}: "
        "wrong user or password",
    )
    assert found["ledger grants"][0] == "unknown" and found[f"s3:PutObject {NEW_BUCKET}"][0] == "ok"


def test_a_ledger_without_its_schema(route, env):
    fresh = "fresh_" + uuid.uuid4().hex[:8]
    route.stack.db.create_database(fresh)  # m3_init may use it; nobody ran `init`
    url = route.stack.db.role_url("m3_init", fresh)
    found = broken(route, env, MYSQL_URL=url)
    assert found["ledger schema"] == ("problem", f"missing in {fresh!r}: run `movers3 init` (migrator role)")
    assert found["ledger grants"][0] == "ok"  # SELECT and UPDATE on the whole database
    migrator = lines(run_cli("check", "--role", "migrator", env={**env, "MYSQL_URL": url}).stdout)
    assert migrator["ledger schema"] == ("ok", f"not created yet in {fresh!r}: `movers3 init` creates it")


def test_a_ledger_account_of_another_role(route, env):
    found = broken(route, env, MYSQL_URL=route.stack.db.role_url("m3_deleter"))
    assert found["ledger grants"] == (
        "problem",
        f"m3_deleter@% lacks SELECT, UPDATE on {DATABASE}.movers3_seeds; UPDATE on {DATABASE}.movers3_schema; "
        f"SELECT on {DATABASE}.movers3_seed_parts; SELECT on {DATABASE}.movers3_counts (docs/permissions.md)",
    )


def test_an_identity_that_may_not_write_the_destination(route, env):
    route.put("a/first.png")
    key, secret = route.stack.s3.credentials("reader")
    found = broken(route, env, AWS_ACCESS_KEY_ID=key, AWS_SECRET_ACCESS_KEY=secret)
    assert found[f"s3:PutObject {NEW_BUCKET}"] == (
        "problem",
        f"AccessDenied: these credentials lack s3:PutObject on {NEW_BUCKET}",
    )
    assert found[f"s3:ListBucket {OLD_BUCKET}"][0] == found[f"s3:GetObject {OLD_BUCKET}"][0] == "ok"


def test_a_bucket_that_does_not_exist(route, env):
    before = everything(route)
    key, secret = route.stack.s3.credentials("admin")  # may see that it is missing (the worker is only denied)
    found = broken(route, env, AWS_ACCESS_KEY_ID=key, AWS_SECRET_ACCESS_KEY=secret, NEW_BUCKET="missing-bucket-x")
    assert found["destination bucket"] == ("problem", "missing-bucket-x does not exist")
    assert found["s3:PutObject missing-bucket-x"][0] == "unknown"
    assert everything(route) == before  # no bucket made by a probe
    worker = broken(route, env, OLD_BUCKET="missing-bucket-y")
    assert worker["s3:ListBucket missing-bucket-y"] == (
        "problem",
        "AccessDenied: these credentials lack s3:ListBucket on missing-bucket-y",
    )
    assert worker["source bucket"][0] == "unknown"


def test_a_wrong_secret_key(route, env):
    found = broken(route, env, AWS_SECRET_ACCESS_KEY="wrong-secret-key-0123456789")
    status, detail = found["S3 credentials"]
    assert status == "problem" and "SignatureDoesNotMatch" in detail and detail.endswith("(wrong secret key)")
    assert found[f"s3:PutObject {NEW_BUCKET}"] == (
        "unknown",
        "not checked: the S3 credentials or endpoint failed (see the credentials line)",
    )
    assert "wrong-secret-key-0123456789" not in json.dumps(found)
    listed = json.loads(
        run_cli(
            "check", "--json", env={**env, "AWS_SECRET_ACCESS_KEY": "wrong-secret-key-0123456789"}, check=False
        ).stdout
    )
    assert {c["name"]: (c["status"], c["detail"]) for c in listed} == found


def test_a_bad_setting_is_a_problem_line_and_exit_2(route, env):
    result = run_cli("check", env={**env, "WORKER_THREADS": "0"}, check=False)
    assert result.returncode == 2 and result.stderr == ""
    assert lines(result.stdout) == {"settings": ("problem", "WORKER_THREADS: must be from 1 to 256 (got 0)")}
    listed = json.loads(run_cli("check", "--json", env={**env, "WORKER_THREADS": "0"}, check=False).stdout)
    assert listed == [
        {"name": "settings", "status": "problem", "detail": "WORKER_THREADS: must be from 1 to 256 (got 0)"}
    ]
