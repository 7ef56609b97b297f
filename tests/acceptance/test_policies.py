"""The IAM policies shipped in compose/policies/ (docs/permissions.md), each read verbatim from its file
and given to SeaweedFS as one identity's policy, run a whole migration: `seed` as the seeder, `worker` as
the worker (both engines, server-side and streamed, small and multipart, tagged), `verify` as the
verifier and `delete-source` as the deleter, each under its own policy and nothing else.

Every request goes through a recording proxy (tests/support/faultproxy.py, no faults), so that the crt
engine's CopyObject is seen too. Each request is named as an S3 operation and mapped to the IAM actions
AWS documents for it (ACTIONS below); every action a role's commands call must be granted by its file,
and every grant of a file must be called by some path of its role. One action taken out of a file makes
its command fail, or leaves the attribute it carries visibly missing.

These tests run on a SeaweedFS of their own (the session's identities are left alone), whose buckets
have the names the files are written for. SeaweedFS enforces less than AWS; what it does not enforce of
these files is pinned in `test_what_seaweedfs_does_not_enforce`, so that the day it does, the test says so.
"""

from __future__ import annotations

import contextlib
import copy
import fnmatch
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from movers3.values import MIB
from tests.support.faultproxy import FaultProxy
from tests.support.helpers import Route, Stack, json_events, run_cli, wait_for
from tests.support.services import (
    DATABASE,
    NEW_BUCKET,
    OLD_BUCKET,
    S3_IDENTITIES,
    SHARED_ACCOUNT,
    SeaweedFS,
    shipped_policy,
)

pytestmark = pytest.mark.acceptance

ROLES = ("seeder", "worker", "verifier", "deleter")
TAGS = [("kind", "avatar"), ("team", "web")]
SIZES = {"small.webp": 300_000, "large.webp": 11 * MIB + 123}  # one CopyObject; three parts of 5 MiB
PARTS = {"MULTIPART_THRESHOLD": "8MiB", "MULTIPART_CHUNKSIZE": "5MiB"}


