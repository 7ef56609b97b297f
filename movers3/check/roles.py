"""What each role of docs/permissions.md needs: its ledger privileges and its S3 rights (those of its
IAM policy in compose/policies/)."""

from __future__ import annotations

import dataclasses

OBJECTS, SEEDS, PARTS, COUNTS, SCHEMA = (
    "movers3_objects",
    "movers3_seeds",
    "movers3_seed_parts",
    "movers3_counts",
    "movers3_schema",
)


@dataclasses.dataclass(frozen=True)
class Role:
    """What one role of docs/permissions.md needs: ledger privileges ((table or None for the whole
    database, privileges), ...) and S3 rights."""

    ledger: tuple[tuple[str | None, tuple[str, ...]], ...]
    creates_schema: bool = False  # `init`: a missing or older schema is its to make
    lists_source: bool = False  # s3:ListBucket on the old bucket
    reads_source: bool = False  # s3:GetObject on the old bucket
    # s3:PutObject and s3:AbortMultipartUpload on the new bucket, s3:PutObjectAcl there with NEW_ACL; with
    # COPY_TAGS, s3:GetObjectTagging on the old bucket and s3:PutObjectTagging on the new one
    writes_dest: bool = False
    lists_dest: bool = False  # s3:ListBucket on the new bucket (a HEAD of a missing key is then a 404)
    reads_dest: bool = False  # s3:GetObject on the new bucket
    deletes_source: bool = False  # s3:DeleteObject and s3:DeleteObjectVersion on the old bucket
    repoints: bool = False  # runs REPOINT_SQL_FILE's statement


_READ_WRITE = ("SELECT", "UPDATE")
ROLES: dict[str, Role] = {
    # `init` and `run` (which seeds and copies too).
    "migrator": Role(
        ledger=((None, ("CREATE", "ALTER", "INDEX", "SELECT", "INSERT", "UPDATE", "TRIGGER")),),
        creates_schema=True,
        lists_source=True,
        reads_source=True,
        writes_dest=True,
        repoints=True,
    ),
    "seeder": Role(
        ledger=(
            (OBJECTS, ("SELECT", "INSERT", "UPDATE")),
            (SEEDS, ("SELECT", "INSERT", "UPDATE")),
            (PARTS, ("SELECT", "INSERT", "UPDATE")),
            (COUNTS, ("SELECT",)),
            (SCHEMA, ("SELECT",)),
        ),
        lists_source=True,
    ),
    "worker": Role(
        ledger=(
            (OBJECTS, _READ_WRITE),
            (SEEDS, _READ_WRITE),
            (SCHEMA, _READ_WRITE),
            (PARTS, ("SELECT",)),
            (COUNTS, ("SELECT",)),
        ),
        lists_source=True,
        reads_source=True,
        writes_dest=True,
        repoints=True,
    ),
    # `verify` (UPDATE on movers3_objects only with --mark-failed: not checked).
    "verifier": Role(
        ledger=((OBJECTS, ("SELECT",)), (COUNTS, ("SELECT",)), (SCHEMA, ("SELECT",))),
        lists_source=True,
        reads_source=True,
        lists_dest=True,
        reads_dest=True,
    ),
    "deleter": Role(
        ledger=((OBJECTS, _READ_WRITE), (SCHEMA, ("SELECT",))),
        lists_source=True,
        reads_source=True,
        lists_dest=True,
        reads_dest=True,
        deletes_source=True,
    ),
}
# The long-running role with the narrowest rights; a migrator's account holds all of them too.
DEFAULT_ROLE = "worker"
