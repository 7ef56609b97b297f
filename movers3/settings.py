"""One typed settings object, built and validated once from the environment and the CLI flags.

Every option has an environment variable (the original tool's names and defaults) and, unless it
holds a secret, a flag that overrides it. Secrets come from the environment only, so that they never
appear in a process listing.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from movers3 import routes
from movers3.exceptions import ConfigError

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB

# A container's metrics must be reachable from outside it; outside a container pass 127.0.0.1.
DEFAULT_METRICS_HOST = "0.0.0.0"
# Above the worker loop's longest idle wait (10 s), below the ledger's reconnect window (120 s).
DEFAULT_HEALTH_MAX_AGE = 60
# An idle worker's loop passes every 10 s (worker.POLL_MAX_SECONDS): a shorter limit would flap.
MIN_HEALTH_MAX_AGE = 15


class Secret:
    """A string that prints as *** wherever it ends up: repr, str, f-strings, logs."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"


@dataclasses.dataclass(frozen=True)
class MysqlUrl:
    """`MYSQL_URL` in its SQLAlchemy form, parsed without SQLAlchemy."""

    user: str
    password: Secret
    host: str
    port: int
    database: str
    unix_socket: str | None = None

    def safe(self) -> str:
        where = self.unix_socket or f"{self.host}:{self.port}"
        return f"mysql://{self.user}@{where}/{self.database}"


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """One side of the copy: `OLD_*` for the source, `NEW_*` for the destination, each falling back
    to the shared `URL_ENDPOINT` / `AWS_*` values."""

    url: str
    access_key: str | None
    secret_key: Secret | None
    region: str
    addressing_style: str
    timeout_seconds: int = 300

    def same_service_as(self, other: Endpoint) -> bool:
        return self.url == other.url

    def can_copy_from(self, other: Endpoint) -> bool:
        """Server-side copy is possible when this side's credentials can read the other side's
        objects through the same service: same endpoint and same access key."""
        return self.url == other.url and self.access_key == other.access_key and self.secret_key == other.secret_key


@dataclasses.dataclass(frozen=True)
class Settings:
    source: Endpoint
    dest: Endpoint
    old_bucket: str
    old_prefix: str
    new_bucket: str
    new_prefix: str
    mysql: MysqlUrl
    load_files: bool
    worker_threads: int
    lease_seconds: int
    max_attempts: int
    multipart_threshold: int
    multipart_chunksize: int
    claim_batch: int
    log_format: str
    log_level: str
    copy_mode: str = "auto"
    new_acl: str | None = None
    new_sse: str | None = None
    new_sse_kms_key_id: str | None = None
    part_concurrency: int = 4
    stream_memory: int = 256 * 1024 * 1024
    website_redirects: str = "auto"
    copy_tags: bool = True
    seed_threads: int = 4
    repoint_sql_file: str | None = None

    # Operating a long-running worker (README, "On ECS" and "Watching a migration"); off unless set.
    metrics_port: int = 0
    metrics_host: str = DEFAULT_METRICS_HOST
    health_file: str | None = None
    health_max_age: int = DEFAULT_HEALTH_MAX_AGE

    @property
    def server_side(self) -> bool:
        """Whether copies go server-side (CopyObject/UploadPartCopy) or stream through the worker."""
        if self.copy_mode == "auto":
            return self.dest.can_copy_from(self.source)
        return self.copy_mode == "server"
    copy_engine: str = "crt"

    def secrets(self) -> list[str]:
        """Every secret value, so that log and error output can be scrubbed of them."""
        values = [self.mysql.password, self.source.secret_key, self.dest.secret_key]
        return [v.reveal() for v in values if v]


# --- the options: one row each, shared by the environment, the CLI and --help ---------------

DEFAULT_URL_ENDPOINT = "http://localhost:8080"
DEFAULT_OLD_BUCKET = "legacy-s3"
DEFAULT_OLD_PREFIX = "images"
DEFAULT_NEW_BUCKET = "production-s3"
DEFAULT_NEW_PREFIX = "avatar"
DEFAULT_MYSQL_URL = "mysql+pymysql://sketchUser:sketchPassword@localhost/sketch"
DEFAULT_WORKER_THREADS = 16
DEFAULT_LEASE_SECONDS = 120
DEFAULT_MAX_ATTEMPTS = 5
DEFAULT_MULTIPART_THRESHOLD = 64 * MIB
DEFAULT_MULTIPART_CHUNKSIZE = 64 * MIB
DEFAULT_CLAIM_BATCH = 64
DEFAULT_PART_CONCURRENCY = 4
CANNED_ACLS = ("private", "public-read", "public-read-write", "authenticated-read", "aws-exec-read",
               "bucket-owner-read", "bucket-owner-full-control")
