"""One typed settings object, built and validated once from the environment and the CLI flags.

GROUPS declares every setting once: its environment variable (the original tool's names and defaults),
default, parser with its range or choices, help, and the commands that read it. load(), the CLI's flags
and --help, and docs/configuration.md (`python -m movers3.settings`) are all made from it. Secrets come
from the environment only, so that they never appear in a process listing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from movers3 import routes, values
from movers3.endpoints import SERVICE_URL, Service
from movers3.exceptions import ConfigError
from movers3.values import GIB, MIB, MysqlUrl, Parser, Secret, parse_mysql_url

# An idle worker's loop passes every 10 s (worker.POLL_MAX_SECONDS): a shorter limit would flap.
MIN_HEALTH_MAX_AGE = 15


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """One side of the copy: `OLD_*` for the source, `NEW_*` for the destination, each falling back
    to the shared `URL_ENDPOINT` / `AWS_*` values."""

    url: str | None  # None: AWS's own endpoint for the region
    access_key: str | None
    secret_key: Secret | None
    region: str | None  # None: the profile's region, else us-east-1 (s3.region)
    addressing_style: str
    # load() always passes it; the default is for endpoints built by hand (tests), and is the declaration's.
    timeout_seconds: int = dataclasses.field(
        default_factory=lambda: int(OPTION_BY_ENV["S3_TIMEOUT_SECONDS"].default or 0)
    )
    profile: str | None = None  # AWS_PROFILE: the shared files' profile for credentials and region
    session_token: Secret | None = None  # AWS_SESSION_TOKEN, with the shared keys it belongs to

    @property
    def service(self) -> Service:
        return Service.of(self.url) if self.url else Service.aws(self.region)

    @property
    def shown(self) -> str:
        """The endpoint for people: its URL, or AWS's."""
        return self.url or f"AWS S3 ({self.region or 'the default region'})"

    def same_service_as(self, other: Endpoint) -> bool:
        return self.service.identity == other.service.identity

    def shares_buckets_with(self, other: Endpoint) -> bool:
        """Whether a bucket name means the same bucket on both sides."""
        return self.service.namespace == other.service.namespace

    def can_copy_from(self, other: Endpoint) -> bool:
        """Server-side copy is possible when this side's credentials can read the other side's
        objects through the same service: same endpoint and same access key."""
        return (
            self.same_service_as(other) and self.access_key == other.access_key and self.secret_key == other.secret_key
        )


@dataclasses.dataclass(frozen=True)
class Settings:
    """Made by load() only, so no defaults here. A field named like a variable (worker_threads,
    WORKER_THREADS) holds its value; source, dest and mysql are made from the S3 and MYSQL_URL ones."""

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
    copy_mode: str
    copy_engine: str
    new_acl: str | None
    new_sse: str | None
    new_sse_kms_key_id: str | None
    part_concurrency: int
    stream_memory: int
    website_redirects: str
    copy_tags: bool
    seed_threads: int
    repoint_sql_file: str | None
    # Operating a long-running worker (README, "On ECS" and "Watching a migration"); off unless set.
    metrics_port: int
    metrics_host: str
    health_file: str | None
    health_max_age: int

    @property
    def server_side(self) -> bool:
        """Whether copies go server-side (CopyObject/UploadPartCopy) or stream through the worker."""
        if self.copy_mode == "auto":
            return self.dest.can_copy_from(self.source)
        return self.copy_mode == "server"

    def secrets(self) -> list[str]:
        """Every secret value, so that log and error output can be scrubbed of them."""
        values = [self.mysql.password, *(e.secret_key for e in (self.source, self.dest))]
        values += [e.session_token for e in (self.source, self.dest)]
        return [v.reveal() for v in values if v]


