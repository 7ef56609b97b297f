"""The copy against a real SeaweedFS, with the worker's least-privilege identity."""

import hashlib
import os
import threading

import pytest

from movers3.exceptions import CopyError, SourceChanged
from movers3.ledger.uploads import UploadJournal
from movers3.ledger.work import Row
from movers3.settings import load
from movers3.transfer import s3
from movers3.transfer.copier import ObjectCopier
from movers3.values import MIB
from tests.support.helpers import BASIC_ATTRIBUTES

pytestmark = pytest.mark.integration

ATTRS = BASIC_ATTRIBUTES


def copier(route, identity="worker"):
    settings = load(route.env(identity, "m3_worker", MULTIPART_THRESHOLD="8MiB", MULTIPART_CHUNKSIZE="5MiB"))
    return ObjectCopier.from_settings(settings, UploadJournal(None, "test"), threading.Event())


def row_for(route, rest, body):
    head = route.stack.s3.client().head_object(Bucket=route.old_bucket, Key=route.old(rest))
    return Row(
        1, route.old_bucket, route.old(rest), route.new_bucket, route.new(rest), len(body), head["ETag"].strip('"'), 1
    )


def assert_attrs_kept(route, rest, body):
    got = route.read_new(rest)
    assert hashlib.md5(got["Body"].read()).hexdigest() == hashlib.md5(body).hexdigest()
    for name in ("ContentType", "CacheControl", "ContentDisposition", "ContentLanguage", "Metadata"):
        assert got[name] == ATTRS[name], name


def test_single_copy_keeps_bytes_metadata_and_tags(route):
    body = os.urandom(100_000)
    route.put("one.webp", body, Tagging="team=web&kind=avatar", **ATTRS)
    copied = copier(route).copy(row_for(route, "one.webp", body))
    assert (copied.method, copied.verified_by, copied.size) == ("copy", "etag", len(body))
    assert copied.dest_etag == copied.source_etag == hashlib.md5(body).hexdigest()
    assert_attrs_kept(route, "one.webp", body)
    tags = route.stack.s3.client().get_object_tagging(Bucket=route.new_bucket, Key=route.new("one.webp"))["TagSet"]
    assert sorted((t["Key"], t["Value"]) for t in tags) == [("kind", "avatar"), ("team", "web")]


@pytest.mark.parametrize("identity", ["worker", "admin"])
def test_multipart_copy_keeps_bytes_and_metadata(route, identity):
    body = os.urandom(11 * MIB + 123)
    route.put("big.webp", body, Tagging="team=web", **ATTRS)
    copied = copier(route, identity).copy(row_for(route, "big.webp", body))
    assert (copied.method, copied.verified_by, copied.size) == ("multipart-copy", "size+pinned", len(body))
    assert copied.dest_etag.endswith("-3")
    assert_attrs_kept(route, "big.webp", body)
    if identity == "admin":  # the worker role may lack GetObjectTagging: then tags are logged as not carried
        tags = route.stack.s3.client().get_object_tagging(Bucket=route.new_bucket, Key=route.new("big.webp"))
        assert [(t["Key"], t["Value"]) for t in tags["TagSet"]] == [("team", "web")]


def test_an_object_of_one_part_is_one_copy_object_even_above_the_threshold(route):
    # MULTIPART_THRESHOLD 5 MiB, parts of 8 MiB: 6 MiB would be a multipart copy of one part (HEAD,
    # Create, one UploadPartCopy, Complete); it is one CopyObject, on the hot path too. 9 MiB makes two.
    settings = load(route.env("worker", "m3_worker", MULTIPART_THRESHOLD="5MiB", MULTIPART_CHUNKSIZE="8MiB"))
    one = ObjectCopier.from_settings(settings, UploadJournal(None, "test"), threading.Event())
    small, large = os.urandom(6 * MIB), os.urandom(9 * MIB)
    route.put("six.webp", small, Tagging="team=web", **ATTRS)
    route.put("nine.webp", large, **ATTRS)
    row = row_for(route, "six.webp", small)
    assert one.hot_request(row) is not None
    copied = one.copy(row)
    assert (copied.method, copied.verified_by, copied.dest_etag) == ("copy", "etag", hashlib.md5(small).hexdigest())
    assert_attrs_kept(route, "six.webp", small)
    tags = route.stack.s3.client().get_object_tagging(Bucket=route.new_bucket, Key=route.new("six.webp"))["TagSet"]
    assert [(t["Key"], t["Value"]) for t in tags] == [("team", "web")]
    row = row_for(route, "nine.webp", large)
    assert one.hot_request(row) is None
    copied = one.copy(row)
    assert copied.method == "multipart-copy" and copied.dest_etag.endswith("-2")
    assert_attrs_kept(route, "nine.webp", large)


def test_missing_source_is_a_permanent_error(route):
    row = Row(1, route.old_bucket, route.old("nope"), route.new_bucket, route.new("nope"), 1, "0" * 32, 1)
    with pytest.raises(CopyError) as info:
        copier(route).copy(row)
    assert not info.value.retryable and info.value.code in ("NoSuchKey", "404")


def test_a_changed_source_is_caught_by_its_pinned_etag(route):
    route.put("v.txt", b"version one")
    row = row_for(route, "v.txt", b"version one")
    route.put("v.txt", b"version two!")
    c = copier(route)
    with pytest.raises(SourceChanged):
        c.copy(row)
    size, etag, modified = c.describe_source(row)
    assert (size, etag) == (12, hashlib.md5(b"version two!").hexdigest())
    head = route.stack.s3.client().head_object(Bucket=route.old_bucket, Key=route.old("v.txt"))
    assert modified == head["LastModified"] and modified.tzinfo is not None


def test_the_worker_identity_cannot_read_the_destination(route):
    """The contract the tests rely on: the worker role really is least-privilege here."""
    route.put("p.txt", b"p")
    c = copier(route)
    c.copy(row_for(route, "p.txt", b"p"))
    with pytest.raises(Exception) as info:
        c.dest.head_object(Bucket=route.new_bucket, Key=route.new("p.txt"))
    assert s3.error_code(info.value) in ("403", "AccessDenied")
