"""Every kept attribute on every copy path and every pair of endpoints: SeaweedFS and moto as source
and destination, server-side and streamed, single and multipart, with the least-privilege worker
identity wherever the endpoint enforces one."""

import hashlib
import os
import threading

import pytest

from movers3.ledger.db import Database
from movers3.ledger.seeds import Seeds
from movers3.ledger.uploads import UploadJournal
from movers3.ledger.work import Row, WorkQueue
from movers3.seed.seeder import Seeder
from movers3.settings import load
from movers3.transfer import s3
from movers3.transfer.copier import ObjectCopier
from movers3.values import MIB
from movers3.worker.loop import Worker, WorkerConfig
from tests.support.helpers import CONTENT_ATTRIBUTES, SOURCE_ATTRIBUTES

pytestmark = pytest.mark.integration

ATTRS = SOURCE_ATTRIBUTES
CONTENT = CONTENT_ATTRIBUTES
# Checked once below with a plain PutObject: SeaweedFS does not store x-amz-website-redirect-location at
# all, so no copy onto it can keep one (README says so); moto keeps it.
KEEPS_REDIRECT = {"seaweedfs": False, "moto": True}

SMALL, LARGE = 300_000, 11 * MIB + 123
PART = 5 * MIB  # MULTIPART_CHUNKSIZE below: LARGE is three parts
# SeaweedFS makes a server-side copy belong to the source object's owner (AWS makes it the requester's),
# so only that owner's account or an identity that may change any ACL can apply NEW_ACL to it: this pair
# copies as admin. tests/acceptance/test_least_privilege.py runs it under the exact worker policy, in the
# sources' account; the least-privilege identity applies ACLs to the objects it writes itself.
SERVER_SIDE_ON_SEAWEEDFS = "admin"
PAIRS = [
    # source, destination, COPY_MODE, (path below the threshold, path above it)
    ("seaweedfs", "seaweedfs", "server", ("copy", "multipart-copy")),
    ("seaweedfs", "seaweedfs", "stream", ("stream", "multipart-stream")),
    ("moto", "seaweedfs", "auto", ("stream", "multipart-stream")),
    ("seaweedfs", "moto", "auto", ("stream", "multipart-stream")),
    ("moto", "moto", "auto", ("copy", "multipart-copy")),
]


def proof(path: str, body: bytes) -> tuple[str, str | None, str | None]:
    """(verified_by, checksum, destination ETag) that a copy of `body` by `path` must report; None for
    the ETag where the bytes don't determine it."""
    md5 = hashlib.md5(body).hexdigest()
    parts = s3.composite_etag([hashlib.md5(body[i : i + PART]).hexdigest() for i in range(0, len(body), PART)])
    return {
        # The source's ETag is the MD5 of its bytes and the copy has the same: that MD5 is the proof.
        "copy": ("etag", f"md5:{md5}", md5),
        # Server-side parts never pass through this process, so there is no MD5 of the bytes to record:
        # each part was pinned to the source's ETag and the ranges cover exactly its size. The ETag is
        # the server's own: SeaweedFS gives the parts of an unencrypted UploadPartCopy ETags that are
        # not their MD5s, so only "the one the destination reports" can be asserted.
        "multipart-copy": ("size+pinned", None, None),
        "stream": ("md5", f"md5:{md5}", md5),
        # A fresh streamed upload hashes the whole object in part order, besides every part's MD5.
        "multipart-stream": ("md5+parts", f"md5:{md5}", parts),
    }[path]


@pytest.fixture
def servers(stack, moto):
    return {"seaweedfs": stack.s3, "moto": moto}


def side_env(prefix: str, server, identity: str) -> dict[str, str]:
    key, secret = server.credentials(identity)
    return {
        f"{prefix}_URL_ENDPOINT": server.url,
        f"{prefix}_AWS_ACCESS_KEY_ID": key,
        f"{prefix}_AWS_SECRET_ACCESS_KEY": secret,
    }


def copier_for(
    route, servers, source: str, dest: str, mode: str, identity: str = "worker", **extra: str
) -> ObjectCopier:
    env = {
        **route.env("worker", "m3_worker"),
        **side_env("OLD", servers[source], identity),
        **side_env("NEW", servers[dest], identity),
        "COPY_MODE": mode,
        "MULTIPART_THRESHOLD": "8MiB",
        "MULTIPART_CHUNKSIZE": "5MiB",
        "PART_CONCURRENCY": "3",
        "STREAM_MEMORY": "16MiB",
        **extra,
    }
    settings = load(env)
    return ObjectCopier.from_settings(settings, UploadJournal(None, "test"), threading.Event())


