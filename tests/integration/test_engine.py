"""Both CopyObject engines against the real SeaweedFS, with the worker's least-privilege identity: the
same keys copied, the same attributes kept, the same errors with the same codes and the same
retryable/permanent/systemic sorting. Faults come from the fault-injecting proxy in front of it."""

import hashlib
import threading
import unicodedata

import pytest

from movers3.exceptions import CopyError, SourceChanged
from movers3.ledger.uploads import UploadJournal
from movers3.settings import load
from movers3.transfer import s3
from movers3.transfer.copier import ObjectCopier
from movers3.transfer.copy_object import CopyRequest
from tests.support.faultproxy import FaultProxy
from tests.support.helpers import BASIC_ATTRIBUTES
from tests.support.keys import HOSTILE, LONG
from tests.support.services import free_port

pytestmark = pytest.mark.integration

ENGINES = ["boto3", "crt"]
ATTRS = BASIC_ATTRIBUTES


def engine(route, name, identity="worker", **env):
    settings = load(route.env(identity, "m3_worker", COPY_ENGINE=name, **env))
    chosen = ObjectCopier.from_settings(settings, UploadJournal(None, "test"), threading.Event()).engine
    assert chosen.name == name  # COPY_ENGINE really selects the engine the copier uses
    return chosen


def put(route, rest, body=b"body", **params):
    key = route.put(rest, body, **params)
    etag = route.stack.s3.client().head_object(Bucket=route.old_bucket, Key=key)["ETag"].strip('"')
    return CopyRequest(route.old_bucket, key, etag, route.new_bucket, route.new(rest))


def key_of_1024_bytes(route) -> str:
    """A remainder that makes the destination key exactly 1024 bytes, in segments SeaweedFS keeps."""
    room = 1024 - len(route.new("").encode())
    segments = []
    while room > 201:
        segments.append("k" * 200)
        room -= 201
    segments.append("z" * room)
    rest = "/".join(segments)
    assert len(route.new(rest).encode()) == 1024 and len(route.old(rest).encode()) <= 1024
    return rest


def outcome(fn):
    try:
        fn()
    except CopyError as exc:
        return type(exc).__name__, exc.code, exc.retryable
    return None


@pytest.mark.parametrize("name", ENGINES)
def test_hostile_keys_are_copied_exactly_with_their_attributes(route, name):
    eng = engine(route, name)
    rests = [f"h{i}/{key}" for i, key in enumerate(HOSTILE)] + [LONG, key_of_1024_bytes(route), "a+b c%2Fd?x=1#y"]
    for rest in rests:
        body = rest.encode("utf-8") * 3
        request = put(route, rest, body, **ATTRS)
        assert eng.copy_object(request) == hashlib.md5(body).hexdigest(), repr(rest)
        got = route.read_new(rest)
        assert got["Body"].read() == body, repr(rest)
        for attr in ("ContentType", "CacheControl", "ContentDisposition", "ContentLanguage", "Metadata"):
            assert got[attr] == ATTRS[attr], (repr(rest), attr)
    assert sorted(route.new_keys()) == sorted(route.new(r) for r in rests)
    # Keys that differ only in case, trailing space or normalisation stayed distinct objects.
    nfc, nfd = (unicodedata.normalize(f, "Café.png") for f in ("NFC", "NFD"))
    assert {route.new(f"h{HOSTILE.index(k)}/{k}") for k in (nfc, nfd)} <= set(route.new_keys())


@pytest.mark.parametrize("name", ENGINES)
def test_extra_parameters_become_their_headers(route, name):
    request = put(route, "extra.bin", b"extra", **ATTRS)
    extra = {
        "MetadataDirective": "REPLACE",
        "ContentType": "text/plain",
        "CacheControl": "no-store",
        "Metadata": {"replaced": "yes"},
    }
    engine(route, name).copy_object(
        CopyRequest(
            request.source_bucket, request.source_key, request.source_etag, request.dest_bucket, request.dest_key, extra
        )
    )
    got = route.read_new("extra.bin")
    assert (got["ContentType"], got["CacheControl"], got["Metadata"]) == ("text/plain", "no-store", {"replaced": "yes"})