# --- the declaration ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Option:
    env: str
    default: str | None  # as it would be written in the environment; None: unset
    parser: Parser
    help: str
    commands: tuple[str, ...]  # the commands that read it, and so take its flag
    secret: bool = False  # environment only: a flag would show in the process list
    fallback: str | None = None  # the shared variable read instead when this one is unset or blank
    # The AWS SDKs' own variables, read in this order when this one is absent from the environment
    # (not when it is set blank: `URL_ENDPOINT=` means AWS's endpoint).
    sdk: tuple[str, ...] = ()
    blank_is_default: bool = False  # `X=` (how compose files unset) means the default, not an empty value

    @property
    def flag(self) -> str:
        return "--" + self.env.lower().replace("_", "-")

    @property
    def boolean(self) -> bool:
        return self.parser is values.BOOL

    @property
    def flags(self) -> tuple[str, ...]:
        """The flag, and a boolean's negation (argparse.BooleanOptionalAction)."""
        return (self.flag, f"--no-{self.flag[2:]}") if self.boolean else (self.flag,)

    @property
    def dest(self) -> str:
        return self.env.lower()

    def shown_default(self, quote: Callable[[str], str] = str) -> str:
        if self.fallback:
            return f"as {quote(self.fallback)}"
        default = "none" if self.default is None else quote(self.default)
        return ", ".join([*map(quote, self.sdk), f"else {default}"]) if self.sdk else default


# Who reads what, from each cmd_* function in cli.py and what it calls. healthcheck and completion load
# no settings; the others load and check all of them, but offer the flags of their own settings only.
EVERY = (
    "init",
    "seed",
    "worker",
    "run",
    "status",
    "report",
    "retry",
    "verify",
    "delete-source",
    "plan",
    "load-samples",
    "check",
)
LEDGER = tuple(c for c in EVERY if c != "load-samples")
SOURCE = ("seed", "worker", "run", "verify", "delete-source", "plan", "load-samples", "check")
DEST = ("worker", "run", "verify", "delete-source", "load-samples", "check")
OLD_ROUTE = (
    "seed",
    "worker",
    "run",
    "status",
    "delete-source",
    "plan",
    "load-samples",
    "check",
)  # status --watch shows it
COPYING = ("worker", "run")  # run starts workers, and its flags reach them as variables
CHECKED = (*COPYING, "check")  # what `check` probes of the workers' settings
HEALTH = ("worker", "healthcheck")


def _side(side: str, where: str, commands: tuple[str, ...]) -> tuple[Option, ...]:
    return (
        Option(f"{side}_URL_ENDPOINT", None, SERVICE_URL, f"{where} S3 endpoint", commands, fallback="URL_ENDPOINT"),
        Option(
            f"{side}_AWS_ACCESS_KEY_ID",
            None,
            values.KEY_ID,
            f"{where} access key id",
            commands,
            fallback="AWS_ACCESS_KEY_ID",
        ),
        Option(
            f"{side}_AWS_SECRET_ACCESS_KEY",
            None,
            values.SECRET,
            f"{where} secret key",
            commands,
            secret=True,
            fallback="AWS_SECRET_ACCESS_KEY",
        ),
        Option(f"{side}_REGION", None, values.REGION, f"{where} region", commands, fallback="AWS_REGION"),
    )


