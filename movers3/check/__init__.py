"""`movers3 check`: the preflight an operator runs before a migration. For one role (docs/permissions.md)
it checks the settings, the ledger (reachable, encrypted as asked, its schema version, the account's
grants against the role's) and S3 (endpoint and credentials and where they come from, each bucket,
and each right the role's file of compose/policies/ grants, given COPY_TAGS and NEW_ACL, proven by a
request that changes nothing, or reported unprovable).

Every check is one line: ok, problem, or unknown (could not be proven either way). Nothing is
written: a right to write is proven by a request the server refuses for another reason once the
right has been checked (a PutObject whose Content-MD5 is wrong on purpose, a PutObjectAcl or a
PutObjectTagging of a key that does not exist, an AbortMultipartUpload of an upload that does not
exist); a right to read by reading one byte, or the tags, of one object.

roles.py says what each role needs, ledger.py checks the ledger, storage.py the S3 side (sides.py:
an endpoint and its credentials; rights.py: the probes of the rights to list and read; writes.py:
those of the rights to write).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from movers3 import routes
from movers3.check.lines import OK, PROBLEM, UNKNOWN, Check
from movers3.check.roles import DEFAULT_ROLE, ROLES

if TYPE_CHECKING:
    from movers3.settings import Settings

__all__ = ["DEFAULT_ROLE", "OK", "PROBLEM", "ROLES", "UNKNOWN", "Check", "exit_code", "render", "run"]


def run(settings: Settings, role_name: str) -> list[Check]:
    # Here, not above: the CLI's parser reads ROLES, and every other command would pay for the
    # database driver and boto3 these bring.
    from movers3.check import ledger
    from movers3.check.storage import Storage

    role = ROLES[role_name]
    mode = "server-side (CopyObject)" if settings.server_side else "streamed (GET, then PUT)"
    old, new = (
        routes.route(settings.old_bucket, settings.old_prefix),
        routes.route(settings.new_bucket, settings.new_prefix),
    )
    route = f"{old} -> {new}"
    checks = [Check("settings", OK, f"role {role_name}; {route}" + (f"; copies {mode}" if role.writes_dest else ""))]
    ledger_checks, sample = ledger.check(settings, role)
    checks += ledger_checks
    checks += Storage(settings, role, sample).run()
    return checks


def exit_code(checks: list[Check]) -> int:
    """0 when every check is ok; 1 otherwise: an unknown is not a pass (docs/operations.md)."""
    return 0 if all(c.status == OK for c in checks) else 1


def render(checks: list[Check]) -> str:
    width = max(len(c.name) for c in checks)
    return "\n".join(f"{c.status:<8} {c.name:<{width}}  {c.detail}" for c in checks)
