"""The copy of one object, server-side (the shape of s3transfer's copy).

Below the threshold one CopyObject carries the bytes, metadata and tags; at or above it (and always
above 5 GiB) CreateMultipartUpload + UploadPartCopy + Complete, with the metadata read from the source
and carried over, and the upload aborted wherever it fails. Every request pins the source with the
ETag the ledger recorded (CopySourceIfMatch / IfMatch), so a copy is never half old, half new; when
the source changed since listing, `SourceChanged` tells the caller to re-read it and try again.

The worker sees only `Copier.copy(row) -> Copied`; this is the one place to swap the hot path.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import urlencode

import botocore.exceptions
import structlog
from botocore.client import BaseClient

from movers3 import s3
from movers3 import engine as engines
from movers3.engine import Boto3Engine, CopyEngine, CopyRequest
from movers3.exceptions import CopyError, Interrupted, SourceChanged
from movers3.ledger import Row
from movers3.settings import MIB, Settings

log = structlog.get_logger("movers3.copier")

MAX_SINGLE_COPY = 5 * 1024 * MIB
MAX_PARTS = 10_000

# Attributes a multipart copy must carry over itself (CopyObject keeps them on its own).
_CARRIED = ("CacheControl", "ContentDisposition", "ContentEncoding", "ContentLanguage", "ContentType",
            "Expires", "Metadata", "WebsiteRedirectLocation", "StorageClass")


@dataclasses.dataclass(frozen=True)
class Copied:
    size: int
    source_etag: str
    dest_etag: str
    method: str  # copy | multipart-copy
    verified_by: str  # etag | size+pinned | pinned


class Copier(Protocol):
    def copy(self, row: Row) -> Copied: ...

    def describe_source(self, row: Row) -> tuple[int, str]: ...


def plan_parts(size: int, chunksize: int) -> list[tuple[int, int]]:
    """Inclusive byte ranges: the configured part size, grown in whole MiB until the object fits in
    S3's 10,000 parts (so objects up to 5 TiB copy)."""
    part = chunksize
    if math.ceil(size / part) > MAX_PARTS:
        part = math.ceil(size / MAX_PARTS / MIB) * MIB
    return [(start, min(start + part, size) - 1) for start in range(0, size, part)]


class _Once:
    """Log a capability gap once per process, not once per object."""

    def __init__(self) -> None:
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def warn(self, event: str, **kw: Any) -> None:
        with self._lock:
            if event in self._seen:
                return
            self._seen.add(event)
        log.warning(event, **kw)


