"""`movers3 verify`: re-check done rows against both sides, after the fact.

For each row: the new object exists, has the ledger's size, the ETag the copy recorded, and the same
content headers and user metadata as the source; with `--full`, the bytes of both sides are streamed
and their MD5s compared. A row whose source `delete-source` removed on purpose is checked against what
the ledger recorded of the copy instead (size, ETag, and with `--full` the MD5 that proved it): its
source is gone by design, not a mismatch. It needs GetObject on both buckets (the worker role can't read the
destination: the "verifier" role of docs/permissions.md), and UPDATE on the ledger only with `--mark-failed`.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

import botocore.exceptions
from botocore.client import BaseClient

from movers3.exceptions import CopyError
from movers3.ledger.reads import DoneRow
from movers3.transfer import s3
from movers3.transfer.attributes import CONTENT_FIELDS

READ_CHUNK = 1024 * 1024
# Rows checked at once; results come back in order, a bounded window ahead of the printer.
WINDOW = 64
# How `verify --mark-failed` starts the error of a row it sets to failed (`report --summary` counts them).
MISMATCH_ERROR_PREFIX = "verify: "


@dataclasses.dataclass(frozen=True)
class Finding:
    row: DoneRow
    problems: tuple[str, ...]


def _head(client: BaseClient, bucket: str, key: str) -> dict | None:
    what = f"HeadObject {bucket}/{key!r}"
    try:
        return s3.head_or_none(client, what, Bucket=bucket, Key=key)
    except CopyError as exc:  # verify stops at the first failed request, with the storage error's hint
        raise s3.storage_error(exc.__cause__ or exc, what) from exc


def _md5(client: BaseClient, bucket: str, key: str) -> str:
    try:
        body = client.get_object(Bucket=bucket, Key=key)["Body"]
        digest = hashlib.md5()  # noqa: S324 (comparison, not security)
        for chunk in body.iter_chunks(READ_CHUNK):
            digest.update(chunk)
        return digest.hexdigest()
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
        raise s3.storage_error(exc, f"GetObject {bucket}/{key!r}") from exc


class Verifier:
    def __init__(self, source: BaseClient, dest: BaseClient, *, full: bool, threads: int = 8) -> None:
        self.source = source
        self.dest = dest
        self.full = full
        self.threads = threads

    def check(self, row: DoneRow) -> Finding | None:
        new = _head(self.dest, row.new_bucket, row.new_key)
        if new is None:
            return Finding(row, ("missing at the destination",))
        problems = []
        if int(new["ContentLength"]) != row.size:
            problems.append(f"size {new['ContentLength']} != ledger {row.size}")
        if row.dest_etag and s3.bare_etag(new["ETag"]) != s3.bare_etag(row.dest_etag):
            problems.append("destination changed since the copy (ETag differs from the recorded one)")
        if row.source_deleted:
            # Nothing to compare with at the source: the destination against the ledger's record.
            recorded = (row.checksum or "").removeprefix("md5:")
            full = self.full and not problems and s3.is_md5(recorded)
            if full and _md5(self.dest, row.new_bucket, row.new_key) != recorded:
                problems.append("bytes differ from the MD5 the copy recorded (its source was deleted)")
            return Finding(row, tuple(problems)) if problems else None
        old = _head(self.source, row.old_bucket, row.old_key)
        if old is None:
            problems.append("source no longer exists (nothing to compare with)")
        else:
            if s3.bare_etag(old["ETag"]) != s3.bare_etag(row.source_etag):
                problems.append("source changed since the copy (run `movers3 seed` to catch up)")
            for name in (*CONTENT_FIELDS, "Metadata"):
                if (old.get(name) or None) != (new.get(name) or None):
                    problems.append(f"{name} differs")
            if (
                self.full
                and not problems
                and _md5(self.source, row.old_bucket, row.old_key) != _md5(self.dest, row.new_bucket, row.new_key)
            ):
                problems.append("bytes differ (MD5 of both sides)")
        return Finding(row, tuple(problems)) if problems else None

    def run(self, rows: Iterable[DoneRow]) -> Iterator[tuple[DoneRow, Finding | None]]:
        """Each row with its finding (None: it checks out), in order, WINDOW rows in flight."""
        with ThreadPoolExecutor(self.threads, thread_name_prefix="verify") as pool:
            pending = []
            for row in rows:
                pending.append((row, pool.submit(self.check, row)))
                if len(pending) >= WINDOW:
                    row_, future = pending.pop(0)
                    yield row_, future.result()
            for row_, future in pending:
                yield row_, future.result()
