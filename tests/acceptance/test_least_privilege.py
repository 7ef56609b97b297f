"""Least privilege on every copy path: CLI workers holding README's worker policy, which SeaweedFS
enforces (ListBucket and GetObject on the old bucket, PutObject and PutObjectAcl on the new one, no
delete, no read or list of the new bucket), and the `m3_worker` database account, copy server-side
(CopyObject; CreateMultipartUpload + UploadPartCopy) and streamed (GetObject + PutObject; ranged
GetObject + UploadPart), below and above MULTIPART_THRESHOLD, with NEW_ACL and NEW_SSE. The admin
client then checks that each object arrived whole, with its attributes and the ACL.

What is enforced, exactly: every worker here holds WORKER_POLICY and `WriteAcp:<new bucket>/*` (the only
form in which SeaweedFS grants PutObjectAcl), nothing else. One SeaweedFS quirk needs more than the
policy for the single CopyObject path with NEW_ACL: a server-side copy belongs to its source's owner
(AWS gives it to the requester's account), and only that owner may change its ACL. So the worker of
that path, `account-worker`, is in the account of the identity that wrote the sources, as a role and
the objects of one AWS account are; the account grants it no right (checked below). The other paths
need no shared account: the worker creates their objects, so it owns them, and `worker-iam` (README's
policy in an account of its own) runs them.
"""

from __future__ import annotations

import hashlib
import os

import pytest

from movers3.values import MIB
from tests.support.helpers import CONTENT_ATTRIBUTES, SOURCE_ATTRIBUTES, assert_forbidden, json_events, run_cli
from tests.support.services import S3_IDENTITIES, SHARED_ACCOUNT, WORKER_POLICY

pytestmark = pytest.mark.acceptance

ATTRS = SOURCE_ATTRIBUTES
CONTENT = CONTENT_ATTRIBUTES
SIZES = {"small.webp": 300_000, "large.webp": 11 * MIB + 123}  # one part; three parts of 5 MiB
# (COPY_MODE, worker identity, objects): the four paths, each under README's worker policy.
CASES = [
    ("server", "account-worker", ("small.webp", "large.webp")),  # copy, multipart-copy
    ("server", "worker-iam", ("large.webp",)),  # multipart-copy needs no shared account
    ("stream", "worker-iam", ("small.webp", "large.webp")),  # stream, multipart-stream
]
PATHS = {
    ("server", "small.webp"): ("copy", "etag"),
    ("server", "large.webp"): ("multipart-copy", "size+pinned"),
    ("stream", "small.webp"): ("stream", "md5"),
    ("stream", "large.webp"): ("multipart-stream", "md5+parts"),
}


def put_sources(route, names) -> dict[str, bytes]:
    """Written by `account-writer`, so that they belong to SHARED_ACCOUNT."""
    writer = route.stack.s3.client("account-writer")
    bodies = {name: os.urandom(SIZES[name]) for name in names}
    for name, body in bodies.items():
        writer.put_object(Bucket=route.old_bucket, Key=route.old(name), Body=body, **ATTRS)
    return bodies


def public_read(grants: list[dict]) -> bool:
    return any(g["Grantee"].get("URI", "").endswith("/AllUsers") and g["Permission"] == "READ" for g in grants)


def test_the_shared_account_grants_the_worker_nothing_more(route, stack):
    """`account-worker` holds exactly what `worker-iam` holds, and its account adds no right: not even
    over the sources its account owns."""
    assert S3_IDENTITIES["account-worker"]["policy"] is WORKER_POLICY is S3_IDENTITIES["worker-iam"]["policy"]
    assert S3_IDENTITIES["account-worker"]["actions"] == S3_IDENTITIES["worker-iam"]["actions"]
    assert S3_IDENTITIES["account-writer"]["account"] is SHARED_ACCOUNT is S3_IDENTITIES["account-worker"]["account"]
    put_sources(route, ["small.webp"])
    worker = stack.s3.client("account-worker")
    source = {"Bucket": route.old_bucket, "Key": route.old("small.webp")}
    worker.copy_object(Bucket=route.new_bucket, Key=route.new("small.webp"), CopySource=source)
    new = {"Bucket": route.new_bucket, "Key": route.new("small.webp")}
    forbidden = {
        "DeleteObject on the new bucket": lambda: worker.delete_object(**new),
        "GetObject on the new bucket": lambda: worker.get_object(**new),
        "ListBucket on the new bucket": lambda: worker.list_objects_v2(Bucket=route.new_bucket),
        "PutObject on the old bucket": lambda: worker.put_object(**source, Body=b"overwritten"),
        "DeleteObject on the old bucket": lambda: worker.delete_object(**source),
        "PutObjectAcl on a source its account owns": lambda: worker.put_object_acl(**source, ACL="public-read"),
        "GetObjectTagging on the old bucket": lambda: worker.get_object_tagging(**source),
        "PutBucketAcl on the new bucket": lambda: worker.put_bucket_acl(Bucket=route.new_bucket, ACL="public-read"),
    }
    assert_forbidden(forbidden, worker)


