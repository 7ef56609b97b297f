"""Every kept attribute on every copy path and every pair of endpoints: SeaweedFS and moto as source
and destination, server-side and streamed, single and multipart, with the least-privilege worker
identity wherever the endpoint enforces one."""

import datetime
import hashlib
import os
import threading

import pytest

from movers3.transfer import s3
from movers3.transfer.copier import ObjectCopier
from movers3.ledger.uploads import UploadJournal
from movers3.ledger.work import Row
from movers3.settings import MIB, load

pytestmark = pytest.mark.integration

ATTRS = dict(
    ContentType="image/webp", CacheControl="public, max-age=60", ContentDisposition='inline; filename="a b.webp"',
    ContentLanguage="fr-CA", ContentEncoding="identity",
    Expires=datetime.datetime(2031, 2, 3, 4, 5, 6, tzinfo=datetime.timezone.utc),
    Metadata={"owner": "user-42", "x-note": "kept"}, WebsiteRedirectLocation="/moved/here.html",
    StorageClass="STANDARD_IA", Tagging="team=web&kind=avatar",
)
CONTENT = ("ContentType", "CacheControl", "ContentDisposition", "ContentLanguage", "ContentEncoding", "Expires",
           "Metadata", "StorageClass")
# Checked once below with a plain PutObject: SeaweedFS does not store x-amz-website-redirect-location at
# all, so no copy onto it can keep one (docs/copying.md says so); moto keeps it.
KEEPS_REDIRECT = {"seaweedfs": False, "moto": True}

SMALL, LARGE = 300_000, 11 * MIB + 123
# SeaweedFS makes a server-side copy belong to the source object's owner (AWS makes it the requester's),
# so only an identity that may change any ACL can apply NEW_ACL to it: that pair copies as admin. The
# least-privilege worker identity applies ACLs to the objects it writes itself (the streamed pairs).
SERVER_SIDE_ON_SEAWEEDFS = "admin"
PAIRS = [
    # source, destination, COPY_MODE, (path below the threshold, path above it)
    ("seaweedfs", "seaweedfs", "server", ("copy", "multipart-copy")),
    ("seaweedfs", "seaweedfs", "stream", ("stream", "multipart-stream")),
    ("moto", "seaweedfs", "auto", ("stream", "multipart-stream")),
    ("seaweedfs", "moto", "auto", ("stream", "multipart-stream")),
    ("moto", "moto", "auto", ("copy", "multipart-copy")),
]
PROOF = {"copy": "etag", "multipart-copy": "size+pinned", "stream": "md5", "multipart-stream": "md5+parts"}


@pytest.fixture
def servers(stack, moto):
    return {"seaweedfs": stack.s3, "moto": moto}


def side_env(prefix: str, server, identity: str) -> dict[str, str]:
    key, secret = server.credentials(identity)
    return {f"{prefix}_URL_ENDPOINT": server.url, f"{prefix}_AWS_ACCESS_KEY_ID": key,
            f"{prefix}_AWS_SECRET_ACCESS_KEY": secret}


def copier_for(route, servers, source: str, dest: str, mode: str, identity: str = "worker", **extra: str
               ) -> ObjectCopier:
    env = {**route.env("worker", "m3_worker"), **side_env("OLD", servers[source], identity),
           **side_env("NEW", servers[dest], identity), "COPY_MODE": mode, "MULTIPART_THRESHOLD": "8MiB",
           "MULTIPART_CHUNKSIZE": "5MiB", "PART_CONCURRENCY": "3", "STREAM_MEMORY": "16MiB", **extra}
    settings = load(env)
    return ObjectCopier.from_settings(settings, UploadJournal(None, "test"), threading.Event())