SSE_MODES = ("AES256", "aws:kms", "aws:kms:dsse")
# The client that sends single-part CopyObject requests (engine.py); chosen by `make bench`.
COPY_ENGINES = ("boto3", "crt")
DEFAULT_COPY_ENGINE = "crt"


@dataclasses.dataclass(frozen=True)
class Option:
    env: str
    default: str | None
    help: str
    secret: bool = False
    # The commands that take this flag; empty means every command.
    commands: tuple[str, ...] = ()

    @property
    def flag(self) -> str:
        return "--" + self.env.lower().replace("_", "-")

    @property
    def dest(self) -> str:
        return self.env.lower()


# The commands that copy objects, where the copy-path flags make sense.
COPYING = ("worker", "run")

OPTIONS: tuple[Option, ...] = (
    Option("URL_ENDPOINT", DEFAULT_URL_ENDPOINT, "S3 endpoint URL"),
    Option("AWS_ACCESS_KEY_ID", None, "S3 access key id (else boto3's default chain)"),
    Option("AWS_SECRET_ACCESS_KEY", None, "S3 secret key", secret=True),
    Option("AWS_REGION", "us-east-1", "S3 region"),
    Option("S3_ADDRESSING_STYLE", "path", "path, virtual or auto"),
    Option("S3_TIMEOUT_SECONDS", "300", "seconds an S3 request may wait for the server (1-3600)"),
    Option("OLD_URL_ENDPOINT", None, "source S3 endpoint [default URL_ENDPOINT]"),
    Option("OLD_AWS_ACCESS_KEY_ID", None, "source access key id [default AWS_ACCESS_KEY_ID]"),
    Option("OLD_AWS_SECRET_ACCESS_KEY", None, "source secret key [default AWS_SECRET_ACCESS_KEY]", secret=True),
    Option("OLD_REGION", None, "source region [default AWS_REGION]"),
    Option("NEW_URL_ENDPOINT", None, "destination S3 endpoint [default URL_ENDPOINT]"),
    Option("NEW_AWS_ACCESS_KEY_ID", None, "destination access key id [default AWS_ACCESS_KEY_ID]"),
    Option("NEW_AWS_SECRET_ACCESS_KEY", None, "destination secret key [default AWS_SECRET_ACCESS_KEY]",
           secret=True),
    Option("NEW_REGION", None, "destination region [default AWS_REGION]"),
    Option("OLD_BUCKET", DEFAULT_OLD_BUCKET, "source bucket"),
    Option("OLD_PREFIX", DEFAULT_OLD_PREFIX, "source folder"),
    Option("NEW_BUCKET", DEFAULT_NEW_BUCKET, "destination bucket"),
    Option("NEW_PREFIX", DEFAULT_NEW_PREFIX, "destination folder"),
    Option("MYSQL_URL", DEFAULT_MYSQL_URL, "ledger database, mysql+pymysql://user:pass@host[:port]/db", secret=True),
    Option("LOAD_FILES", "false", "`run` loads sample objects first"),
    Option("WORKER_THREADS", str(DEFAULT_WORKER_THREADS), "concurrent copies per worker process (1-256)", commands=COPYING),
    Option("LEASE_SECONDS", str(DEFAULT_LEASE_SECONDS), "how long a claim lives without renewal (5-86400)", commands=COPYING),
    Option("MAX_ATTEMPTS", str(DEFAULT_MAX_ATTEMPTS), "copy attempts before a row is failed (1-100)"),
    Option("MULTIPART_THRESHOLD", "64MiB", "objects this size or larger use multipart copy", commands=COPYING),
    Option("MULTIPART_CHUNKSIZE", "64MiB", "part size for multipart copy (5MiB-5GiB)", commands=COPYING),
    Option("CLAIM_BATCH", str(DEFAULT_CLAIM_BATCH), "rows claimed per transaction (1-1000)", commands=COPYING),
    Option("COPY_MODE", "auto", "server (CopyObject), stream (GET then PUT through the worker), or auto: "
           "server when both sides share endpoint and credentials", commands=COPYING),
    Option("PART_CONCURRENCY", str(DEFAULT_PART_CONCURRENCY), "parts of one large object copied at once (1-64)", commands=COPYING),
    Option("STREAM_MEMORY", "256MiB", "part buffers a worker process may hold while streaming (>= one part)", commands=COPYING),
    Option("NEW_ACL", None, "canned ACL applied to each new object with PutObjectAcl, e.g. bucket-owner-full-control", commands=COPYING),
    Option("NEW_SSE", None, "server-side encryption of new objects: AES256, aws:kms or aws:kms:dsse", commands=COPYING),
    Option("NEW_SSE_KMS_KEY_ID", None, "KMS key for NEW_SSE=aws:kms", commands=COPYING),
    Option("WEBSITE_REDIRECTS", "auto", "carry x-amz-website-redirect-location: always (one HEAD per object), "
           "never, or auto (multipart, streamed and zero-byte objects)", commands=COPYING),
    Option("COPY_TAGS", "true", "carry object tags (needs s3:GetObjectTagging/PutObjectTagging on AWS)", commands=COPYING),
    Option("COPY_ENGINE", DEFAULT_COPY_ENGINE, "client for single-part copies: boto3 or crt (awscrt)",
           commands=COPYING),
    Option("SEED_THREADS", "4", "parts of the source a seed process lists at once (1-64); run more seed "
           "processes anywhere to list more"),
    Option("REPOINT_SQL_FILE", None, "a file holding one UPDATE of the application's table, run for each row "
           "finished as done in the same transaction (README, \"Re-pointing\")"),
    Option("LOG_FORMAT", "auto", "json, console, or auto (console on a terminal, else json)"),
    Option("LOG_LEVEL", "info", "debug, info, warning or error"),
    Option("METRICS_PORT", "0", "serve Prometheus metrics and /healthz on this port (0: off; needs movers3[metrics])",
           commands=("worker",)),
    Option("METRICS_HOST", DEFAULT_METRICS_HOST, "address the metrics server listens on", commands=("worker",)),
    Option("HEALTH_FILE", "", "heartbeat file for `movers3 healthcheck` (empty: none)",
           commands=("worker", "healthcheck")),
    Option("HEALTH_MAX_AGE", str(DEFAULT_HEALTH_MAX_AGE),
           "seconds since the worker loop last passed after which it counts as stuck (15-86400)",
           commands=("worker", "healthcheck")),
)
OPTION_BY_ENV = {o.env: o for o in OPTIONS}

