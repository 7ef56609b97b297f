"""The CopyObject engines. The copy hot path is one server-side CopyObject, behind a small interface
so that the client that sends it can be swapped in one place (`COPY_ENGINE`: boto3 or crt) without
touching the rest of the copy.

Everything else (HEAD, multipart, streaming, ACLs) stays on boto3, where API coverage matters more
than the per-request CPU; this request is the one a migration of small objects sends millions of.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime
import email.utils
import ipaddress
import queue
import re
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any, Protocol
from xml.etree import ElementTree

import botocore.credentials
import botocore.exceptions
import botocore.session
from botocore.client import BaseClient

from movers3.exceptions import CopyError
from movers3.settings import Endpoint, Settings
from movers3.transfer import s3


@dataclasses.dataclass(frozen=True)
class CopyRequest:
    """One CopyObject. `extra` holds boto3 parameter names (StorageClass, ServerSideEncryption,
    SSEKMSKeyId, MetadataDirective, ...) so that every engine speaks the same vocabulary."""

    source_bucket: str
    source_key: str
    source_etag: str  # pinned with CopySourceIfMatch: a copy is never of another version
    dest_bucket: str
    dest_key: str
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)


class CopyEngine(Protocol):
    name: str

    def copy_object(self, request: CopyRequest) -> str:
        """Copy and return the destination's ETag (quotes stripped). Raises `SourceChanged` when the
        source no longer has the pinned ETag, and a classified `CopyError` for anything else."""
        ...


class Boto3Engine:
    name = "boto3"

    def __init__(self, dest: BaseClient) -> None:
        self.dest = dest

    def copy_object(self, request: CopyRequest) -> str:
        response = s3.request(
            self.dest.copy_object,
            "CopyObject",
            Bucket=request.dest_bucket,
            Key=request.dest_key,
            CopySource={"Bucket": request.source_bucket, "Key": request.source_key},
            CopySourceIfMatch=s3.quoted_etag(request.source_etag),
            **request.extra,
        )
        return s3.bare_etag(response.get("CopyObjectResult", {}).get("ETag"))


# -- awscrt ------------------------------------------------------------------------------------

# CopyObject parameters that botocore turns into headers through its own handlers (SSE-C keys are
# base64-encoded and get an MD5 computed), so the CRT engine hands such requests to boto3 instead.
_BOTO3_ONLY = frozenset(
    {"SSECustomerKey", "CopySourceSSECustomerKey", "SSECustomerKeyMD5", "CopySourceSSECustomerKeyMD5"}
)
# Parameters the engine sets itself from the CopyRequest.
_OWN = frozenset({"Bucket", "Key", "CopySource", "CopySourceIfMatch"})
# A CopyObject response or error is a few hundred bytes; anything longer is cut, never buffered whole.
_MAX_BODY = 64 * 1024
# After a request is cancelled for taking too long, how long its future may take to settle.
CANCEL_GRACE_SECONDS = 5.0
_SAFE = "-._~"  # RFC 3986 unreserved, as botocore's percent_encode keeps them


def _header_map(model: Any = None) -> dict[str, tuple[str, str, str | None]]:
    """CopyObject's header parameters from botocore's own service model (the boto3 client's, when
    there is one: loading it again costs a tenth of a second), so that `extra` maps to the same
    x-amz-* headers boto3 would send: name -> (header, type, timestamp format)."""
    model = model or botocore.session.get_session().get_service_model("s3")
    shape = model.operation_model("CopyObject").input_shape
    found = {}
    for name, member in shape.members.items():
        where = member.serialization.get("location")
        if where in ("header", "headers") and name not in _OWN:
            found[name] = (member.serialization["name"], member.type_name, member.serialization.get("timestampFormat"))
    return found


def _header_value(name: str, value: object, type_name: str, stamp: str | None) -> str:
    if type_name == "boolean":
        text = "true" if value else "false"
    elif type_name == "timestamp":
        if not isinstance(value, datetime.datetime):
            raise ValueError(f"CopyObject parameter {name} must be a datetime")
        value = value.astimezone(datetime.UTC) if value.tzinfo else value.replace(tzinfo=datetime.UTC)
        text = (
            value.strftime("%Y-%m-%dT%H:%M:%SZ")
            if stamp == "iso8601"
            else email.utils.format_datetime(value, usegmt=True)
        )
    else:
        text = str(value)
    if any(ch in text for ch in "\r\n\0"):
        raise ValueError(f"CopyObject parameter {name} holds a line break")
    return text


class CrtEngine:
    """CopyObject sent by awscrt's S3 client (C: signing, HTTP, connection pool), about a fifth of
    botocore's client CPU per request. awscrt has no CopyObject type, so this is a DEFAULT request
    named "CopyObject" (the CRT then checks a 200 response for an <Error> body, as botocore does) with
    the copy source URL-encoded here. Retries are off: `retry.py` owns the policy. Errors are turned
    into the botocore exception that boto3 would have raised and classified by `s3.classify`, so that
    both engines retry, fail and stop on exactly the same codes."""

    name = "crt"

    def __init__(
        self,
        endpoint: Endpoint,
        credentials: botocore.credentials.Credentials | None,
        fallback: CopyEngine,
        service_model: Any = None,
    ) -> None:
        from awscrt import auth, io  # optional dependency: imported only when chosen
        from awscrt import s3 as crt_s3

        self._crt_s3 = crt_s3
        self.fallback = fallback
        if credentials is None:
            raise CopyError(
                "CopyObject: no S3 credentials found (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)",
                code="NoCredentials",
                retryable=False,
            )
        if not (endpoint.url and endpoint.region):
            raise ValueError("the crt engine takes an endpoint resolved by a boto3 client (from_settings)")
        parts = urllib.parse.urlsplit(endpoint.url)
        self.endpoint_url = endpoint.url
        self.scheme = parts.scheme
        self.authority = parts.netloc
        self.base_path = parts.path.rstrip("/")
        self.style = endpoint.addressing_style
        self.host_is_ip = _is_ip(parts.hostname or "")
        self.timeout = float(endpoint.timeout_seconds)
        self.headers = _header_map(service_model)
        if isinstance(credentials, botocore.credentials.RefreshableCredentials):
            # Temporary credentials (roles, SSO) are refreshed by botocore, as for every other request.
            def current() -> auth.AwsCredentials:
                frozen = credentials.get_frozen_credentials()
                return auth.AwsCredentials(frozen.access_key, frozen.secret_key, frozen.token)

            provider = auth.AwsCredentialsProvider.new_delegate(current)
        else:
            frozen = credentials.get_frozen_credentials()
            provider = auth.AwsCredentialsProvider.new_static(frozen.access_key, frozen.secret_key, frozen.token)
        signing = crt_s3.create_default_s3_signing_config(region=endpoint.region, credential_provider=provider)
        tls = crt_s3.S3RequestTlsMode.ENABLED if self.scheme == "https" else crt_s3.S3RequestTlsMode.DISABLED
        self.client = crt_s3.S3Client(
            bootstrap=io.ClientBootstrap.get_or_create_static_default(),
            region=endpoint.region,
            signing_config=signing,
            tls_mode=tls,
            retry_config=crt_s3.S3RetryConfig(retry_mode=crt_s3.S3RetryMode.NONE),
            connect_timeout_ms=int(min(s3.CONNECT_TIMEOUT_SECONDS, self.timeout) * 1000),
        )

    # -- the request -------------------------------------------------------------------------

    def sends(self, request: CopyRequest) -> bool:
        """Whether this engine sends `request` itself (SSE-C copies go to boto3)."""
        return not _BOTO3_ONLY.intersection(request.extra)

    def copy_object(self, request: CopyRequest) -> str:
        if not self.sends(request):
            return self.fallback.copy_object(request)
        landed: queue.SimpleQueue[tuple[str | None, CopyError | None]] = queue.SimpleQueue()
        cancel = self.start(request, lambda etag, error: landed.put((etag, error)))
        try:
            etag, error = landed.get(timeout=self.timeout)
        except queue.Empty:
            cancel()
            try:
                landed.get(timeout=CANCEL_GRACE_SECONDS)
            except queue.Empty:
                pass
            raise self.timed_out() from None
        if error is not None:
            raise error
        assert etag is not None
        return etag

    def start(self, request: CopyRequest, done: Callable[[str | None, CopyError | None], None]) -> Callable[[], None]:
        """Send `request` without waiting for it: `done(etag, None)` or `done(None, error)` is called
        once, on one of awscrt's threads, with what `copy_object` would return or raise. Returns the
        function that cancels the request (it then ends with an error)."""
        status: list[int] = []
        body = bytearray()

        def on_headers(status_code: int, headers: list, **_: object) -> None:
            status.append(status_code)

        def on_body(chunk: bytes, **_: object) -> None:  # awscrt passes offset= too
            if len(body) < _MAX_BODY:
                body.extend(chunk[: _MAX_BODY - len(body)])

        def finished(future: concurrent.futures.Future) -> None:
            try:
                exc = future.exception()
                if exc is not None:
                    done(None, self._failure(exc, status))
                    return
                etag = self._etag(bytes(body), status[0] if status else 200)
            except CopyError as error:
                done(None, error)
                return
            except Exception as bug:  # on awscrt's thread nobody else would hear of it, and the row would wait
                message = f"CopyObject: internal error: {type(bug).__name__}: {bug}"
                done(None, CopyError(message, code=type(bug).__name__, retryable=False))
                return
            done(etag, None)

        sent = self.client.make_request(
            type=self._crt_s3.S3RequestType.DEFAULT,
            operation_name="CopyObject",
            request=self._http_request(request),
            on_headers=on_headers,
            on_body=on_body,
        )
        sent.finished_future.add_done_callback(finished)
        return sent.cancel

    def timed_out(self) -> CopyError:
        """What a request cancelled for taking longer than S3_TIMEOUT_SECONDS raises."""
        return s3.classify(botocore.exceptions.ReadTimeoutError(endpoint_url=self.endpoint_url), "CopyObject")

    def _http_request(self, request: CopyRequest) -> object:
        from awscrt.http import HttpHeaders, HttpRequest

        bucket, key = request.dest_bucket, request.dest_key
        if self._virtual(bucket):
            host, path = f"{bucket}.{self.authority}", f"{self.base_path}/{_quote(key)}"
        else:
            host, path = self.authority, f"{self.base_path}/{bucket}/{_quote(key)}"
        headers = [
            ("Host", host),
            ("Content-Length", "0"),
            ("x-amz-copy-source", _quote(f"{request.source_bucket}/{request.source_key}")),
            ("x-amz-copy-source-if-match", request.source_etag),
        ]
        for name, value in request.extra.items():
            if name == "Metadata":
                for meta_key, meta_value in value.items():
                    headers.append((f"x-amz-meta-{meta_key}", _header_value(name, meta_value, "string", None)))
                continue
            if name not in self.headers:
                raise ValueError(f"CopyObject has no header parameter {name!r}")
            header, type_name, stamp = self.headers[name]
            headers.append((header, _header_value(name, value, type_name, stamp)))
        return HttpRequest("PUT", path, HttpHeaders(headers))

    def _virtual(self, bucket: str) -> bool:
        if self.style == "path":
            return False
        dns_safe = _DNS_BUCKET.match(bucket) is not None and (self.scheme == "http" or "." not in bucket)
        if self.style == "virtual":
            return True
        return dns_safe and not self.host_is_ip  # auto, as botocore decides for a custom endpoint

    # -- the response ------------------------------------------------------------------------

    def _etag(self, body: bytes, status: int) -> str:
        root = _xml(body)
        if root is None or _local(root.tag) == "Error":
            # A 200 that carries an <Error> (S3 failed after it began to answer): botocore turns it
            # into a 500, and so does this engine, so that it is classified as retryable.
            raise self._classified(500 if status == 200 else status, root, body)
        etag = _child(root, "ETag")
        if etag is None:
            raise self._classified(500, None, body)
        return s3.bare_etag(etag)

    def _failure(self, exc: BaseException, status: list[int]) -> CopyError:
        status_code = getattr(exc, "status_code", None)
        if isinstance(status_code, int) and status_code:
            body = getattr(exc, "body", None) or b""
            return self._classified(status_code, _xml(body[:_MAX_BODY]), body)
        error = _transport_error(exc, self.endpoint_url)
        return error if isinstance(error, CopyError) else s3.classify(error, "CopyObject")

    def _classified(self, status: int, root: ElementTree.Element | None, body: bytes) -> CopyError:
        code = (_child(root, "Code") if root is not None else None) or str(status)
        message = (_child(root, "Message") if root is not None else None) or ""
        error = botocore.exceptions.ClientError(
            {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}, "CopyObject"
        )
        return s3.failure(error, "CopyObject")


_DNS_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def _quote(text: str) -> str:
    return urllib.parse.quote(text, safe=_SAFE + "/")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def _xml(body: bytes) -> ElementTree.Element | None:
    try:
        return ElementTree.fromstring(body) if body.strip() else None
    except ElementTree.ParseError:
        return None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child(root: ElementTree.Element, name: str) -> str | None:
    for child in root:
        if _local(child.tag) == name:
            return (child.text or "").strip()
    return None


# awscrt's transport failures as the botocore exceptions boto3 raises for the same event, so that
# `s3.classify` gives them the same codes: unreachable is systemic, a drop or timeout is retryable.
_UNREACHABLE = (
    "AWS_IO_SOCKET_CONNECTION_REFUSED",
    "AWS_IO_DNS_",
    "AWS_IO_SOCKET_NO_ROUTE_TO_HOST",
    "AWS_IO_SOCKET_NETWORK_DOWN",
    "AWS_IO_SOCKET_INVALID_ADDRESS",
)
_TIMEOUT = ("AWS_IO_SOCKET_TIMEOUT", "AWS_ERROR_HTTP_RESPONSE_FIRST_BYTE_TIMEOUT", "AWS_IO_TLS_NEGOTIATION_TIMEOUT")
_DROPPED = (
    "AWS_IO_SOCKET_CLOSED",
    "AWS_ERROR_HTTP_CONNECTION_CLOSED",
    "AWS_ERROR_HTTP_SERVER_CLOSED",
    "AWS_IO_BROKEN_PIPE",
    "AWS_IO_SOCKET_CONNECT_ABORTED",
    "AWS_ERROR_S3_CANCELED",
    "AWS_ERROR_HTTP_PROTOCOL_ERROR",
    "AWS_ERROR_HTTP_CONNECTION_MANAGER_SHUTTING_DOWN",
    "AWS_IO_TLS_ERROR_",
    "AWS_ERROR_HTTP_",
    "AWS_IO_",
)


# For 503 and 500 responses (and a 200 with an <Error> body) awscrt keeps the body to itself and
# reports only the class: its codes stand in for S3's, with the status that makes them retryable.
_SERVER_CLASSES = {"AWS_ERROR_S3_SLOW_DOWN": ("SlowDown", 503), "AWS_ERROR_S3_INTERNAL_ERROR": ("InternalError", 500)}


def _transport_error(exc: BaseException, url: str) -> BaseException:
    """The botocore exception for an awscrt failure, or a permanent CopyError for one it has no
    counterpart for (boto3 too treats an unknown client-side error as permanent)."""
    name = str(getattr(exc, "name", "") or type(exc).__name__)
    if name in _SERVER_CLASSES:
        code, status = _SERVER_CLASSES[name]
        return botocore.exceptions.ClientError(
            {
                "Error": {"Code": code, "Message": "reported by awscrt without the response body"},
                "ResponseMetadata": {"HTTPStatusCode": status},
            },
            "CopyObject",
        )
    if name.startswith("AWS_AUTH_CREDENTIALS_PROVIDER"):
        # The delegate that asks botocore for the current credentials failed: as on the boto3 path.
        return botocore.exceptions.CredentialRetrievalError(provider="awscrt delegate", error_msg=name)
    if name.startswith(_UNREACHABLE):
        return botocore.exceptions.EndpointConnectionError(endpoint_url=url)
    if name.startswith(_TIMEOUT):
        return (
            botocore.exceptions.ConnectTimeoutError(endpoint_url=url)
            if "SOCKET" in name or "TLS" in name
            else botocore.exceptions.ReadTimeoutError(endpoint_url=url)
        )
    if name.startswith(_DROPPED):
        return botocore.exceptions.ConnectionClosedError(endpoint_url=url)
    return CopyError(f"CopyObject: awscrt: {name}", code=name, retryable=False)


def from_settings(settings: Settings, dest: BaseClient) -> CopyEngine:
    """The engine `COPY_ENGINE` names, sending to the destination with the destination's
    credentials and region (the same ones its boto3 client uses)."""
    boto = Boto3Engine(dest)
    if settings.copy_engine == "crt":
        # The URL and region the boto3 client resolved: AWS's own endpoint when URL_ENDPOINT names none.
        endpoint = dataclasses.replace(settings.dest, url=dest.meta.endpoint_url, region=dest.meta.region_name)
        return CrtEngine(endpoint, s3.credentials(settings.dest), fallback=boto, service_model=dest.meta.service_model)
    return boto
