"""S3 clients, the one wrapper every request goes through (its failure sorted into our own error
types), and the ETag and checksum rules that prove a copy.

Clients are built here only, so that the copy hot path can be swapped in one place. botocore's own
retries are off: `retry.py` owns the policy, so that MAX_ATTEMPTS means what it says.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import re
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import boto3
import botocore.config
import botocore.credentials
import botocore.exceptions
import botocore.session
from botocore.client import BaseClient

from movers3 import __version__
from movers3.exceptions import ConfigError, CopyError, SourceChanged, StorageError
from movers3.settings import Endpoint
from movers3.transfer import retry
from movers3.values import Secret

CONNECT_TIMEOUT_SECONDS = 10

# Codes worth another try; anything else with a 4xx status is permanent.
RETRYABLE_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestTimeout",
        "RequestTimeTooSkewed",
        "InternalError",
        "ServiceUnavailable",
        "503",
        "500",
        "502",
        "504",
        "OperationAborted",
        "RequestLimitExceeded",
        "TooManyRequests",
        "BandwidthLimitExceeded",
        "ExpiredToken",
    }
)
# Codes that say the whole configuration is wrong, not this object: a worker that meets one stops
# and releases its rows rather than failing every row in the ledger.
SYSTEMIC_CODES = frozenset(
    {
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "NoSuchBucket",
        "InvalidBucketName",
        "AccountProblem",
        "AllAccessDisabled",
        "NoCredentials",
        "InvalidToken",
        "EndpointConnectionError",
    }
)
RETRYABLE_EXCEPTIONS = (
    botocore.exceptions.ConnectionError,  # resets, closed connections, endpoint unreachable
    botocore.exceptions.HTTPClientError,
    botocore.exceptions.ReadTimeoutError,
    botocore.exceptions.ConnectTimeoutError,
    botocore.exceptions.IncompleteReadError,
    botocore.exceptions.ResponseStreamingError,
    # Temporary credentials that could not be refreshed (the container endpoint, IMDS or STS briefly
    # unreachable): botocore raises this only in the last 10 minutes before they expire, and the next
    # try asks again, so it is no reason to fail the row.
    botocore.exceptions.CredentialRetrievalError,
    botocore.exceptions.MetadataRetrievalError,
)


_SESSIONS: dict[tuple[str | None, bool], boto3.session.Session] = {}
_SESSIONS_LOCK = threading.Lock()


def client(endpoint: Endpoint, *, pool_size: int = 10, parse_timestamps: bool = True) -> BaseClient:
    """An S3 client for one side. `parse_timestamps=False` leaves LastModified and the like as the
    server's strings (the AWS CLI does the same): a listing of a million keys need not build a
    million datetimes nobody reads."""
    config = botocore.config.Config(
        region_name=region(endpoint),
        # The endpoint is resolved once, in settings (URL_ENDPOINT, then AWS_ENDPOINT_URL_S3 and
        # AWS_ENDPOINT_URL): None there means AWS's own, which botocore must not then replace.
        ignore_configured_endpoint_urls=True,
        connect_timeout=min(CONNECT_TIMEOUT_SECONDS, endpoint.timeout_seconds),
        # Server-side copies of large parts are one long request (S3 keeps it alive with whitespace).
        read_timeout=endpoint.timeout_seconds,
        retries={"total_max_attempts": 1, "mode": "standard"},
        max_pool_connections=pool_size,
        s3={"addressing_style": endpoint.addressing_style},
        # A fixed User-Agent: botocore otherwise rebuilds it for every request.
        user_agent=f"movers3/{__version__}",
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    session = _session(endpoint.profile, parse_timestamps)
    access, secret, token = _keys(endpoint)
    return session.client(
        "s3",
        endpoint_url=endpoint.url,
        config=config,
        aws_access_key_id=access,
        aws_secret_access_key=secret,
        aws_session_token=token,
    )


def credentials(endpoint: Endpoint) -> botocore.credentials.Credentials | None:
    """The credentials a client of this side signs with (the keys given, else boto3's default chain),
    for an engine that signs its own requests."""
    access, secret, token = _keys(endpoint)
    if access and secret:
        return botocore.credentials.Credentials(access, secret, token)
    return _session(endpoint.profile).get_credentials()


def profile_name(endpoint: Endpoint) -> str:
    """The profile of the shared AWS files a side's default chain reads: AWS_PROFILE, else botocore's
    own (AWS_DEFAULT_PROFILE, else `default`)."""
    return _session(endpoint.profile).profile_name


def region(endpoint: Endpoint) -> str:
    """The side's region: OLD_/NEW_REGION, AWS_REGION or AWS_DEFAULT_REGION (settings), else the
    profile's, else us-east-1 (where a bucket created without a LocationConstraint lives)."""
    return endpoint.region or _session(endpoint.profile).region_name or "us-east-1"


def _keys(endpoint: Endpoint) -> tuple[str | None, str | None, str | None]:
    def reveal(secret: Secret | None) -> str | None:
        return secret.reveal() if secret else None

    return endpoint.access_key, reveal(endpoint.secret_key), reveal(endpoint.session_token)


def _session(profile: str | None, parse_timestamps: bool = True) -> boto3.session.Session:
    """One session per process (and per profile and timestamp mode): it loads S3's service model once,
    where a session per client costs a tenth of a second each, and every client gets its side's keys.
    Its credentials are boto3's default chain (environment, the profile's files, web identity, the
    container's or the instance's role), refreshed by botocore before they expire."""
    with _SESSIONS_LOCK:
        if (profile, parse_timestamps) not in _SESSIONS:
            core = botocore.session.get_session()
            if not parse_timestamps:
                core.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=lambda value: value)
            try:
                session = boto3.session.Session(botocore_session=core, profile_name=profile)
                core.get_scoped_config()  # a profile that isn't there: said now, once, not by every request
                _SESSIONS[profile, parse_timestamps] = session
            except botocore.exceptions.ProfileNotFound:
                raise ConfigError(
                    f"AWS_PROFILE: no profile {profile!r} in the shared AWS config or credentials file"
                ) from None
        return _SESSIONS[profile, parse_timestamps]