def listed_row(route, server, rest: str) -> Row:
    """The row the seeder would make, from a real listing (size, ETag and storage class)."""
    (obj,) = server.client().list_objects_v2(Bucket=route.old_bucket, Prefix=route.old(rest))["Contents"]
    return Row(1, route.old_bucket, obj["Key"], route.new_bucket, route.new(rest), obj["Size"],
               s3.bare_etag(obj["ETag"]), 1, obj.get("StorageClass"))


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
    copier = copier_for(route, servers, source, dest, mode, identity, NEW_ACL="public-read", NEW_SSE="AES256",
                        WEBSITE_REDIRECTS="always")
    row = listed_row(route, servers[source], "obj.webp")
    assert row.storage_class == "STANDARD_IA"

    copied = copier.copy(row)

    path = paths[size == LARGE]
    assert (copied.method, copied.verified_by, copied.size) == (path, PROOF[path], size)
    admin = servers[dest].client()
    got = admin.get_object(Bucket=route.new_bucket, Key=route.new("obj.webp"))
    assert hashlib.md5(got["Body"].read()).hexdigest() == hashlib.md5(body).hexdigest()
    for attr in CONTENT:
        assert got.get(attr) == ATTRS[attr], attr
    if KEEPS_REDIRECT[dest] and KEEPS_REDIRECT[source]:
        assert got.get("WebsiteRedirectLocation") == ATTRS["WebsiteRedirectLocation"]
    assert got.get("ServerSideEncryption") == "AES256"
    tags = admin.get_object_tagging(Bucket=route.new_bucket, Key=route.new("obj.webp"))["TagSet"]
    assert sorted((t["Key"], t["Value"]) for t in tags) == [("kind", "avatar"), ("team", "web")]
    grants = admin.get_object_acl(Bucket=route.new_bucket, Key=route.new("obj.webp"))["Grants"]
    assert any(g["Grantee"].get("URI", "").endswith("/AllUsers") and g["Permission"] == "READ" for g in grants)
    if path == "stream":
        assert copied.checksum == f"md5:{hashlib.md5(body).hexdigest()}"


def test_redirects_follow_the_setting_on_the_server_side_hot_path(route, servers):
    """AWS's CopyObject never carries a website redirect, so `always` reads it with a HEAD and writes
    every attribute explicitly; `never` sends the plain copy. (moto copies the redirect by itself, so the
    requests are what this test watches, through botocore's own event hooks: hence the boto3 engine;
    test_engine.py shows the crt engine sends the same `extra` as the same headers.)"""
    client = servers["moto"].client()
    client.put_object(Bucket=route.old_bucket, Key=route.old("r"), Body=b"r", **ATTRS)
    for setting in ("always", "never"):
        copier = copier_for(route, servers, "moto", "moto", "auto", WEBSITE_REDIRECTS=setting, COPY_ENGINE="boto3")
        sent = []
        copier.dest.meta.events.register("before-call.s3.CopyObject", lambda params, **kw: sent.append(params))
        copier.copy(listed_row(route, servers["moto"], "r"))
        (params,) = sent
        headers = {k.lower(): v for k, v in params["headers"].items()}
        if setting == "always":
            assert headers["x-amz-metadata-directive"] == "REPLACE"
            assert headers["x-amz-website-redirect-location"] == ATTRS["WebsiteRedirectLocation"]
            assert headers["content-type"] == ATTRS["ContentType"] and headers["x-amz-meta-owner"] == "user-42"
        else:
            assert "x-amz-metadata-directive" not in headers and "x-amz-website-redirect-location" not in headers
        head = client.head_object(Bucket=route.new_bucket, Key=route.new("r"))
        assert head["ContentType"] == ATTRS["ContentType"] and head["Metadata"] == ATTRS["Metadata"]


def test_empty_objects_on_every_path(route, servers):
    servers["seaweedfs"].client().put_object(Bucket=route.old_bucket, Key=route.old("empty"), Body=b"",
                                             ContentType="text/plain")
    for mode, method in (("server", "copy"), ("stream", "stream")):
        copied = copier_for(route, servers, "seaweedfs", "seaweedfs", mode).copy(
            listed_row(route, servers["seaweedfs"], "empty"))
        assert (copied.method, copied.size) == (method, 0)
        got = servers["seaweedfs"].client().get_object(Bucket=route.new_bucket, Key=route.new("empty"))
        assert got["Body"].read() == b"" and got["ContentType"] == "text/plain"