def listed_row(route, server, rest: str) -> Row:
    """The row the seeder would make, from a real listing (size, ETag and storage class)."""
    (obj,) = server.client().list_objects_v2(Bucket=route.old_bucket, Prefix=route.old(rest))["Contents"]
    return Row(
        1,
        route.old_bucket,
        obj["Key"],
        route.new_bucket,
        route.new(rest),
        obj["Size"],
        s3.bare_etag(obj["ETag"]),
        1,
        obj.get("StorageClass"),
    )


def test_what_each_endpoint_stores_at_all(route, servers):
    for name, server in servers.items():
        client = server.client()
        client.put_object(Bucket=route.new_bucket, Key=route.new("probe"), Body=b"p", **ATTRS)
        head = client.head_object(Bucket=route.new_bucket, Key=route.new("probe"))
        assert (head.get("WebsiteRedirectLocation") == ATTRS["WebsiteRedirectLocation"]) is KEEPS_REDIRECT[name]
        assert all(head.get(a) == ATTRS[a] for a in CONTENT), name


@pytest.mark.parametrize("size", [SMALL, LARGE], ids=["single", "multipart"])
@pytest.mark.parametrize("source,dest,mode,paths", PAIRS, ids=[f"{p[0]}-to-{p[1]}-{p[2]}" for p in PAIRS])
def test_every_attribute_is_kept(route, servers, source, dest, mode, paths, size):
    body = os.urandom(size)
    servers[source].client().put_object(Bucket=route.old_bucket, Key=route.old("obj.webp"), Body=body, **ATTRS)
    identity = SERVER_SIDE_ON_SEAWEEDFS if (dest, mode) == ("seaweedfs", "server") else "worker"
    copier = copier_for(
        route,
        servers,
        source,
        dest,
        mode,
        identity,
        NEW_ACL="public-read",
        NEW_SSE="AES256",
        WEBSITE_REDIRECTS="always",
    )
    row = listed_row(route, servers[source], "obj.webp")
    assert row.storage_class == "STANDARD_IA"

    copied = copier.copy(row)

    path = paths[size == LARGE]
    verified_by, checksum, dest_etag = proof(path, body)
    assert (copied.method, copied.size, copied.source_etag) == (path, size, row.source_etag)
    assert (copied.verified_by, copied.checksum) == (verified_by, checksum)
    admin = servers[dest].client()
    got = admin.get_object(Bucket=route.new_bucket, Key=route.new("obj.webp"))
    assert hashlib.md5(got["Body"].read()).hexdigest() == hashlib.md5(body).hexdigest()
    # The ETag recorded is the one the destination reports (`verify` and `delete-source` compare with
    # it), and the one the bytes give wherever they determine it (all but multipart-copy: see proof).
    assert copied.dest_etag == s3.bare_etag(got["ETag"])
    if dest_etag is not None:
        assert copied.dest_etag == dest_etag
    for attr in CONTENT:
        assert got.get(attr) == ATTRS[attr], attr
    # Kept only where both ends store it: a SeaweedFS source has none to give (it dropped it at upload)
    # and a SeaweedFS destination drops the one it is sent (test_what_each_endpoint_stores_at_all).
    redirect = ATTRS["WebsiteRedirectLocation"] if KEEPS_REDIRECT[source] and KEEPS_REDIRECT[dest] else None
    assert got.get("WebsiteRedirectLocation") == redirect
    assert got.get("ServerSideEncryption") == "AES256"
    tags = admin.get_object_tagging(Bucket=route.new_bucket, Key=route.new("obj.webp"))["TagSet"]
    assert sorted((t["Key"], t["Value"]) for t in tags) == [("kind", "avatar"), ("team", "web")]
    grants = admin.get_object_acl(Bucket=route.new_bucket, Key=route.new("obj.webp"))["Grants"]
    assert any(g["Grantee"].get("URI", "").endswith("/AllUsers") and g["Permission"] == "READ" for g in grants)


