"""The ledger's checks: reachable, encrypted as MYSQL_URL asks, its schema version, the account's grants
against the role's, and REPOINT_SQL_FILE's statement prepared by the server."""

from __future__ import annotations

from movers3 import routes
from movers3.check.lines import OK, PROBLEM, UNKNOWN, Check
from movers3.check.roles import Role
from movers3.exceptions import ConfigError, LedgerError, SchemaError
from movers3.ledger import account, repoint, schema
from movers3.ledger.db import Database
from movers3.ledger.reads import DoneRow, Reads
from movers3.settings import Settings


def check(settings: Settings, role: Role) -> tuple[list[Check], DoneRow | None]:
    """The ledger's lines, and one copy already verified when the schema is current and the role reads
    the destination or may not list the source: its keys are ones that role can read."""
    url = settings.mysql
    db = Database(url, reconnect_seconds=0)  # a preflight reports an outage, it doesn't wait it out
    try:
        found = account.session(db)
    except LedgerError as exc:
        skipped = "not checked: the ledger database was not reached"
        return [
            Check("ledger", PROBLEM, str(exc)),
            Check("ledger TLS", UNKNOWN, skipped),
            Check("ledger schema", UNKNOWN, skipped),
            Check("ledger grants", UNKNOWN, skipped),
        ], None
    checks = [
        Check("ledger", OK, f"{url.safe()}: server {found.server_version}, account {found.account}"),
        _tls(settings, found),
    ]
    schema_check, current = _schema(db, role, url.database)
    checks += [schema_check, _grants(found, role, url.database)]
    if role.repoints and settings.repoint_sql_file:
        checks.append(_repoint(db, settings.repoint_sql_file))
    sample = None
    if current and (role.reads_dest or not role.lists_source):
        # A copy already verified: the keys a role that may not list the buckets can read.
        try:
            folder = routes.folder_range(routes.folder(settings.old_prefix))
            rows = Reads(db).deletable_page(settings.old_bucket, folder, 0, 1)
            sample = rows[0] if rows else None
        except LedgerError:
            sample = None  # the grants line says what is missing
    db.close()
    return checks, sample


def _tls(settings: Settings, found: account.Session) -> Check:
    tls = dict(settings.mysql.tls or ())
    if not found.cipher:
        if tls:
            return Check("ledger TLS", PROBLEM, "MYSQL_URL asks for TLS, but the session is not encrypted")
        how = "a local socket" if settings.mysql.unix_socket else "MYSQL_URL has no ssl_ca (docs/operations.md)"
        return Check("ledger TLS", OK, f"not encrypted: {how}")
    encrypted = f"encrypted ({found.tls_version} {found.cipher})".replace(" )", ")")
    if tls.get("ssl_verify_cert"):
        checked = "the server's certificate checked against ssl_ca"
        checked += (
            ", and its host name"
            if tls.get("ssl_verify_identity")
            else "; its host name is not (ssl_verify_identity=false)"
        )
    else:
        checked = "the server's certificate is not checked (" + ("ssl_verify_cert=false)" if tls else "no ssl_ca)")
    return Check("ledger TLS", OK, f"{encrypted}; {checked}")


def _schema(db: Database, role: Role, database: str) -> tuple[Check, bool]:
    """The schema line, and whether the schema is current."""
    need = schema.SCHEMA_VERSION
    try:
        version = schema.current_version(db)
    except SchemaError:
        if role.creates_schema:
            return Check("ledger schema", OK, f"not created yet in {database!r}: `movers3 init` creates it"), False
        return Check("ledger schema", PROBLEM, f"missing in {database!r}: run `movers3 init` (migrator role)"), False
    except LedgerError as exc:
        return Check("ledger schema", PROBLEM, f"cannot read the version: {exc}"), False
    if version > need:
        return Check("ledger schema", PROBLEM, f"version {version}, newer than this movers3 knows ({need})"), False
    if version < need:
        if role.creates_schema:
            return Check("ledger schema", OK, f"version {version}: `movers3 init` upgrades it to {need}"), False
        return Check(
            "ledger schema", PROBLEM, f"version {version}, this movers3 needs {need}: run `movers3 init`"
        ), False
    return Check("ledger schema", OK, f"version {version}, as this movers3 needs"), True


def _grants(found: account.Session, role: Role, database: str) -> Check:
    missing = []
    needed: dict[tuple[str, ...], list[str]] = {}
    for table, privileges in role.ledger:
        on = f"{database}.{table or '*'}"
        needed.setdefault(privileges, []).append(table or on)
        lacking = [p for p in privileges if not found.grants.allows(p, database, table)]
        if lacking:
            columns = table is not None and any(found.grants.columns_only(p, database, table) for p in lacking)
            missing.append(f"{', '.join(lacking)} on {on}" + (" (held on some columns only)" if columns else ""))
    if missing:
        return Check("ledger grants", PROBLEM, f"{found.account} lacks {'; '.join(missing)} (docs/permissions.md)")
    held = "; ".join(f"{', '.join(privileges)} on {', '.join(tables)}" for privileges, tables in needed.items())
    return Check("ledger grants", OK, f"{found.account} holds what the role needs: {held}")


def _repoint(db: Database, path: str) -> Check:
    try:
        repoint.check(db, repoint.load(path))
    except (ConfigError, LedgerError) as exc:
        return Check("re-pointing", PROBLEM, str(exc))
    return Check("re-pointing", OK, f"{repoint.SETTING}: the server prepares its UPDATE (tables, columns, privilege)")
