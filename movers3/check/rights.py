"""Each S3 right of a role, proven by a request that changes nothing, or reported unprovable. Here the
rights to list and to read (one byte of one object, the tags of one object); writes.py the rights to
write."""

from __future__ import annotations

import secrets
from typing import Any

from movers3 import logs, routes
from movers3.check.lines import OK, PROBLEM, UNKNOWN, Check
from movers3.check.sides import Answer, Side
from movers3.settings import Settings


class Asked:
    """The probes' answers per bucket, for the bucket's own line (a request that reached a bucket shows
    it exists where HeadBucket is denied), and each bucket's HeadBucket, asked once."""

    def __init__(self) -> None:
        self.answers: dict[str, list[Answer]] = {}
        self.heads: dict[str, Answer | None] = {}

    def ask(self, side: Side, bucket: str, operation: str, **params: Any) -> Answer | None:
        answer = side.ask(operation, **params)
        if answer is not None:
            self.answers.setdefault(bucket, []).append(answer)
        return answer

    def head(self, side: Side, bucket: str) -> Answer | None:
        if bucket not in self.heads:
            self.heads[bucket] = side.ask("head_bucket", Bucket=bucket)
        return self.heads[bucket]


def not_asked(name: str) -> Check:
    return Check(name, UNKNOWN, "not checked: the S3 credentials or endpoint failed (see the credentials line)")


def refused(name: str, answer: Answer, right: str) -> Check:
    bucket = name.split(" ", 1)[1]
    if answer.code == "NoSuchBucket":
        return Check(name, PROBLEM, f"the bucket {bucket} does not exist (NoSuchBucket)")
    if answer.denied:
        return Check(name, PROBLEM, f"AccessDenied: these credentials lack {right} on {bucket}")
    return Check(name, PROBLEM, answer.text())


def missing_key(prefix: str) -> str:
    """A key under `prefix` that does not exist, for a probe that must find nothing."""
    return f"{routes.folder(prefix)}.movers3-check-{secrets.token_hex(8)}"


def list_folder(asked: Asked, side: Side, bucket: str, prefix: str) -> tuple[Check, str | None]:
    """s3:ListBucket's line, and the folder's first key (an object the role may read)."""
    folder = routes.folder(prefix)
    name = f"s3:ListBucket {bucket}"
    answer = asked.ask(side, bucket, "list_objects_v2", Bucket=bucket, Prefix=folder, MaxKeys=1)
    if answer is None:
        return not_asked(name), None
    if answer.response is not None:
        keys = [o["Key"] for o in answer.response.get("Contents", [])]
        seen = f"first key {logs.escape_controls(keys[0])}" if keys else "the folder is empty"
        return Check(name, OK, f"listed {bucket}/{folder}: {seen}"), (keys[0] if keys else None)
    return refused(name, answer, "s3:ListBucket"), None


def read(asked: Asked, side: Side, bucket: str, prefix: str, key: str | None, *, listable: bool) -> Check:
    """s3:GetObject's line: the first byte of `key`, else of a key that does not exist."""
    name = f"s3:GetObject {bucket}"
    target = key or missing_key(prefix)
    answer = asked.ask(side, bucket, "get_object", Bucket=bucket, Key=target, Range="bytes=0-0")
    if answer is None:
        return not_asked(name)
    shown = logs.escape_controls(target)
    if answer.response is not None:
        answer.response["Body"].close()
        return Check(name, OK, f"read the first byte of {shown}")
    if answer.code == "InvalidRange":
        return Check(name, OK, f"allowed: {shown} is empty (InvalidRange)")
    if answer.code == "InvalidObjectState":
        return Check(name, UNKNOWN, f"{shown} is archived (InvalidObjectState): restore it, or check another")
    return _missing(name, answer, shown, key, listable, "no verified copy in the ledger to read yet") or refused(
        name, answer, "s3:GetObject"
    )


def _missing(name: str, answer: Answer, shown: str, key: str | None, listable: bool, nothing: str) -> Check | None:
    """The answer to a read of a key that may not exist: only a request allowed to read is told that a
    key is missing; without s3:ListBucket, S3 says AccessDenied instead, which then proves nothing."""
    if answer.code in ("NoSuchKey", "404"):
        return Check(name, OK, f"allowed: {shown} does not exist (NoSuchKey)")
    if answer.denied and key is None and not listable:
        return Check(
            name,
            UNKNOWN,
            f"{nothing}, and without s3:ListBucket S3 answers AccessDenied for a key that does not exist: not provable",
        )
    return None


def read_tags(asked: Asked, side: Side, settings: Settings, key: str | None, *, listable: bool) -> Check:
    """s3:GetObjectTagging's line (COPY_TAGS): the tags of `key`, else of a key that does not exist."""
    bucket = settings.old_bucket
    name = f"s3:GetObjectTagging {bucket}"
    if not settings.copy_tags:
        return Check(name, OK, "not needed: COPY_TAGS=false")
    target = key or missing_key(settings.old_prefix)
    answer = asked.ask(side, bucket, "get_object_tagging", Bucket=bucket, Key=target)
    if answer is None:
        return not_asked(name)
    shown = logs.escape_controls(target)
    if answer.response is not None:
        count = len(answer.response.get("TagSet", []))
        return Check(name, OK, f"read the tags of {shown} ({count} tag{'' if count == 1 else 's'})")
    return _missing(name, answer, shown, key, listable, "no key to read") or tags_refused(
        name, answer, "s3:GetObjectTagging"
    )


def tags_refused(name: str, answer: Answer, right: str) -> Check:
    """A tagging right refused: what COPY_TAGS=true then costs, and the way out."""
    check = refused(name, answer, right)
    if not answer.denied:
        return check
    return Check(
        name, PROBLEM, f"{check.detail}: COPY_TAGS=true needs it (docs/permissions.md), or set COPY_TAGS=false"
    )