# A table, one setting a few lines: kept as written, easier to scan than one argument a line.
# fmt: off
GROUPS: dict[str, tuple[Option, ...]] = {
    "S3": (
        Option("URL_ENDPOINT", "http://localhost:8080", SERVICE_URL, "S3 endpoint of both sides; `aws` or set "
               "empty: AWS's own endpoint for the region", SOURCE, sdk=("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")),
        Option("AWS_ACCESS_KEY_ID", None, values.KEY_ID, "S3 access key id (unset: boto3's default chain)", SOURCE),
        Option("AWS_SECRET_ACCESS_KEY", None, values.SECRET, "S3 secret key (unset: boto3's default chain)", SOURCE,
               secret=True),
        Option("AWS_SESSION_TOKEN", None, values.SECRET, "session token of temporary AWS_ACCESS_KEY_ID keys (not "
               "of OLD_/NEW_ ones)", SOURCE, secret=True),
        Option("AWS_PROFILE", None, values.PROFILE, "profile of the shared AWS files (~/.aws/config, credentials) "
               "for credentials and region", SOURCE),
        Option("AWS_REGION", None, values.REGION, "S3 region (unset: the profile's region, else us-east-1)", SOURCE,
               blank_is_default=True, sdk=("AWS_DEFAULT_REGION",)),
        Option("S3_ADDRESSING_STYLE", "path", values.one_of("path", "virtual", "auto"),
               "bucket in the URL's path, or in its host name (virtual)", SOURCE),
        Option("S3_TIMEOUT_SECONDS", "300", values.whole(1, 3600), "seconds one S3 request may wait for the server",
               SOURCE),
        *_side("OLD", "source", SOURCE),
        *_side("NEW", "destination", DEST),
    ),
    "Route": (
        Option("OLD_BUCKET", "legacy-s3", values.BUCKET, "source bucket", OLD_ROUTE),
        Option("OLD_PREFIX", "images", values.FOLDER, "source folder: images covers images/... and nothing else; "
               "/ is the whole bucket", OLD_ROUTE),
        Option("NEW_BUCKET", "production-s3", values.BUCKET, "destination bucket",
               ("seed", "run", "status", "plan", "load-samples", "check")),
        Option("NEW_PREFIX", "avatar", values.FOLDER, "destination folder: images/a/b.png becomes avatar/a/b.png; "
               "/ is the bucket's root (a/b.png)", ("seed", "run", "status", "plan", "check")),
    ),
    "Ledger": (
        Option("MYSQL_URL", "mysql+pymysql://sketchUser:sketchPassword@localhost/sketch",
               Parser(lambda name, text: parse_mysql_url(text), "mysql+pymysql://user:pass@host[:port]/db",
                      strip=False), "the ledger database (?unix_socket=/path; TLS: ?ssl_ca=FILE, see "
               "docs/operations.md)", LEDGER, secret=True),
        Option("LEASE_SECONDS", "120", values.whole(5, 86400), "how long a claimed row or seed part is held without "
               "renewal (renewed every third of it)", ("seed", "worker", "run")),
        Option("MAX_ATTEMPTS", "5", values.whole(1, 100),
               "copy attempts before a row is failed; tries of each listing request and of each HEAD of a CSV seed",
               ("seed", "worker", "run", "plan")),
        Option("CLAIM_BATCH", "64", values.whole(1, 1000), "rows claimed per transaction", COPYING),
        Option("REPOINT_SQL_FILE", None, values.PATH, "a file holding one UPDATE of the application's table, run "
               "in the transaction that marks each row done (README, \"Re-pointing\")", CHECKED),
    ),
    "Seed": (
        Option("SEED_THREADS", "4", values.whole(1, 64), "parts of the source one process lists at once; run more seed "
               "processes anywhere to list more", ("seed", "run", "plan")),
        Option("LOAD_FILES", "false", values.BOOL, "run puts sample objects in the source first", ("run",)),
    ),
    "Copy": (
        Option("WORKER_THREADS", "16", values.whole(1, 256), "concurrent copies per worker process", COPYING),
        Option("COPY_MODE", "auto", values.one_of("auto", "server", "stream", lower=True),
               "server (CopyObject), stream (GET then PUT through the worker), or auto: server when both sides "
               "share endpoint and credentials", CHECKED),
        Option("COPY_ENGINE", "crt", values.one_of("boto3", "crt", lower=True, then=values.engine_installed),
               "client for single-part copies: crt (awscrt) or boto3 (docs/benchmarks.md)", COPYING),
        Option("MULTIPART_THRESHOLD", "64MiB", values.sized(5 * MIB, 5 * GIB),
               "objects this size or larger are copied in parts, if two or more (always above 5GiB)", COPYING),
        Option("MULTIPART_CHUNKSIZE", "64MiB", values.sized(5 * MIB, 5 * GIB),
               "part size, grown as needed to stay within 10,000 parts", COPYING),
        Option("PART_CONCURRENCY", "4", values.whole(1, 64), "parts of one large object copied at once", COPYING),
        Option("STREAM_MEMORY", "256MiB", values.sized(5 * MIB, 64 * GIB),
               "part buffers a worker process may hold while streaming (at least one part)", COPYING),
    ),
    "New objects": (
        Option("NEW_ACL", None, values.one_of("private", "public-read", "public-read-write", "authenticated-read",
                                        "aws-exec-read", "bucket-owner-read", "bucket-owner-full-control",
                                        optional=True, metavar="ACL"),
               "canned ACL applied to each new object with PutObjectAcl", CHECKED),
        Option("NEW_SSE", None, values.one_of("AES256", "aws:kms", "aws:kms:dsse", optional=True),
               "server-side encryption of new objects", CHECKED),
        Option("NEW_SSE_KMS_KEY_ID", None, values.KEY_ID, "KMS key for NEW_SSE=aws:kms or aws:kms:dsse", CHECKED),
        Option("WEBSITE_REDIRECTS", "auto", values.one_of("auto", "always", "never", lower=True), "carry "
               "x-amz-website-redirect-location: always (one HEAD per object), never, or auto (multipart, "
               "streamed and zero-byte objects)", COPYING),
        Option("COPY_TAGS", "true", values.BOOL,
               "carry object tags (needs s3:GetObjectTagging/PutObjectTagging on AWS)", COPYING),
    ),
    "Operation": (
        Option("LOG_FORMAT", "auto", values.one_of("auto", "json", "console", lower=True),
               "auto: console on a terminal, else json", EVERY),
        Option("LOG_LEVEL", "info", values.one_of("debug", "info", "warning", "error", lower=True),
               "debug adds one object_copied event per object", EVERY),
        Option("METRICS_PORT", "0", values.whole(0, 65535),
               "serve Prometheus metrics and /healthz on this port (0: off; needs movers3[metrics]); run's "
               "workers take the variable's port, +1, +2, ...", ("worker",)),
        # A container's metrics must be reachable from outside it; outside a container pass 127.0.0.1.
        Option("METRICS_HOST", "0.0.0.0", Parser(lambda name, text: text, "address", "HOST"),
               "address the metrics server listens on", ("worker",), blank_is_default=True),
        Option("HEALTH_FILE", None, values.PATH, "heartbeat file for movers3 healthcheck", HEALTH),
        # Above the worker loop's longest idle wait (10 s), below the ledger's reconnect window (120 s).
        Option("HEALTH_MAX_AGE", "60", values.whole(MIN_HEALTH_MAX_AGE, 86400),
               "seconds since the worker loop last passed after which it counts as stuck", HEALTH),
    ),
}
# fmt: on
OPTIONS: tuple[Option, ...] = tuple(option for group in GROUPS.values() for option in group)
OPTION_BY_ENV: dict[str, Option] = {o.env: o for o in OPTIONS}
# The shared S3 variables are read through the OLD_*/NEW_* ones only, so that a value no side uses is not checked.
_SHARED = {o.fallback for o in OPTIONS if o.fallback}
# `movers3 healthcheck` judges a heartbeat without loading the settings.
DEFAULT_HEALTH_MAX_AGE = int(OPTION_BY_ENV["HEALTH_MAX_AGE"].default or 0)