def without(policy: dict, action: str) -> dict:
    """The policy with one action taken out of every statement (a statement left empty goes; a policy left
    empty grants a list of another bucket instead: SeaweedFS refuses a policy without statements, and
    then applies none of its -s3.config's policies)."""
    policy = copy.deepcopy(policy)
    for statement in policy["Statement"]:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        statement["Action"] = [a for a in actions if a != action]
    policy["Statement"] = [s for s in policy["Statement"] if s["Action"]] or [
        {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::another-bucket"}
    ]
    return policy


# (file, action taken out): the identity `no-<file>-<action>` holds the file without that action.
REMOVED = [
    ("seeder", "s3:ListBucket"),
    ("worker", "s3:ListBucket"),
    ("worker", "s3:GetObject"),
    ("worker", "s3:GetObjectTagging"),
    ("verifier", "s3:GetObject"),
    ("deleter", "s3:DeleteObject"),
    ("deleter", "s3:DeleteObjectVersion"),  # on a versioned source: test_every_grant_...
]


def _identity(name: str, policy: dict, **extra) -> tuple[str, dict]:
    return name, {"secret": f"{name}-secret-0123456789", "actions": [], "policy": policy, **extra}


IDENTITIES = dict(
    [
        ("admin", S3_IDENTITIES["admin"]),
        *(_identity(f"policy-{role}", shipped_policy(role)) for role in ROLES),
        *(_identity(f"no-{role}-{action[3:]}", without(shipped_policy(role), action)) for role, action in REMOVED),
        *(
            _identity(f"policy-worker-without-{action[3:]}", without(shipped_policy("worker"), action))
            for action in ("s3:PutObjectTagging", "s3:AbortMultipartUpload")
        ),
        # The minimal variant with NEW_ACL. SeaweedFS grants PutObjectAcl only through its own WriteAcp action,
        # never through a policy, and lets only the owner of a server-side copy (its source's, on SeaweedFS)
        # change its ACL: hence WriteAcp and the sources' account (tests/acceptance/test_least_privilege.py).
        _identity(
            "policy-worker-minimal",
            shipped_policy("worker-minimal"),
            actions=[f"WriteAcp:{NEW_BUCKET}/*"],
            account=SHARED_ACCOUNT,
        ),
        _identity("worker-minimal-alone", shipped_policy("worker-minimal")),
        ("account-writer", S3_IDENTITIES["account-writer"]),
    ]
)


@contextlib.contextmanager
def private_stack(stack: Stack):
    """A SeaweedFS holding the shipped policies as identities, behind a recording proxy, with the
    session's MariaDB."""
    base = Path(tempfile.mkdtemp(prefix="m3p-", dir="/tmp"))
    s3 = SeaweedFS(base, identities=IDENTITIES)
    proxy = None
    try:
        s3.start()
        # SeaweedFS may serve a moment before it applies the policies of its -s3.config.
        wait_for(lambda: _lists(s3.client("policy-seeder")), timeout=60, interval=0.5, what="the policies applied")
        proxy = FaultProxy(s3.url).start()
        yield Stack(stack.db, s3), proxy
    finally:
        if proxy is not None:
            proxy.stop()
        s3.stop()
        shutil.rmtree(base, ignore_errors=True)


def _lists(client) -> bool:
    try:
        client.list_objects_v2(Bucket=OLD_BUCKET, MaxKeys=1)
        return True
    except client.exceptions.ClientError:
        return False


@pytest.fixture(scope="module")
def policy_stack(stack):
    with private_stack(stack) as found:
        yield found


@pytest.fixture
def policy_route(policy_stack, route) -> Route:  # `route` empties the ledger
    stack, _ = policy_stack
    return Route(stack, old_prefix=route.old_prefix, new_prefix=route.new_prefix)


@pytest.fixture
def proxy(policy_stack) -> FaultProxy:
    return policy_stack[1]


def env(route: Route, proxy: FaultProxy, identity: str, db_role: str, **extra: str) -> dict[str, str]:
    return route.env(identity, db_role, URL_ENDPOINT=proxy.url, **extra)


def put_sources(route: Route, names: Iterable[str], tagged: bool = True, writer: str = "admin") -> dict[str, bytes]:
    client = route.stack.s3.client(writer)
    bodies = {}
    for name in names:
        bodies[name] = os.urandom(SIZES[name.split("-", 1)[-1]])
        tagging = {"Tagging": "&".join(f"{k}={v}" for k, v in TAGS)} if tagged else {}
        client.put_object(
            Bucket=OLD_BUCKET, Key=route.old(name), Body=bodies[name], ContentType="image/webp", **tagging
        )
    return bodies


def tags_of(route: Route, bucket: str, key: str) -> list[tuple[str, str]]:
    tags = route.stack.s3.client().get_object_tagging(Bucket=bucket, Key=key)["TagSet"]
    return sorted((t["Key"], t["Value"]) for t in tags)


# -- what each request needs ------------------------------------------------------------------------


def operation(method: str, path: str, headers: dict[str, str]) -> tuple[str, str, str | None]:
    """(S3 operation, bucket, key) of one path-style request."""
    parts = urlsplit(path)
    bucket, _, key = unquote(parts.path).lstrip("/").partition("/")
    query = parse_qs(parts.query, keep_blank_values=True)
    copy_source = "x-amz-copy-source" in headers
    if not key:
        if method == "GET" and query.get("list-type") == ["2"]:
            return "ListObjectsV2", bucket, None
        raise AssertionError(f"unexpected bucket request {method} {path}")
    found = {
        ("HEAD", ()): "HeadObject",
        ("GET", ()): "GetObject",
        ("GET", ("tagging",)): "GetObjectTagging",
        ("PUT", ()): "CopyObject" if copy_source else "PutObject",
        ("PUT", ("tagging",)): "PutObjectTagging",
        ("PUT", ("acl",)): "PutObjectAcl",
        ("PUT", ("partNumber", "uploadId")): "UploadPartCopy" if copy_source else "UploadPart",
        ("POST", ("uploads",)): "CreateMultipartUpload",
        ("POST", ("uploadId",)): "CompleteMultipartUpload",
        ("DELETE", ("uploadId",)): "AbortMultipartUpload",
        ("DELETE", ()): "DeleteObject",
        ("DELETE", ("versionId",)): "DeleteObject",
    }.get((method, tuple(sorted(query))))
    if found is None:
        raise AssertionError(f"unexpected object request {method} {path}")
    return found, bucket, key


def actions_needed(method: str, path: str, headers: dict[str, str]) -> set[tuple[str, str]]:
    """The (IAM action, resource ARN) pairs AWS documents for one request (docs/permissions.md cites the
    pages): the operation's own action, and those its headers add."""
    name, bucket, key = operation(method, path, headers)
    bucket_arn, object_arn = f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/{key}"
    query = parse_qs(urlsplit(path).query, keep_blank_values=True)
    source = unquote(headers.get("x-amz-copy-source", "")).lstrip("/").split("?")[0]
    source_arn = f"arn:aws:s3:::{source}"
    tagged = "x-amz-tagging" in headers
    needed = {
        # Without s3:ListBucket on its bucket, AWS answers a HEAD of a missing key 403, not 404: verify
        # and delete-source would stop instead of reporting the key missing or already gone.
        "HeadObject": {("s3:GetObject", object_arn), ("s3:ListBucket", bucket_arn)},
        "GetObject": {("s3:GetObject", object_arn)},
        "GetObjectTagging": {("s3:GetObjectTagging", object_arn)},
        "ListObjectsV2": {("s3:ListBucket", bucket_arn)},
        "PutObject": {("s3:PutObject", object_arn)},
        "PutObjectTagging": {("s3:PutObjectTagging", object_arn)},
        "PutObjectAcl": {("s3:PutObjectAcl", object_arn)},
        "CopyObject": {("s3:GetObject", source_arn), ("s3:PutObject", object_arn)},
        "CreateMultipartUpload": {("s3:PutObject", object_arn)},
        "UploadPart": {("s3:PutObject", object_arn)},
        "UploadPartCopy": {("s3:GetObject", source_arn), ("s3:PutObject", object_arn)},
        "CompleteMultipartUpload": {("s3:PutObject", object_arn)},
        "AbortMultipartUpload": {("s3:AbortMultipartUpload", object_arn)},
        "DeleteObject": {("s3:DeleteObject", object_arn)},
    }[name]
    if tagged:  # PutObject, CreateMultipartUpload, CopyObject with REPLACE: writes tags
        needed.add(("s3:PutObjectTagging", object_arn))
    if name == "CopyObject" and headers.get("x-amz-tagging-directive", "COPY").upper() == "COPY":
        # The source's tags are read and written with the copy.
        needed |= {("s3:GetObjectTagging", source_arn), ("s3:PutObjectTagging", object_arn)}
    if "x-amz-acl" in headers or any(h.startswith("x-amz-grant-") for h in headers):
        needed.add(("s3:PutObjectAcl", object_arn))
    if name == "DeleteObject" and "versionId" in query:
        needed.add(("s3:DeleteObjectVersion", object_arn))
    return needed


def grants(policy: dict) -> set[tuple[str, str]]:
    found = set()
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow" and set(statement) <= {"Sid", "Effect", "Action", "Resource"}
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        found |= {(a, r) for a in actions for r in resources}
    return found


def granted(pair: tuple[str, str], policy_grants: set[tuple[str, str]]) -> bool:
    action, arn = pair
    return any(a == action and fnmatch.fnmatchcase(arn, pattern) for a, pattern in policy_grants)


def calls(proxy: FaultProxy) -> set[tuple[str, str]]:
    """The actions the requests seen since the last call need; forgets them."""
    seen, proxy.seen = proxy.seen, []
    needed: set[tuple[str, str]] = set()
    for request in seen:
        needed |= actions_needed(*request)
    return needed


def assert_granted(role: str, needed: set[tuple[str, str]]) -> None:
    missing = sorted(pair for pair in needed if not granted(pair, grants(shipped_policy(role))))
    assert missing == [], f"compose/policies/{role}.json does not grant {missing}"


# -- a whole migration, each role under its own file -------------------------------------------------

CASES = [("boto3", "server"), ("crt", "server"), ("boto3", "stream")]


def migrate(
    route: Route, proxy: FaultProxy, engine: str, mode: str, before_delete: dict[str, str] | None = None
) -> dict:
    """seed, worker, verify and delete-source, each as its role; the actions each one needed. With
    `before_delete`, delete-source runs first with that environment (expected to fail)."""
    proxy.seen = []
    needed = {}
    run_cli("seed", env=env(route, proxy, "policy-seeder", "m3_seeder"))
    needed["seeder"] = calls(proxy)
    worker_env = {"COPY_ENGINE": engine, "COPY_MODE": mode, "MAX_ATTEMPTS": "1", **PARTS}
    worker_run = env(route, proxy, "policy-worker", "m3_worker", **worker_env)
    worker = run_cli("worker", "--exit-when-done", env=worker_run, check=False)
    needed["worker"] = calls(proxy)
    needed["events"] = json_events(worker.stdout)
    verify = run_cli("verify", "--full", env=env(route, proxy, "policy-verifier", "m3_worker"))
    needed["verifier"] = calls(proxy)
    assert ", 0 mismatched" in verify.stdout, verify.stdout
    if before_delete is not None:
        refused = run_cli("delete-source", "--max-deletes", "100", env=before_delete, check=False)
        assert refused.returncode != 0
        needed["refused"] = refused.stdout + refused.stderr
        proxy.seen = []
    deleted = run_cli("delete-source", "--max-deletes", "100", env=env(route, proxy, "policy-deleter", "m3_deleter"))
    needed["deleter"] = calls(proxy)
    needed["deleted"] = deleted.stdout
    return needed


@pytest.mark.parametrize("engine,mode", CASES, ids=[f"{e}-{m}" for e, m in CASES])
def test_a_whole_migration_under_the_shipped_policies(policy_route, proxy, engine, mode):
    route = policy_route
    bodies = put_sources(route, ["small.webp", "large.webp"])
    done = migrate(route, proxy, engine, mode)

    rows = {r["old_key"].decode().rsplit("/", 1)[1]: r for r in route.rows()}
    assert {n: (r["state"], r["attempts"]) for n, r in rows.items()} == dict.fromkeys(bodies, ("done", 1))
    methods = {"server": {"copy", "multipart-copy"}, "stream": {"stream", "multipart-stream"}}[mode]
    assert {r["copy_method"] for r in rows.values()} == methods
    admin = route.stack.s3.client()
    for name, body in bodies.items():
        got = admin.get_object(Bucket=NEW_BUCKET, Key=route.new(name))["Body"].read()
        assert hashlib.md5(got).digest() == hashlib.md5(body).digest(), name
        assert tags_of(route, NEW_BUCKET, route.new(name)) == TAGS, name  # every path carries the tags
    assert not [e for e in done["events"] if e["event"] in ("tags_not_carried", "multipart_abort_failed")]
    # With crt the small object's one CopyObject is sent from the worker loop (worker/hot_path.py), under
    # the same policy; boto3's copies run on copy threads.
    (started,) = [e for e in done["events"] if e["event"] == "worker_started"]
    (stopped,) = [e for e in done["events"] if e["event"] == "worker_stopped"]
    assert (started["hot_path"], stopped["hot_copies"]) == ((True, 1) if engine == "crt" else (False, 0))
    assert done["deleted"].startswith("deleted 2 "), done["deleted"]
    assert admin.list_objects_v2(Bucket=OLD_BUCKET, Prefix=route.old_prefix + "/")["KeyCount"] == 0
    for role in ROLES:
        assert done[role], role
        assert_granted(role, done[role])


def test_every_grant_of_the_shipped_policies_is_called(policy_route, proxy):
    """Each grant of each file is needed by some path of its role: a server-side copy (CopyObject with its
    tags, and a multipart one whose tags are read and written), an upload aborted when its row fails for
    good, verify, and delete-source on an unversioned source and then on a versioned one."""
    route = policy_route
    put_sources(route, ["small.webp", "large.webp", "doomed-large.webp"])
    # The doomed object's CompleteMultipartUpload fails (one attempt): its row fails, its upload is aborted.
    rule = (f"{route.new('doomed-large.webp')}?uploadId=", "internal", "POST")
    proxy.rules.append(rule)
    try:
        needed = migrate(route, proxy, "boto3", "server")
    finally:
        proxy.rules.remove(rule)
    states = {r["old_key"].decode().rsplit("/", 1)[1]: r["state"] for r in route.rows()}
    assert states == {"small.webp": "done", "large.webp": "done", "doomed-large.webp": "failed"}
    assert ("s3:AbortMultipartUpload", f"arn:aws:s3:::{NEW_BUCKET}/{route.new('doomed-large.webp')}") in needed[
        "worker"
    ]

    # A versioned source (on a server of its own, whose source bucket then stays versioned): delete-source
    # deletes exactly the version it copied, DeleteObject with VersionId, which the file without
    # s3:DeleteObjectVersion may not.
    with private_stack(route.stack) as (stack, versioned_proxy):
        versioned_route = Route(stack, old_prefix=route.old_prefix, new_prefix=route.new_prefix)
        stack.s3.client().put_bucket_versioning(Bucket=OLD_BUCKET, VersioningConfiguration={"Status": "Enabled"})
        with stack.db.admin(DATABASE) as conn, conn.cursor() as cur:
            cur.execute("DELETE FROM movers3_objects")
        put_sources(versioned_route, ["small.webp"])
        refused = env(versioned_route, versioned_proxy, "no-deleter-DeleteObjectVersion", "m3_deleter")
        versioned = migrate(versioned_route, versioned_proxy, "boto3", "server", before_delete=refused)
    assert "AccessDenied" in versioned["refused"], versioned["refused"]
    assert versioned["deleted"].startswith("deleted 1 "), versioned["deleted"]
    assert any(a == "s3:DeleteObjectVersion" for a, _ in versioned["deleter"])

    for role in ROLES:
        called = needed[role] | versioned[role]
        assert_granted(role, called)
        unused = sorted(g for g in grants(shipped_policy(role)) if not any(granted(c, {g}) for c in called))
        assert unused == [], f"compose/policies/{role}.json grants what {role} never calls: {unused}"


def test_the_minimal_worker_policy_with_copy_tags_off_and_new_acl(policy_route, proxy):
    """compose/policies/worker-minimal.json, the original tool's role, runs a migration with COPY_TAGS=false
    (and NEW_ACL, which it grants): every path done, the ACL applied, no tag asked for or carried."""
    route = policy_route
    names = ["small.webp", "large.webp"]
    put_sources(route, names, writer="account-writer")
    run_cli("seed", env=env(route, proxy, "policy-seeder", "m3_seeder"))
    proxy.seen = []
    worker_env = {"COPY_TAGS": "false", "NEW_ACL": "public-read", "MAX_ATTEMPTS": "1", **PARTS}
    worker = run_cli(
        "worker", "--exit-when-done", env=env(route, proxy, "policy-worker-minimal", "m3_worker", **worker_env)
    )
    needed = calls(proxy)
    assert {r["state"] for r in route.rows()} == {"done"}, worker.stdout[-3000:]
    minimal = grants(shipped_policy("worker-minimal"))
    assert sorted(p for p in needed if not granted(p, minimal)) == []
    assert all(any(granted(c, {g}) for c in needed) for g in minimal)
    admin = route.stack.s3.client()
    for name in names:
        assert tags_of(route, NEW_BUCKET, route.new(name)) == []
        acl = admin.get_object_acl(Bucket=NEW_BUCKET, Key=route.new(name))["Grants"]
        assert any(g["Grantee"].get("URI", "").endswith("/AllUsers") for g in acl), name
    assert not [e for e in json_events(worker.stdout) if e["event"] == "tags_not_carried"]


# -- one action less ----------------------------------------------------------------------------------


UNVERSIONED = [case for case in REMOVED if case[1] != "s3:DeleteObjectVersion"]


@pytest.mark.parametrize("role,action", UNVERSIONED, ids=[f"{r}-without-{a[3:]}" for r, a in UNVERSIONED])
def test_one_action_less_shows(policy_route, proxy, role, action):
    route = policy_route
    identity = f"no-{role}-{action[3:]}"
    put_sources(route, ["small.webp", "large.webp"])
    as_role = {r: f"policy-{r}" for r in ROLES} | {role: identity}
    seed = run_cli("seed", env=env(route, proxy, as_role["seeder"], "m3_seeder"), check=False)
    if role == "seeder":
        assert seed.returncode != 0 and "AccessDenied" in seed.stdout + seed.stderr
        assert route.rows() == []
        return
    worker = run_cli(
        "worker",
        "--exit-when-done",
        env=env(route, proxy, as_role["worker"], "m3_worker", MAX_ATTEMPTS="1", **PARTS),
        check=False,
    )
    states = {r["old_key"].decode().rsplit("/", 1)[1]: r["state"] for r in route.rows()}
    if (role, action) == ("worker", "s3:ListBucket"):
        assert worker.returncode != 0 and "cannot list the source bucket" in worker.stdout + worker.stderr
        assert set(states.values()) == {"pending"}
        return
    if (role, action) == ("worker", "s3:GetObject"):
        assert states == {"small.webp": "failed", "large.webp": "failed"}, worker.stdout[-2000:]
        return
    if (role, action) == ("worker", "s3:GetObjectTagging"):
        # The multipart copy goes without its tags and says so once; CopyObject carries them by itself.
        assert set(states.values()) == {"done"}
        assert tags_of(route, NEW_BUCKET, route.new("large.webp")) == []
        assert tags_of(route, NEW_BUCKET, route.new("small.webp")) == TAGS
        assert [e["event"] for e in json_events(worker.stdout)].count("tags_not_carried") == 1
        return
    assert set(states.values()) == {"done"}, worker.stdout[-2000:]
    verify = run_cli("verify", env=env(route, proxy, as_role["verifier"], "m3_worker"), check=False)
    if role == "verifier":
        # A refused HEAD is a bare 403 (no body to name the code).
        assert verify.returncode != 0 and "HeadObject production-s3/" in verify.stderr
        assert "403: Forbidden" in verify.stderr, verify.stderr
        return
    assert verify.returncode == 0, verify.stdout + verify.stderr
    deleter = env(route, proxy, as_role["deleter"], "m3_deleter")
    deleted = run_cli("delete-source", "--max-deletes", "100", env=deleter, check=False)
    assert deleted.returncode != 0 and "AccessDenied" in deleted.stdout + deleted.stderr
    assert route.stack.s3.client().list_objects_v2(Bucket=OLD_BUCKET, Prefix=route.old_prefix + "/")["KeyCount"] == 2


# -- `movers3 check` under each file ------------------------------------------------------------------

# (role of `check --role`, identity, ledger account, extra settings): each shipped file with the account
# its commands run with in migrate(), and the minimal file with the settings it is written for.
CHECKED = [
    ("seeder", "policy-seeder", "m3_seeder", {}),
    ("worker", "policy-worker", "m3_worker", {}),
    ("worker", "policy-worker-minimal", "m3_worker", {"COPY_TAGS": "false", "NEW_ACL": "bucket-owner-full-control"}),
    ("verifier", "policy-verifier", "m3_worker", {}),
    ("deleter", "policy-deleter", "m3_deleter", {}),
]


def check_lines(route: Route, proxy: FaultProxy, role: str, identity: str, db_role: str, **extra: str):
    """`movers3 check --role R --json` as `identity`: its exit code and name -> (status, detail)."""
    result = run_cli("check", "--role", role, "--json", env=env(route, proxy, identity, db_role, **extra), check=False)
    found = {c["name"]: (c["status"], c["detail"]) for c in json.loads(result.stdout)}
    print("\n".join(f"{s:<8} {n}  {d}" for n, (s, d) in found.items()))
    return result.returncode, found


def buckets_state(route: Route) -> dict:
    """Every object of both buckets (key, ETag, size, tags) and every multipart upload in progress."""
    admin = route.stack.s3.client()
    state = {}
    for bucket in (OLD_BUCKET, NEW_BUCKET):
        pages = admin.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        objects = sorted((o["Key"], o["ETag"], o["Size"]) for p in pages for o in p.get("Contents", []))
        uploads = admin.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
        state[bucket] = (
            [(*o, tags_of(route, bucket, o[0])) for o in objects],
            sorted((u["Key"], u["UploadId"]) for u in uploads),
        )
    return state


@pytest.mark.parametrize("role,identity,db_role,extra", CHECKED, ids=[c[1] for c in CHECKED])
def test_check_passes_under_each_shipped_policy_and_changes_nothing(
    policy_route, proxy, role, identity, db_role, extra
):
    """`movers3 check --role R` under R's file probes each right the file grants, given the settings
    (COPY_TAGS, NEW_ACL): every line ok (a deleter's deletes are not provable: unknown), and nothing in
    either bucket changed, objects, tags or multipart uploads in progress."""
    route = policy_route
    put_sources(route, ["small.webp"], writer="account-writer")
    admin = route.stack.s3.client()
    admin.put_object(Bucket=NEW_BUCKET, Key=route.new("small.webp"), Body=b"copied", Tagging="kind=avatar")
    admin.create_multipart_upload(Bucket=NEW_BUCKET, Key=route.new("in-progress.webp"))
    before = buckets_state(route)
    code, found = check_lines(route, proxy, role, identity, db_role, **extra)
    assert buckets_state(route) == before
    rights = {
        "seeder": [f"s3:ListBucket {OLD_BUCKET}"],
        "worker": [
            f"s3:ListBucket {OLD_BUCKET}",
            f"s3:GetObject {OLD_BUCKET}",
            f"s3:GetObjectTagging {OLD_BUCKET}",
            f"s3:PutObject {NEW_BUCKET}",
            f"s3:PutObjectTagging {NEW_BUCKET}",
            f"s3:AbortMultipartUpload {NEW_BUCKET}",
            f"s3:PutObjectAcl {NEW_BUCKET}",
        ],
        "verifier": [
            f"s3:ListBucket {OLD_BUCKET}",
            f"s3:GetObject {OLD_BUCKET}",
            f"s3:ListBucket {NEW_BUCKET}",
            f"s3:GetObject {NEW_BUCKET}",
        ],
    }
    rights["deleter"] = [*rights["verifier"], f"s3:DeleteObject {OLD_BUCKET}", f"s3:DeleteObjectVersion {OLD_BUCKET}"]
    assert [n for n in found if n.startswith("s3:")] == rights[role]
    unprovable = {n for n in found if n.startswith(("s3:DeleteObject ", "s3:DeleteObjectVersion "))}
    assert {n: s for n, (s, _) in found.items() if n not in unprovable} == dict.fromkeys(set(found) - unprovable, "ok")
    assert {found[n][0] for n in unprovable} == ({"unknown"} if role == "deleter" else set())
    assert code == (1 if role == "deleter" else 0)
    if role == "worker" and not extra:
        assert found[f"s3:GetObjectTagging {OLD_BUCKET}"][1] == f"read the tags of {route.old('small.webp')} (2 tags)"
        assert "answered NoSuchKey" in found[f"s3:PutObjectTagging {NEW_BUCKET}"][1]
        assert "answered NoSuchUpload" in found[f"s3:AbortMultipartUpload {NEW_BUCKET}"][1]
    if extra:
        assert found[f"s3:GetObjectTagging {OLD_BUCKET}"][1] == "not needed: COPY_TAGS=false"
        assert "answered NoSuchKey" in found[f"s3:PutObjectAcl {NEW_BUCKET}"][1]
    if role in ("verifier", "deleter"):
        assert found[f"s3:ListBucket {NEW_BUCKET}"][1].startswith(f"listed {NEW_BUCKET}/{route.new_prefix}/: first key")
        assert found[f"s3:GetObject {NEW_BUCKET}"][1] == f"read the first byte of {route.new('small.webp')}"


@pytest.mark.parametrize(
    "identity,action",
    [
        ("no-worker-GetObjectTagging", "s3:GetObjectTagging"),
        ("policy-worker-without-PutObjectTagging", "s3:PutObjectTagging"),
    ],
)
def test_check_names_a_missing_tagging_right(policy_route, proxy, identity, action):
    """The worker's file without one tagging action: that line is a problem with COPY_TAGS=true (the
    default), and not needed with COPY_TAGS=false."""
    route = policy_route
    put_sources(route, ["small.webp"])
    bucket = OLD_BUCKET if action == "s3:GetObjectTagging" else NEW_BUCKET
    name = f"{action} {bucket}"
    code, found = check_lines(route, proxy, "worker", identity, "m3_worker")
    assert code == 1
    assert found[name] == (
        "problem",
        f"AccessDenied: these credentials lack {action} on {bucket}: COPY_TAGS=true needs it "
        "(docs/permissions.md), or set COPY_TAGS=false",
    )
    assert [n for n, (s, _) in found.items() if s != "ok"] == [name]
    code, found = check_lines(route, proxy, "worker", identity, "m3_worker", COPY_TAGS="false")
    assert code == 0 and found[name] == ("ok", "not needed: COPY_TAGS=false")


def test_what_seaweedfs_does_not_enforce(policy_route):
    """Where SeaweedFS enforces less than AWS, measured (docs/permissions.md says so): a file without
    s3:PutObjectTagging still writes tags with PutObject, CreateMultipartUpload and CopyObject (only
    PutObjectTagging itself is refused); one without s3:AbortMultipartUpload still aborts (SeaweedFS
    counts every multipart action as s3:PutObject); a HEAD of a missing key is a 404 without
    s3:ListBucket (AWS: 403); and s3:PutObjectAcl in a policy grants nothing (SeaweedFS's WriteAcp does)."""
    route, s3 = policy_route, policy_route.stack.s3
    put_sources(route, ["small.webp"])
    source = {"Bucket": OLD_BUCKET, "Key": route.old("small.webp")}
    untagging = s3.client("policy-worker-without-PutObjectTagging")
    untagging.put_object(Bucket=NEW_BUCKET, Key=route.new("put"), Body=b"x", Tagging="a=b")
    untagging.create_multipart_upload(Bucket=NEW_BUCKET, Key=route.new("mp"), Tagging="a=b")
    untagging.copy_object(Bucket=NEW_BUCKET, Key=route.new("copy"), CopySource=source)
    assert tags_of(route, NEW_BUCKET, route.new("put")) == [("a", "b")]
    assert tags_of(route, NEW_BUCKET, route.new("copy")) == TAGS
    with pytest.raises(untagging.exceptions.ClientError, match="AccessDenied"):
        untagging.put_object_tagging(
            Bucket=NEW_BUCKET, Key=route.new("put"), Tagging={"TagSet": [{"Key": "k", "Value": "v"}]}
        )
    abortless = s3.client("policy-worker-without-AbortMultipartUpload")
    upload = abortless.create_multipart_upload(Bucket=NEW_BUCKET, Key=route.new("abort"))["UploadId"]
    abortless.abort_multipart_upload(Bucket=NEW_BUCKET, Key=route.new("abort"), UploadId=upload)
    unlisting = s3.client("no-worker-ListBucket")
    with pytest.raises(unlisting.exceptions.ClientError) as missing:
        unlisting.head_object(Bucket=OLD_BUCKET, Key=route.old("missing"))
    assert missing.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    alone = s3.client("worker-minimal-alone")
    alone.put_object(Bucket=NEW_BUCKET, Key=route.new("own"), Body=b"x")
    with pytest.raises(alone.exceptions.ClientError, match="AccessDenied"):
        alone.put_object_acl(Bucket=NEW_BUCKET, Key=route.new("own"), ACL="public-read")