# -- versions -----------------------------------------------------------------------------------


def last_modified(value: object) -> datetime | None:
    """An object's LastModified as an aware UTC moment, to the second: S3 keeps no finer (a listing
    prints .000Z, and a HEAD's Last-Modified header is an HTTP date), so a listing, an inventory and a
    HEAD compare alike. Takes a datetime (a client that parses timestamps), an ISO 8601 string (a
    listing read with parse_timestamps=False, an inventory's LastModifiedDate) or an HTTP date (a HEAD
    read with parse_timestamps=False); None or '' is None. Raises ValueError on anything else."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        moment = value
    else:
        text = str(value).strip()
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            try:
                moment = email.utils.parsedate_to_datetime(text)
            except (TypeError, ValueError):
                raise ValueError(f"{text!r} is not a date (ISO 8601 or HTTP)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).replace(microsecond=0)


# -- ETags and checksums ------------------------------------------------------------------------


def bare_etag(etag: str | None) -> str:
    return (etag or "").strip().strip('"')


def quoted_etag(etag: str) -> str:
    """An entity tag as If-Match headers carry it: the ledger keeps ETags bare, and some servers
    (moto) compare the header literally."""
    return f'"{bare_etag(etag)}"'


_MD5 = re.compile(r"[0-9a-fA-F]{32}")


def is_md5(etag: str) -> bool:
    return _MD5.fullmatch(etag) is not None


def composite_etag(md5s: list[str]) -> str:
    """The ETag S3 gives a completed multipart upload: the MD5 of the parts' MD5s, then -N."""
    digest = hashlib.md5(b"".join(bytes.fromhex(m) for m in md5s)).hexdigest()  # noqa: S324 (S3's format)
    return f"{digest}-{len(md5s)}"


def content_md5(md5_hex: str) -> str:
    """An MD5 as the Content-MD5 header carries it (base64 of the digest), for S3 to check the body."""
    return base64.b64encode(bytes.fromhex(md5_hex)).decode("ascii")


def mismatch(what: str, got: str, expected: str) -> CopyError:
    """A copy whose proof failed: retryable (the bytes may have been damaged on the way), and a failed
    row once attempts are spent, never a done one."""
    return CopyError(
        f"{what}: checksum mismatch: got {got!r}, expected {expected!r}", code="ChecksumMismatch", retryable=True
    )