def load(environ: Mapping[str, str], overrides: Mapping[str, Any] | None = None) -> Settings:
    """Build the settings from the environment with CLI overrides (keyed by env name) on top. Every
    variable is read and checked, whichever command runs."""
    given: dict[str, str | None] = {o.env: o.default for o in OPTIONS}
    named = {o.env: o.env for o in OPTIONS}  # the variable each value was read from, for its errors
    for option in OPTIONS:
        if option.env in environ:
            given[option.env] = environ[option.env]
            continue
        for sdk in option.sdk:
            if environ.get(sdk, "").strip():
                given[option.env], named[option.env] = environ[sdk], sdk
                break
    for env, flag in (overrides or {}).items():
        if flag is not None:
            given[env], named[env] = str(flag), env

    def value(option: Option) -> Any:
        text = given.get(option.env) or ""
        text = text.strip() if option.parser.strip else text
        if not text and option.fallback:
            return value(OPTION_BY_ENV[option.fallback])
        text = (text or option.default or "") if option.blank_is_default else text
        return option.parser.read(named[option.env], text)

    v = {o.env: value(o) for o in OPTIONS if o.env not in _SHARED}

    shared_key = value(OPTION_BY_ENV["AWS_ACCESS_KEY_ID"])

    def endpoint(side: str) -> Endpoint:
        key = v[f"{side}_AWS_ACCESS_KEY_ID"]
        return Endpoint(
            url=v[f"{side}_URL_ENDPOINT"],
            access_key=key,
            secret_key=v[f"{side}_AWS_SECRET_ACCESS_KEY"],
            region=v[f"{side}_REGION"],
            addressing_style=v["S3_ADDRESSING_STYLE"],
            timeout_seconds=v["S3_TIMEOUT_SECONDS"],
            profile=v["AWS_PROFILE"],
            # A token is one with its keys: a side with keys of its own has none of the shared one.
            session_token=v["AWS_SESSION_TOKEN"] if key and key == shared_key else None,
        )

    fields = {f.name for f in dataclasses.fields(Settings)}
    s = Settings(
        source=endpoint("OLD"),
        dest=endpoint("NEW"),
        mysql=v["MYSQL_URL"],
        **{o.dest: v[o.env] for o in OPTIONS if o.dest in fields},
    )
    # Two services are two namespaces, where the same bucket name is two buckets; one service written
    # two ways is one (and on AWS, every region's endpoint reaches every bucket of the partition).
    if s.source.shares_buckets_with(s.dest) and routes.overlaps(s.old_bucket, s.old_prefix, s.new_bucket, s.new_prefix):
        raise ConfigError(
            "NEW_BUCKET/NEW_PREFIX: must not be equal to, inside, or around OLD_BUCKET/OLD_PREFIX "
            f"({routes.route(s.new_bucket, s.new_prefix)} vs {routes.route(s.old_bucket, s.old_prefix)}): "
            "the copy would feed on its own output"
        )
    if s.stream_memory < s.multipart_chunksize:
        raise ConfigError(
            f"STREAM_MEMORY: must hold at least one part of MULTIPART_CHUNKSIZE "
            f"({s.multipart_chunksize // MIB}MiB; got {s.stream_memory // MIB}MiB)"
        )
    if s.new_sse_kms_key_id and not (s.new_sse or "").startswith("aws:kms"):
        raise ConfigError("NEW_SSE_KMS_KEY_ID: needs NEW_SSE=aws:kms or aws:kms:dsse")
    return s