class ServerSideCopier:
    """Server-side copies with boto3, for a source and destination the same credentials can reach."""

    def __init__(self, source: BaseClient, dest: BaseClient, *, threshold: int, chunksize: int,
                 stopping: Callable[[], bool] = lambda: False, engine: CopyEngine | None = None) -> None:
        self.source = source
        self.dest = dest
        self.engine = engine or Boto3Engine(dest)
        self.threshold = threshold
        self.chunksize = chunksize
        self.stopping = stopping
        self._once = _Once()

    @classmethod
    def from_settings(cls, settings: Settings, stopping: Callable[[], bool]) -> ServerSideCopier:
        pool = settings.worker_threads + 4
        source = s3.client(settings.source, pool_size=pool)
        dest = source if settings.dest == settings.source else s3.client(settings.dest, pool_size=pool)
        return cls(source, dest, threshold=settings.multipart_threshold, chunksize=settings.multipart_chunksize,
                   stopping=stopping, engine=engines.from_settings(settings, dest))

    def copy(self, row: Row) -> Copied:
        if row.size >= self.threshold or row.size > MAX_SINGLE_COPY:
            return self._multipart(row)
        return self._single(row)

    def describe_source(self, row: Row) -> tuple[int, str]:
        """The source's current size and ETag, after a SourceChanged."""
        try:
            head = self.source.head_object(Bucket=row.old_bucket, Key=row.old_key)
        except botocore.exceptions.BotoCoreError as exc:
            raise s3.classify(exc, "HeadObject on the source") from exc
        except botocore.exceptions.ClientError as exc:
            if s3.status_code(exc) == 404:
                raise CopyError("HeadObject on the source: NoSuchKey: the source object no longer exists",
                                code="NoSuchKey", retryable=False) from exc
            raise s3.classify(exc, "HeadObject on the source") from exc
        return int(head["ContentLength"]), s3.bare_etag(head["ETag"])

    # -- one CopyObject ----------------------------------------------------------------------

    def _single(self, row: Row) -> Copied:
        dest_etag = self.engine.copy_object(CopyRequest(row.old_bucket, row.old_key, row.source_etag,
                                                        row.new_bucket, row.new_key))
        source_etag = s3.bare_etag(row.source_etag)
        if "-" in source_etag or not _is_md5(source_etag):
            # A multipart or encrypted source's ETag is not the MD5 of its bytes, so a copy may get a
            # different one; the pinned source (CopySourceIfMatch) is the proof here.
            verified = "pinned"
        elif dest_etag == source_etag:
            verified = "etag"
        else:
            raise CopyError(f"CopyObject: ETag mismatch: destination {dest_etag!r} != source {source_etag!r}",
                            code="ETagMismatch", retryable=True)
        return Copied(row.size, source_etag, dest_etag, "copy", verified)

    # -- multipart ---------------------------------------------------------------------------

    def _multipart(self, row: Row) -> Copied:
        head = self._call(self.source.head_object, "HeadObject on the source",
                          Bucket=row.old_bucket, Key=row.old_key, IfMatch=row.source_etag)
        size = int(head["ContentLength"])
        extra = {k: head[k] for k in _CARRIED if head.get(k)}
        if head.get("TagCount"):
            tagging = self._tags(row)
            if tagging:
                extra["Tagging"] = tagging
        created = self._call(self.dest.create_multipart_upload, "CreateMultipartUpload",
                             Bucket=row.new_bucket, Key=row.new_key, **extra)
        upload_id = created["UploadId"]
        try:
            parts = []
            for number, (first, last) in enumerate(plan_parts(size, self.chunksize), start=1):
                if self.stopping():
                    raise Interrupted("stopped during a multipart copy")
                part = self._call(self.dest.upload_part_copy, "UploadPartCopy",
                                  Bucket=row.new_bucket, Key=row.new_key, UploadId=upload_id, PartNumber=number,
                                  CopySource={"Bucket": row.old_bucket, "Key": row.old_key},
                                  CopySourceRange=f"bytes={first}-{last}", CopySourceIfMatch=row.source_etag)
                parts.append({"PartNumber": number, "ETag": part["CopyPartResult"]["ETag"]})
            done = self._call(self.dest.complete_multipart_upload, "CompleteMultipartUpload",
                              Bucket=row.new_bucket, Key=row.new_key, UploadId=upload_id,
                              MultipartUpload={"Parts": parts})
        except BaseException:
            self._abort(row, upload_id)
            raise
        # Every part was pinned to the same source ETag and the ranges cover exactly `size` bytes.
        return Copied(size, s3.bare_etag(row.source_etag), s3.bare_etag(done.get("ETag")), "multipart-copy", "size+pinned")

    def _tags(self, row: Row) -> str | None:
        try:
            tags = self.source.get_object_tagging(Bucket=row.old_bucket, Key=row.old_key)["TagSet"]
        except botocore.exceptions.ClientError as exc:
            if s3.status_code(exc) == 403:
                self._once.warn("tags_not_carried", reason="the source role lacks s3:GetObjectTagging",
                                path="multipart-copy")
                return None
            raise s3.classify(exc, "GetObjectTagging on the source") from exc
        return urlencode([(t["Key"], t["Value"]) for t in tags]) or None

    def _abort(self, row: Row, upload_id: str) -> None:
        try:
            self.dest.abort_multipart_upload(Bucket=row.new_bucket, Key=row.new_key, UploadId=upload_id)
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            self._once.warn("multipart_abort_failed", error=s3.error_code(exc),
                            hint="grant s3:AbortMultipartUpload or add a lifecycle rule "
                                 "AbortIncompleteMultipartUpload on the destination bucket")

    def _call(self, method: Callable[..., dict], what: str, **params: Any) -> dict:
        try:
            return method(**params)
        except botocore.exceptions.ClientError as exc:
            if s3.status_code(exc) == 412 or s3.error_code(exc) == "PreconditionFailed":
                raise SourceChanged() from exc
            raise s3.classify(exc, what) from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise s3.classify(exc, what) from exc


def _is_md5(etag: str) -> bool:
    return len(etag) == 32 and all(c in "0123456789abcdef" for c in etag.lower())