# -- requests and their errors -------------------------------------------------------------------


def request(method: Callable[..., dict], what: str, **params: Any) -> dict:
    """One S3 request, its failure sorted into our error types (`failure`)."""
    try:
        return method(**params)
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
        raise failure(exc, what) from exc


def head_or_none(client: BaseClient, what: str, **params: Any) -> dict | None:
    """HeadObject, or None when the object does not exist (404); other failures as `request`."""
    try:
        return client.head_object(**params)
    except botocore.exceptions.ClientError as exc:
        if status_code(exc) == 404:
            return None
        raise failure(exc, what) from exc
    except botocore.exceptions.BotoCoreError as exc:
        raise failure(exc, what) from exc


def failure(exc: BaseException, what: str) -> CopyError:
    """A failed request as our error: a 412 is a changed source (every request that reads the source
    pins its version with an If-Match), anything else is classified."""
    if isinstance(exc, botocore.exceptions.ClientError) and (
        status_code(exc) == 412 or error_code(exc) == "PreconditionFailed"
    ):
        return SourceChanged()
    return classify(exc, what)


def error_code(exc: BaseException) -> str:
    if isinstance(exc, botocore.exceptions.ClientError):
        error = exc.response.get("Error", {})
        return str(error.get("Code") or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or "Unknown")
    return type(exc).__name__


def status_code(exc: botocore.exceptions.ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)


def classify(exc: BaseException, what: str) -> CopyError:
    """A botocore failure as a CopyError that knows whether it is worth another try."""
    if isinstance(exc, botocore.exceptions.ClientError):
        code, status = error_code(exc), status_code(exc)
        message = exc.response.get("Error", {}).get("Message") or code
        retryable = code in RETRYABLE_CODES or status >= 500 or status == 429
        return CopyError(f"{what}: {code}: {message}", code=code, retryable=retryable)
    if isinstance(exc, RETRYABLE_EXCEPTIONS):
        return CopyError(f"{what}: {type(exc).__name__}: {exc}", code=type(exc).__name__, retryable=True)
    if isinstance(exc, botocore.exceptions.NoCredentialsError):
        return CopyError(
            f"{what}: no S3 credentials found (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)",
            code="NoCredentials",
            retryable=False,
        )
    if isinstance(exc, botocore.exceptions.BotoCoreError):
        return CopyError(f"{what}: {type(exc).__name__}: {exc}", code=type(exc).__name__, retryable=False)
    raise exc


def storage_error(exc: BaseException, what: str) -> StorageError:
    """A failure of a one-off request (listing, bucket checks) as a one-line StorageError."""
    error = classify(exc, what)
    hints = {
        "InvalidAccessKeyId": " (wrong AWS_ACCESS_KEY_ID)",
        "SignatureDoesNotMatch": " (wrong AWS_SECRET_ACCESS_KEY)",
        "NoSuchBucket": " (the bucket does not exist)",
        "AccessDenied": " (the credentials lack the permission)",
        "EndpointConnectionError": " (is URL_ENDPOINT right and the server up?)",
    }
    return StorageError(str(error) + hints.get(error.code, ""))


def list_page(client: BaseClient, params: dict, *, tries: int, stop: threading.Event) -> dict:
    """One ListObjectsV2 request, retried like any copy; a CopyError once the attempts are spent (its
    cause the last botocore error), for the caller to turn into a storage error or to work around."""

    def attempt() -> dict:
        try:
            return client.list_objects_v2(**params)
        except Exception as exc:  # sorted by classify; anything not botocore's is re-raised
            raise classify(exc, f"ListObjectsV2 on bucket {params['Bucket']!r}") from exc

    return retry.call(attempt, tries=tries, stop=stop, attempts=retry.Attempts())


def check_listable(client: BaseClient, bucket: str, prefix: str, *, tries: int) -> None:
    """One cheap request every role may make (ListBucket on the source), retried like any other: it
    catches a wrong endpoint, wrong credentials and a missing bucket before any row is touched."""
    try:
        list_page(client, {"Bucket": bucket, "Prefix": prefix, "MaxKeys": 1}, tries=tries, stop=threading.Event())
    except CopyError as exc:
        raise storage_error(exc.__cause__ or exc, f"cannot list the source bucket {bucket!r}") from exc