@pytest.mark.parametrize("server", ["moto", "seaweedfs"])  # the two server-side pairs
def test_redirects_follow_the_setting_on_the_server_side_hot_path(route, servers, server):
    """AWS's CopyObject never carries a website redirect, so `always` reads it with a HEAD and writes
    every attribute explicitly; `never` sends the plain copy. (moto copies the redirect by itself, so the
    requests are what this test watches, through botocore's own event hooks: hence the boto3 engine;
    test_engine.py shows the crt engine sends the same `extra` as the same headers.)"""
    client = servers[server].client()
    client.put_object(Bucket=route.old_bucket, Key=route.old("r"), Body=b"r", **ATTRS)
    # SeaweedFS dropped the redirect at upload: its HEAD has none for `always` to write.
    redirect = ATTRS["WebsiteRedirectLocation"] if KEEPS_REDIRECT[server] else None
    for setting in ("always", "never"):
        copier = copier_for(route, servers, server, server, "auto", WEBSITE_REDIRECTS=setting, COPY_ENGINE="boto3")
        sent = []
        copier.dest.meta.events.register("before-call.s3.CopyObject", lambda params, **kw: sent.append(params))
        copied = copier.copy(listed_row(route, servers[server], "r"))
        assert copied.method == "copy"
        (params,) = sent
        headers = {k.lower(): v for k, v in params["headers"].items()}
        if setting == "always":
            assert headers["x-amz-metadata-directive"] == "REPLACE"
            assert headers.get("x-amz-website-redirect-location") == redirect
            assert headers["content-type"] == ATTRS["ContentType"] and headers["x-amz-meta-owner"] == "user-42"
        else:
            assert "x-amz-metadata-directive" not in headers and "x-amz-website-redirect-location" not in headers
        head = client.head_object(Bucket=route.new_bucket, Key=route.new("r"))
        assert head["ContentType"] == ATTRS["ContentType"] and head["Metadata"] == ATTRS["Metadata"]
        assert head.get("WebsiteRedirectLocation") == redirect


@pytest.mark.parametrize("source,dest,mode,paths", PAIRS, ids=[f"{p[0]}-to-{p[1]}-{p[2]}" for p in PAIRS])
def test_empty_objects_on_every_path(route, servers, source, dest, mode, paths):
    """An empty object is below any threshold: the single-part path of each pair, proved like any other."""
    servers[source].client().put_object(
        Bucket=route.old_bucket, Key=route.old("empty"), Body=b"", ContentType="text/plain"
    )
    copied = copier_for(route, servers, source, dest, mode).copy(listed_row(route, servers[source], "empty"))
    path = paths[0]
    assert (copied.method, copied.size) == (path, 0)
    assert (copied.verified_by, copied.checksum, copied.dest_etag) == proof(path, b"")
    got = servers[dest].client().get_object(Bucket=route.new_bucket, Key=route.new("empty"))
    assert got["Body"].read() == b"" and got["ContentType"] == "text/plain"
    assert s3.bare_etag(got["ETag"]) == copied.dest_etag


@pytest.mark.parametrize("mode", ["server", "stream"])
def test_the_proof_of_every_path_is_recorded_on_its_row(route, mode):
    """What the copier proved reaches the ledger through the real worker: copy_method, verified_by,
    dest_etag and checksum of each row, for the single and the multipart path of each mode."""
    bodies = {"small.bin": os.urandom(SMALL), "large.bin": os.urandom(LARGE)}
    for name, body in bodies.items():
        route.put(name, body)
    seeding = load(route.env("seeder", "m3_seeder"))
    Seeder(Seeds(Database(seeding.mysql)), s3.client(seeding.source), seeding).run()
    settings = load(
        route.env("worker", "m3_worker", COPY_MODE=mode, MULTIPART_THRESHOLD="8MiB", MULTIPART_CHUNKSIZE="5MiB")
    )
    ledger, stop = WorkQueue(Database(settings.mysql)), threading.Event()
    journal = UploadJournal.open(ledger.db, "fidelity")
    copier = ObjectCopier.from_settings(settings, journal, stop)
    config = WorkerConfig(threads=2, lease_seconds=120, max_attempts=3, claim_batch=2, exit_when_done=True)
    stats = Worker(ledger, copier, config, worker_id="fidelity", stop_event=stop, journal=journal).run()
    assert stats.done == 2
    paths = {"server": ("copy", "multipart-copy"), "stream": ("stream", "multipart-stream")}[mode]
    rows = {r["old_key"].decode().rsplit("/", 1)[1]: r for r in route.rows()}
    admin = route.stack.s3.client()
    for (name, body), path in zip(bodies.items(), paths, strict=True):
        verified_by, checksum, dest_etag = proof(path, body)
        row = rows[name]
        reported = s3.bare_etag(admin.head_object(Bucket=route.new_bucket, Key=route.new(name))["ETag"])
        assert (row["state"], row["copy_method"], row["size"]) == ("done", path, len(body)), name
        assert (row["verified_by"], row["dest_etag"]) == (verified_by, reported), name
        if dest_etag is not None:  # all but multipart-copy: see proof
            assert reported == dest_etag, name
        assert row["checksum"] == checksum, (name, path)