def test_why_the_server_side_copy_path_needs_the_shared_account(route, stack):
    """The quirk this file works around, pinned: the same source, copied server-side by README's policy
    in another account (`worker-iam`) and in the sources' account (`account-worker`), takes NEW_ACL only
    in the second. Should SeaweedFS give a copy to its requester, as AWS does, this fails and the
    shared account can go."""
    put_sources(route, ["small.webp"])
    source = {"Bucket": route.old_bucket, "Key": route.old("small.webp")}
    admin = stack.s3.client()
    outcome = {}
    for identity in ("worker-iam", "account-worker"):
        worker = stack.s3.client(identity)
        key = route.new(f"{identity}.webp")
        worker.copy_object(Bucket=route.new_bucket, Key=key, CopySource=source)
        try:
            worker.put_object_acl(Bucket=route.new_bucket, Key=key, ACL="public-read")
            outcome[identity] = "applied"
        except worker.exceptions.ClientError as exc:
            outcome[identity] = exc.response["Error"]["Code"]
        owner = admin.get_object_acl(Bucket=route.new_bucket, Key=key)["Owner"]["ID"]
        assert owner == SHARED_ACCOUNT["id"], (identity, owner)  # the source's owner, not the requester
    assert outcome == {"worker-iam": "AccessDenied", "account-worker": "applied"}


@pytest.mark.parametrize(
    "mode,identity,names", CASES, ids=["+".join(PATHS[m, n][0] for n in names) + f"-as-{i}" for m, i, names in CASES]
)
def test_every_copy_path_under_the_worker_policy(route, mode, identity, names):
    bodies = put_sources(route, names)
    run_cli("seed", env=route.env("seeder", "m3_seeder"))
    env = route.env(
        identity,
        "m3_worker",
        COPY_MODE=mode,
        NEW_ACL="public-read",
        NEW_SSE="AES256",
        MULTIPART_THRESHOLD="8MiB",
        MULTIPART_CHUNKSIZE="5MiB",
        LOG_LEVEL="debug",
    )
    worker = run_cli("worker", "--exit-when-done", env=env)
    events = json_events(worker.stdout)

    rows = {r["old_key"].decode().rsplit("/", 1)[1]: r for r in route.rows()}
    assert {n: (r["state"], r["attempts"], r["last_error"]) for n, r in rows.items()} == dict.fromkeys(
        names, ("done", 1, None)
    ), worker.stdout[-3000:]
    assert {n: (r["copy_method"], r["verified_by"]) for n, r in rows.items()} == {n: PATHS[mode, n] for n in names}
    admin = route.stack.s3.client()
    for name, body in bodies.items():
        got = admin.get_object(Bucket=route.new_bucket, Key=route.new(name))
        assert hashlib.md5(got["Body"].read()).hexdigest() == hashlib.md5(body).hexdigest(), name
        assert {a: got.get(a) for a in CONTENT} == {a: ATTRS[a] for a in CONTENT}, name
        assert got.get("ServerSideEncryption") == "AES256", name
        assert public_read(admin.get_object_acl(Bucket=route.new_bucket, Key=route.new(name))["Grants"]), name

    # Tags: CopyObject carries them by itself; the other paths read them with GetObjectTagging, which the
    # policy does not grant, so they go without and say so once (README, "What the minimal role cannot
    # carry"), never silently.
    for name in names:
        tags = admin.get_object_tagging(Bucket=route.new_bucket, Key=route.new(name))["TagSet"]
        kept = sorted((t["Key"], t["Value"]) for t in tags)
        assert kept == ([("kind", "avatar"), ("team", "web")] if rows[name]["copy_method"] == "copy" else []), name
    gaps = [e for e in events if e["event"] == "tags_not_carried"]
    assert len(gaps) == int(any(rows[n]["copy_method"] != "copy" for n in names)), gaps
