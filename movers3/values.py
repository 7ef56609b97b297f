"""What a setting's text becomes: the units of sizes, the value types that need care (a `Secret`
never prints, a `MysqlUrl` prints without its password), and the parsers that read text into them,
or raise a one-line ConfigError that names the variable."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from pathlib import Path
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
    # TLS, as SQLAlchemy's pymysql dialect passes it through: ssl_ca, ssl_cert, ssl_key (paths), and
    # ssl_verify_cert, ssl_verify_identity (booleans). None: plain TCP.
    tls: tuple[tuple[str, str | bool], ...] | None = None

    def safe(self) -> str:
        where = self.unix_socket or f"{self.host}:{self.port}"
        return f"mysql://{self.user}@{where}/{self.database}" + (" (TLS)" if self.tls else "")


@dataclasses.dataclass(frozen=True)
class Parser:
    read: Callable[[str, str], Any]  # (variable name, text) -> value
    accepts: str = ""  # the range or choices, for --help and the docs
    metavar: str = "VALUE"
    strip: bool = True  # prefixes, secrets and MYSQL_URL are read as given


def whole(low: int, high: int) -> Parser:
    def read(name: str, text: str) -> int:
        try:
            number = int(text)
        except ValueError:
            raise ConfigError(f"{name}: must be a whole number from {low} to {high} (got {text!r})") from None
        if not low <= number <= high:
            raise ConfigError(f"{name}: must be from {low} to {high} (got {number})")
        return number

    return Parser(read, f"{low}-{high}", "N")


_SIZE = re.compile(r"^\s*(\d+)\s*(|b|kib|mib|gib|tib|kb|mb|gb|tb)\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "kib": KIB,
    "mib": MIB,
    "gib": GIB,
    "tib": 1024 * GIB,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
}


def sized(low: int, high: int) -> Parser:
    def read(name: str, text: str) -> int:
        match = _SIZE.match(text)
        if not match:
            raise ConfigError(f"{name}: must be a size such as 64MiB or 8388608 (got {text!r})")
        number = int(match.group(1)) * _SIZE_UNITS[match.group(2).lower()]
        if not low <= number <= high:
            raise ConfigError(f"{name}: must be from {low // MIB}MiB to {high // GIB}GiB (got {text})")
        return number

    return Parser(read, f"{low // MIB}MiB-{high // GIB}GiB", "SIZE")


def one_of(
    *choices: str,
    lower: bool = False,
    optional: bool = False,
    metavar: str = "",
    then: Callable[[str, str], str] = lambda name, value: value,
) -> Parser:
    def read(name: str, text: str) -> str | None:
        if optional and not text:
            return None
        value = text.lower() if lower else text
        if value not in choices:
            raise ConfigError(f"{name}: must be one of {', '.join(choices)} (got {value!r})")
        return then(name, value)

    return Parser(read, ", ".join(choices), metavar or "{" + ",".join(choices) + "}")


def matching(pattern: str, what: str, metavar: str) -> Parser:
    regex = re.compile(pattern)

    def read(name: str, text: str) -> str:
        if not regex.match(text):
            raise ConfigError(f"{name}: {text!r} is not a valid {what}")
        return text

    return Parser(read, what, metavar)


def read_bool(name: str, text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{name}: must be true or false (got {text!r})")


def endpoint_url(name: str, value: str) -> str:
    # Checked first and never echoed: a password in the URL may hold '#', '/' or '@' and break its parsing.
    if "@" in value:
        raise ConfigError(
            f"{name}: must not carry credentials; use AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (value not shown)"
        )
    try:
        parts = urlsplit(value)
        parts.hostname  # noqa: B018 (parses the host: a malformed [IPv6] literal raises here)
    except ValueError:
        raise ConfigError(f"{name}: is not a valid URL ({value!r})") from None
    try:
        parts.port  # noqa: B018 (parses the port: a non-numeric one raises here)
    except ValueError:
        raise ConfigError(f"{name}: has an invalid port ({value!r})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{name}: must be an http:// or https:// URL (got {value!r})")
    return value.rstrip("/")


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
    unknown = sorted(set(query) - {"unix_socket", "charset", *_TLS_FILES, *_TLS_FLAGS})
    if unknown:
        raise ConfigError(f"{name}: unsupported query parameter(s): {', '.join(unknown)}")
    tls = _tls(name, query)
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
        tls=tls,
    )


# MYSQL_URL's TLS parameters: files, and switches (ssl_check_hostname is SQLAlchemy's other name for
# ssl_verify_identity).
_TLS_FILES = ("ssl_ca", "ssl_cert", "ssl_key")
_TLS_FLAGS = {
    "ssl_verify_cert": "ssl_verify_cert",
    "ssl_verify_identity": "ssl_verify_identity",
    "ssl_check_hostname": "ssl_verify_identity",
}


def _tls(name: str, query: dict[str, list[str]]) -> tuple[tuple[str, str | bool], ...] | None:
    found: dict[str, str | bool] = {}
    for key in _TLS_FILES:
        if key in query:
            path = query[key][0]
            if not Path(path).is_file():
                raise ConfigError(f"{name}: {key} names no readable file ({path!r})")
            found[key] = path
    for key, meaning in _TLS_FLAGS.items():
        if key in query:
            found[meaning] = read_bool(f"{name} {key}", query[key][0])
    if "ssl_ca" in found:
        # A CA is given to be checked against: the certificate and the host name it names, unless the
        # URL turns that off (PyMySQL alone would encrypt and check nothing).
        found.setdefault("ssl_verify_cert", True)
        found.setdefault("ssl_verify_identity", True)
    if ("ssl_cert" in found) != ("ssl_key" in found):
        raise ConfigError(f"{name}: ssl_cert and ssl_key go together (a client certificate and its key)")
    return tuple(sorted(found.items())) or None


def engine_installed(name: str, engine: str) -> str:
    if engine == "crt":
        try:
            import awscrt.s3  # noqa: F401
        except ImportError:
            raise ConfigError(f"{name}: crt needs the awscrt package (pip install awscrt)") from None
    return engine


URL = Parser(endpoint_url, "http:// or https:// URL", "URL")
KEY_ID = Parser(lambda name, text: text or None, metavar="KEY_ID")
PROFILE = Parser(lambda name, text: text or None, metavar="PROFILE")
PATH = Parser(lambda name, text: text or None, metavar="PATH")
BOOL = Parser(read_bool, "true, false", "BOOL")
SECRET = Parser(lambda name, text: Secret(text) if text else None, strip=False)
# botocore refuses other region names when the client is built, far from the setting that caused it.
_REGION = matching(r"^[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$", "region name (e.g. us-east-1)", "REGION")
REGION = dataclasses.replace(_REGION, read=lambda name, text: _REGION.read(name, text) if text else None)
BUCKET = matching(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,253}[A-Za-z0-9]$", "bucket name", "BUCKET")
FOLDER = Parser(
    routes.check_prefix,
    "folder (or / for the bucket's root): no leading /, no empty, . or .. segment",
    "FOLDER",
    strip=False,
)