_BUCKET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,253}[A-Za-z0-9]$")
_REGION = re.compile(r"^[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$")
_SIZE = re.compile(r"^\s*(\d+)\s*(|b|kib|mib|gib|tib|kb|mb|gb|tb)\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "kib": KIB, "mib": MIB, "gib": GIB, "tib": 1024 * GIB,
               "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4}


def load(environ: Mapping[str, str], overrides: Mapping[str, Any] | None = None) -> Settings:
    """Build the settings from the environment with CLI overrides (keyed by env name) on top."""
    raw = {o.env: o.default for o in OPTIONS}
    raw.update({k: v for k, v in environ.items() if k in OPTION_BY_ENV})
    raw.update({k: str(v) for k, v in (overrides or {}).items() if v is not None})

    def text(name: str) -> str:
        return (raw.get(name) or "").strip()

    style = _choice("S3_ADDRESSING_STYLE", text("S3_ADDRESSING_STYLE"), ("path", "virtual", "auto"))
    timeout = _int("S3_TIMEOUT_SECONDS", text("S3_TIMEOUT_SECONDS"), 1, 3600)

    def endpoint(side: str) -> Endpoint:
        def pick(name: str, shared: str) -> tuple[str, str]:
            own = f"{side}_{name}"
            return (own, text(own)) if text(own) else (shared, text(shared))

        url_name, url = pick("URL_ENDPOINT", "URL_ENDPOINT")
        secret_name = f"{side}_AWS_SECRET_ACCESS_KEY"
        secret = raw.get(secret_name) if raw.get(secret_name) else raw.get("AWS_SECRET_ACCESS_KEY")
        return Endpoint(
            url=_endpoint_url(url_name, url),
            access_key=pick("AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID")[1] or None,
            secret_key=Secret(secret) if secret else None,
            region=_region(*pick("REGION", "AWS_REGION")),
            addressing_style=style,
            timeout_seconds=timeout,
        )

    source, dest = endpoint("OLD"), endpoint("NEW")
    old_bucket = _bucket("OLD_BUCKET", text("OLD_BUCKET"))
    new_bucket = _bucket("NEW_BUCKET", text("NEW_BUCKET"))
    old_prefix = routes.check_prefix("OLD_PREFIX", raw.get("OLD_PREFIX") or "")
    new_prefix = routes.check_prefix("NEW_PREFIX", raw.get("NEW_PREFIX") or "")
    # Two endpoints are two namespaces: the same bucket name on each is two buckets.
    if source.same_service_as(dest) and routes.overlaps(old_bucket, old_prefix, new_bucket, new_prefix):
        raise ConfigError(
            "NEW_BUCKET/NEW_PREFIX: must not be equal to, inside, or around OLD_BUCKET/OLD_PREFIX "
            f"({new_bucket}/{new_prefix} vs {old_bucket}/{old_prefix}): the copy would feed on its own output"
        )
    chunksize = _size("MULTIPART_CHUNKSIZE", text("MULTIPART_CHUNKSIZE"), 5 * MIB, 5 * GIB)
    stream_memory = _size("STREAM_MEMORY", text("STREAM_MEMORY"), 5 * MIB, 64 * GIB)
    if stream_memory < chunksize:
        raise ConfigError(f"STREAM_MEMORY: must hold at least one part of MULTIPART_CHUNKSIZE "
                          f"({chunksize // MIB}MiB; got {stream_memory // MIB}MiB)")
    sse = text("NEW_SSE") or None
    if sse is not None:
        _choice("NEW_SSE", sse, SSE_MODES)
    kms_key = text("NEW_SSE_KMS_KEY_ID") or None
    if kms_key and not (sse or "").startswith("aws:kms"):
        raise ConfigError("NEW_SSE_KMS_KEY_ID: needs NEW_SSE=aws:kms or aws:kms:dsse")
    acl = text("NEW_ACL") or None
    if acl is not None:
        _choice("NEW_ACL", acl, CANNED_ACLS)
    return Settings(
        source=source,
        dest=dest,
        old_bucket=old_bucket,
        old_prefix=old_prefix,
        new_bucket=new_bucket,
        new_prefix=new_prefix,
        mysql=parse_mysql_url(raw.get("MYSQL_URL") or ""),
        load_files=_bool("LOAD_FILES", text("LOAD_FILES")),
        worker_threads=_int("WORKER_THREADS", text("WORKER_THREADS"), 1, 256),
        lease_seconds=_int("LEASE_SECONDS", text("LEASE_SECONDS"), 5, 86400),
        max_attempts=_int("MAX_ATTEMPTS", text("MAX_ATTEMPTS"), 1, 100),
        multipart_threshold=_size("MULTIPART_THRESHOLD", text("MULTIPART_THRESHOLD"), 5 * MIB, 5 * GIB),
        multipart_chunksize=chunksize,
        claim_batch=_int("CLAIM_BATCH", text("CLAIM_BATCH"), 1, 1000),
        log_format=_choice("LOG_FORMAT", text("LOG_FORMAT").lower(), ("auto", "json", "console")),
        log_level=_choice("LOG_LEVEL", text("LOG_LEVEL").lower(), ("debug", "info", "warning", "error")),
        copy_mode=_choice("COPY_MODE", text("COPY_MODE").lower(), ("auto", "server", "stream")),
        new_acl=acl,
        new_sse=sse,
        new_sse_kms_key_id=kms_key,
        part_concurrency=_int("PART_CONCURRENCY", text("PART_CONCURRENCY"), 1, 64),
        stream_memory=stream_memory,
        website_redirects=_choice("WEBSITE_REDIRECTS", text("WEBSITE_REDIRECTS").lower(),
                                  ("auto", "always", "never")),
        copy_tags=_bool("COPY_TAGS", text("COPY_TAGS")),
        metrics_port=_int("METRICS_PORT", text("METRICS_PORT"), 0, 65535),
        metrics_host=text("METRICS_HOST") or DEFAULT_METRICS_HOST,
        health_file=text("HEALTH_FILE") or None,
        health_max_age=parse_health_max_age(text("HEALTH_MAX_AGE")),
        copy_engine=_copy_engine(text("COPY_ENGINE").lower()),
        seed_threads=_int("SEED_THREADS", text("SEED_THREADS"), 1, 64),
        repoint_sql_file=text("REPOINT_SQL_FILE") or None,
    )


def parse_health_max_age(value: str) -> int:
    return _int("HEALTH_MAX_AGE", value.strip(), MIN_HEALTH_MAX_AGE, 86400)


def parse_mysql_url(value: str) -> MysqlUrl:
    """`mysql+pymysql://user:pass@host[:port]/db[?unix_socket=/path]`. Errors never quote the value:
    it holds the password."""
    name = "MYSQL_URL"
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        raise ConfigError(f"{name}: is not a URL of the form mysql+pymysql://user:pass@host[:port]/db") from None
    if parts.scheme not in ("mysql", "mysql+pymysql", "mariadb", "mariadb+pymysql"):
        raise ConfigError(f"{name}: scheme must be mysql+pymysql:// (got {parts.scheme or 'none'!r})")
    query = parse_qs(parts.query)
    unknown = sorted(set(query) - {"unix_socket", "charset"})
    if unknown:
        raise ConfigError(f"{name}: unsupported query parameter(s): {', '.join(unknown)}")
    socket = query.get("unix_socket", [None])[0]
    database = unquote(parts.path.lstrip("/"))
    if not parts.username:
        raise ConfigError(f"{name}: has no user name")
    if not parts.hostname and not socket:
        raise ConfigError(f"{name}: has no host")
    if not database or "/" in database:
        raise ConfigError(f"{name}: must name one database after the host, e.g. .../sketch")
    return MysqlUrl(
        user=unquote(parts.username),
        password=Secret(unquote(parts.password or "")),
        host=parts.hostname or "localhost",
        port=port or 3306,
        database=database,
        unix_socket=socket,
    )


def _endpoint_url(name: str, value: str) -> str:
    # Checked first and never echoed: a password in the URL may hold '#', '/' or '@' and break its parsing.
    if "@" in value:
        raise ConfigError(f"{name}: must not carry credentials; use AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY "
                          "(value not shown)")
    try:
        parts = urlsplit(value)
        parts.hostname  # noqa: B018 (parses the host: a malformed [IPv6] literal raises here)
    except ValueError:
        raise ConfigError(f"{name}: is not a valid URL ({value!r})") from None
    try:
        parts.port
    except ValueError:
        raise ConfigError(f"{name}: has an invalid port ({value!r})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{name}: must be an http:// or https:// URL (got {value!r})")
    return value.rstrip("/")


def _region(name: str, value: str) -> str:
    # botocore refuses other names when the client is built, far from the setting that caused it.
    if value and not _REGION.match(value):
        raise ConfigError(f"{name}: {value!r} is not a valid region name (e.g. us-east-1)")
    return value or "us-east-1"


def _bucket(name: str, value: str) -> str:
    if not _BUCKET.match(value):
        raise ConfigError(f"{name}: {value!r} is not a valid bucket name")
    return value


def _int(name: str, value: str, low: int, high: int) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"{name}: must be a whole number from {low} to {high} (got {value!r})") from None
    if not low <= number <= high:
        raise ConfigError(f"{name}: must be from {low} to {high} (got {number})")
    return number


def _size(name: str, value: str, low: int, high: int) -> int:
    match = _SIZE.match(value)
    if not match:
        raise ConfigError(f"{name}: must be a size such as 64MiB or 8388608 (got {value!r})")
    number = int(match.group(1)) * _SIZE_UNITS[match.group(2).lower()]
    if not low <= number <= high:
        raise ConfigError(f"{name}: must be from {low // MIB}MiB to {high // GIB}GiB (got {value})")
    return number


def _copy_engine(value: str) -> str:
    engine = _choice("COPY_ENGINE", value, COPY_ENGINES)
    if engine == "crt":
        try:
            import awscrt.s3  # noqa: F401
        except ImportError:
            raise ConfigError("COPY_ENGINE: crt needs the awscrt package (pip install awscrt)") from None
    return engine


def _bool(name: str, value: str) -> bool:
    lowered = value.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{name}: must be true or false (got {value!r})")


def _choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ConfigError(f"{name}: must be one of {', '.join(choices)} (got {value!r})")
    return value