@pytest.mark.parametrize("name", ENGINES)
def test_a_changed_source_is_refused_by_its_pinned_etag(route, name):
    request = put(route, "v.txt", b"version one")
    route.put("v.txt", b"version two!")
    with pytest.raises(SourceChanged):
        engine(route, name).copy_object(request)
    assert route.new_keys() == []


def test_both_engines_sort_s3_errors_the_same_way(route):
    """Permanent (missing source, no right to write there) and systemic (wrong secret) errors, from
    the real server, give the same type, code and retryability whichever engine sent the request."""
    request = put(route, "e.txt", b"e")
    missing = CopyRequest(route.old_bucket, route.old("missing"), "0" * 32, route.new_bucket, route.new("missing"))
    forbidden = CopyRequest(
        route.old_bucket, request.source_key, request.source_etag, route.old_bucket, route.old("written-by-worker")
    )
    seen = {}
    for name in ENGINES:
        seen[name] = (
            outcome(lambda: engine(route, name).copy_object(missing)),
            outcome(lambda: engine(route, name).copy_object(forbidden)),
            outcome(lambda: engine(route, name, AWS_SECRET_ACCESS_KEY="wrong-secret-xyz").copy_object(request)),
        )
    assert seen["boto3"] == seen["crt"], seen
    missing_seen, forbidden_seen, wrong_secret = seen["crt"]
    assert missing_seen == ("CopyError", "NoSuchKey", False)
    assert forbidden_seen == ("CopyError", "AccessDenied", False)
    assert wrong_secret[1] == "SignatureDoesNotMatch" and wrong_secret[1] in s3.SYSTEMIC_CODES


@pytest.mark.parametrize(
    "kind, expected",
    [
        ("slowdown", ("CopyError", "SlowDown", True)),
        ("internal", ("CopyError", "InternalError", True)),
        ("error200", ("CopyError", "InternalError", True)),
        ("reset", None),
        ("timeout", ("CopyError", "ReadTimeoutError", True)),
    ],
)
def test_faults_are_classified_alike(route, kind, expected):
    request = put(route, f"{kind}.txt", b"fault")
    proxy = FaultProxy(route.stack.s3.url, rates={kind: 1.0} if kind != "timeout" else {})
    if kind == "timeout":
        # Held unanswered until the proxy stops, not closed after a few seconds: a client thread that a
        # loaded machine keeps waiting past that close would see a dropped connection, not its timeout.
        proxy.rules.append(("", "hang"))
    proxy.start()
    try:
        seen = {
            name: outcome(
                lambda: engine(route, name, URL_ENDPOINT=proxy.url, S3_TIMEOUT_SECONDS="2").copy_object(request)
            )
            for name in ENGINES
        }
    finally:
        proxy.stop()
    assert proxy.injected["hang" if kind == "timeout" else kind] == 2
    assert seen["boto3"] == seen["crt"], seen
    if expected is not None:
        assert seen["crt"] == expected
    else:  # a reset: botocore names it after the layer that noticed; both must call it retryable
        assert seen["crt"][2] is True and seen["crt"][1] not in s3.SYSTEMIC_CODES


def test_an_unreachable_endpoint_is_systemic_for_both(route):
    request = CopyRequest(route.old_bucket, route.old("x"), "0" * 32, route.new_bucket, route.new("x"))
    dead = f"http://127.0.0.1:{free_port()}"
    seen = {name: outcome(lambda: engine(route, name, URL_ENDPOINT=dead).copy_object(request)) for name in ENGINES}
    assert seen["boto3"] == seen["crt"] == ("CopyError", "EndpointConnectionError", True), seen
    assert "EndpointConnectionError" in s3.SYSTEMIC_CODES


def test_errors_carry_no_secret(route):
    request = put(route, "s.txt", b"s")
    secret = "wrong-secret-must-not-leak-42"
    for name in ENGINES:
        with pytest.raises(CopyError) as info:
            engine(route, name, AWS_SECRET_ACCESS_KEY=secret).copy_object(request)
        text = str(info.value) + repr(info.value.args)
        assert secret not in text and "worker-secret" not in text, text
