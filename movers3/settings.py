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
    """One side of the copy. Both sides share `URL_ENDPOINT` and `AWS_*` today; the split is here so
    that a source and a destination on different endpoints or accounts need no new plumbing."""

    url: str
    access_key: str | None
    secret_key: Secret | None
    region: str
    addressing_style: str
    timeout_seconds: int = 300

    def same_place_as(self, other: Endpoint) -> bool:
        return self.url == other.url and self.access_key == other.access_key


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
# The client that sends single-part CopyObject requests (engine.py); chosen by `make bench`.
COPY_ENGINES = ("boto3", "crt")
DEFAULT_COPY_ENGINE = "crt"


@dataclasses.dataclass(frozen=True)
class Option:
    env: str
    default: str | None
    help: str
    secret: bool = False

    @property
    def flag(self) -> str:
        return "--" + self.env.lower().replace("_", "-")

    @property
    def dest(self) -> str:
        return self.env.lower()


OPTIONS: tuple[Option, ...] = (
    Option("URL_ENDPOINT", DEFAULT_URL_ENDPOINT, "S3 endpoint URL"),
    Option("AWS_ACCESS_KEY_ID", None, "S3 access key id (else boto3's default chain)"),
    Option("AWS_SECRET_ACCESS_KEY", None, "S3 secret key", secret=True),
    Option("AWS_REGION", "us-east-1", "S3 region"),
    Option("S3_ADDRESSING_STYLE", "path", "path, virtual or auto"),
    Option("S3_TIMEOUT_SECONDS", "300", "seconds an S3 request may wait for the server (1-3600)"),
    Option("OLD_BUCKET", DEFAULT_OLD_BUCKET, "source bucket"),
    Option("OLD_PREFIX", DEFAULT_OLD_PREFIX, "source folder"),
    Option("NEW_BUCKET", DEFAULT_NEW_BUCKET, "destination bucket"),
    Option("NEW_PREFIX", DEFAULT_NEW_PREFIX, "destination folder"),
    Option("MYSQL_URL", DEFAULT_MYSQL_URL, "ledger database, mysql+pymysql://user:pass@host[:port]/db", secret=True),
    Option("LOAD_FILES", "false", "`run` loads sample objects first"),
    Option("WORKER_THREADS", str(DEFAULT_WORKER_THREADS), "concurrent copies per worker process (1-256)"),
    Option("LEASE_SECONDS", str(DEFAULT_LEASE_SECONDS), "how long a claim lives without renewal (5-86400)"),
    Option("MAX_ATTEMPTS", str(DEFAULT_MAX_ATTEMPTS), "copy attempts before a row is failed (1-100)"),
    Option("MULTIPART_THRESHOLD", "64MiB", "objects this size or larger use multipart copy"),
    Option("MULTIPART_CHUNKSIZE", "64MiB", "part size for multipart copy (5MiB-5GiB)"),
    Option("CLAIM_BATCH", str(DEFAULT_CLAIM_BATCH), "rows claimed per transaction (1-1000)"),
    Option("COPY_ENGINE", DEFAULT_COPY_ENGINE, "client for single-part copies: boto3 or crt (awscrt)"),
    Option("LOG_FORMAT", "auto", "json, console, or auto (console on a terminal, else json)"),
    Option("LOG_LEVEL", "info", "debug, info, warning or error"),
)
OPTION_BY_ENV = {o.env: o for o in OPTIONS}

_BUCKET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,253}[A-Za-z0-9]$")
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

    region = text("AWS_REGION") or "us-east-1"
    style = _choice("S3_ADDRESSING_STYLE", text("S3_ADDRESSING_STYLE"), ("path", "virtual", "auto"))
    secret = raw.get("AWS_SECRET_ACCESS_KEY")
    endpoint = Endpoint(
        url=_endpoint_url("URL_ENDPOINT", text("URL_ENDPOINT")),
        access_key=text("AWS_ACCESS_KEY_ID") or None,
        secret_key=Secret(secret) if secret else None,
        region=region,
        addressing_style=style,
        timeout_seconds=_int("S3_TIMEOUT_SECONDS", text("S3_TIMEOUT_SECONDS"), 1, 3600),
    )
    old_bucket = _bucket("OLD_BUCKET", text("OLD_BUCKET"))
    new_bucket = _bucket("NEW_BUCKET", text("NEW_BUCKET"))
    old_prefix = routes.check_prefix("OLD_PREFIX", raw.get("OLD_PREFIX") or "")
    new_prefix = routes.check_prefix("NEW_PREFIX", raw.get("NEW_PREFIX") or "")
    if routes.overlaps(old_bucket, old_prefix, new_bucket, new_prefix):
        raise ConfigError(
            "NEW_BUCKET/NEW_PREFIX: must not be equal to, inside, or around OLD_BUCKET/OLD_PREFIX "
            f"({new_bucket}/{new_prefix} vs {old_bucket}/{old_prefix}): the copy would feed on its own output"
        )
    chunksize = _size("MULTIPART_CHUNKSIZE", text("MULTIPART_CHUNKSIZE"), 5 * MIB, 5 * GIB)
    return Settings(
        source=endpoint,
        dest=endpoint,
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
        copy_engine=_copy_engine(text("COPY_ENGINE").lower()),
    )


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
    parts = urlsplit(value)
    try:
        parts.port
    except ValueError:
        raise ConfigError(f"{name}: has an invalid port ({value!r})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{name}: must be an http:// or https:// URL (got {value!r})")
    if parts.username or parts.password:
        raise ConfigError(f"{name}: must not carry credentials; use AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY")
    return value.rstrip("/")


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