def parse_health_max_age(value: str) -> int:
    return OPTION_BY_ENV["HEALTH_MAX_AGE"].parser.read("HEALTH_MAX_AGE", value.strip())


_DOCS_INTRO = """\
# Configuration

<!-- Generated from the declaration in movers3/settings.py: edit that, then run `make docs`. -->

Every setting is an environment variable, with the original tool's names and defaults, read and checked
by every command but `healthcheck` and `completion` (a bad value stops it with one line naming the
variable, and exit code 2). A flag overrides its variable for one command, and each command offers only
the flags of the settings it uses: the Commands column (*all*: every command but those two), or
`movers3 COMMAND --help`. Secrets (the S3 secret keys, and `MYSQL_URL` for its password) have no flag, so
that they never show in a process listing. An `OLD_*` or `NEW_*` S3 variable that is unset or blank takes
the shared one's value. Sizes are bytes or take a unit (`64MiB`, `5GiB`, `10MB`); booleans are
`true`/`false`, `1`/`0`, `yes`/`no` or `on`/`off`, and their flags come in pairs (`--copy-tags`,
`--no-copy-tags`). `--log-format`, `--log-level` and `--debug` (tracebacks with errors) may come before
the command or after it.
"""


def reference_markdown() -> str:
    """docs/configuration.md: a table per group of the declaration."""

    def code(text: str) -> str:
        return f"`{text}`"

    lines = [_DOCS_INTRO.rstrip("\n")]
    for group, options in GROUPS.items():
        lines += [
            "",
            f"## {group}",
            "",
            "| Variable | Flag | Default | Range or choices | Commands | Description |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for o in options:
            cells = (
                code(o.env),
                "(environment only)" if o.secret else " ".join(map(code, o.flags)),
                o.shown_default(code),
                o.parser.accepts or "-",
                "*all*" if o.commands == EVERY else ", ".join(o.commands),
                o.help,
            )
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # python -m movers3.settings > docs/configuration.md
    print(reference_markdown(), end="")
