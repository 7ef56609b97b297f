"""The copy of one object, and the proof that it is right.

Four paths, chosen per object and recorded on its row (`copy_method`):

| path               | when                                                   | requests                      |
| ------------------ | ------------------------------------------------------ | ----------------------------- |
| `copy`             | server-side, below MULTIPART_THRESHOLD or one part     | CopyObject (the hot path)     |
| `multipart-copy`   | server-side, at or above it and more than one part     | HEAD, Create, UploadPartCopy… |
| `stream`           | across endpoints or accounts, up to one part           | GET, PutObject                |
| `multipart-stream` | across endpoints or accounts, larger                   | HEAD, Create, GET+UploadPart… |

Server-side is used when the destination's credentials can read the source (same endpoint, same
keys) unless COPY_MODE says otherwise. Every request that reads the source pins the version the
ledger recorded (CopySourceIfMatch / IfMatch), so a copy is never half old, half new; when the source
changed since listing, `SourceChanged` tells the worker to re-read it and try again.

How each copy was proved is recorded too (`verified_by`, `checksum`): `etag` (the copy has the
source's MD5 ETag), `md5` (the MD5 computed while streaming equals the source's ETag and what the
destination reports), `md5-dest` (equals what the destination reports; the source's ETag is not an
MD5), `md5+parts` / `parts-md5` (every part's MD5 matched the destination's, and the whole object's
MD5 matched the source when it could be computed), `size+pinned` (server-side parts, each pinned to
the source version, covering exactly its size) and `pinned` (a server-side copy whose ETags are not
MD5s). A mismatch is a retryable error and, once attempts are spent, a failed row: never a done one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
from datetime import datetime
from typing import Any, NamedTuple, Protocol

from botocore.client import BaseClient

from movers3.exceptions import CopyError
from movers3.ledger.uploads import UploadJournal
from movers3.ledger.work import Row
from movers3.settings import Settings
from movers3.transfer import copy_object, s3
from movers3.transfer.attributes import Destination, Gaps, SourceAttributes
from movers3.transfer.buffers import Budget, keep_buffers_out_of_the_heap
from movers3.transfer.copy_object import Boto3Engine, CopyEngine, CopyRequest
from movers3.transfer.multipart import Uploads, part_size_for
from movers3.transfer.parts import ServerParts, StreamParts, read_source


@dataclasses.dataclass(frozen=True)
class Copied:
    size: int
    source_etag: str
    dest_etag: str
    method: str  # copy | multipart-copy | stream | multipart-stream
    verified_by: str
    checksum: str | None = None


class SourceVersion(NamedTuple):
    """The source's current version, as a HEAD describes it."""

    size: int
    etag: str
    last_modified: datetime | None  # aware UTC, to the second


class Copier(Protocol):
    def copy(self, row: Row) -> Copied: ...

    def describe_source(self, row: Row) -> SourceVersion: ...

    def abandon(self, row: Row) -> bool: ...


class ObjectCopier:
    """Copies rows between two S3 clients; one per worker process, shared by its copy threads."""

    # Longer than most: the four paths and their proofs stand side by side, to be read against each other.

    def __init__(
        self,
        settings: Settings,
        source: BaseClient,
        dest: BaseClient,
        journal: UploadJournal,
        stop: threading.Event,
        *,
        engine: CopyEngine | None = None,
    ) -> None:
        self.source = source
        self.dest = dest
        self.journal = journal
        self.stop = stop
        self.server_side = settings.server_side
        self.threshold = settings.multipart_threshold
        self.chunksize = settings.multipart_chunksize
        self.redirects = settings.website_redirects
        self.gaps = Gaps()
        self.destination = Destination(settings, self.gaps)
        self.budget = Budget(settings.stream_memory)
        if not self.server_side:
            keep_buffers_out_of_the_heap()
        self.engine = engine or Boto3Engine(dest)
        self.uploads = Uploads(dest, journal, self.budget, concurrency=settings.part_concurrency, stop=stop)

    @classmethod
    def from_settings(cls, settings: Settings, journal: UploadJournal, stop: threading.Event) -> ObjectCopier:
        pool = settings.worker_threads * (1 + settings.part_concurrency) + 4
        source = s3.client(settings.source, pool_size=pool)
        dest = source if settings.dest == settings.source else s3.client(settings.dest, pool_size=pool)
        return cls(settings, source, dest, journal, stop, engine=copy_object.from_settings(settings, dest))

    def describe(self) -> dict[str, Any]:
        """What the worker logs at start: the path and its settings, once."""
        return {
            "copy_mode": "server" if self.server_side else "stream",
            "engine": self.engine.name,
            "multipart_threshold": self.threshold,
            "part_size": self.chunksize,
            "website_redirects": self.redirects,
        }

    # -- the entry points ------------------------------------------------------------------------

    def copy(self, row: Row) -> Copied:
        upload = self.journal.current(row)
        if upload is not None and row.size == 0:
            self.abandon(row)  # an emptied source needs no parts
            self.journal.forget(row)
            upload = None
        if self.server_side:
            one_request = upload is None and self._one_copy_object(row)
            copied = self._server_single(row) if one_request else self._server_multipart(row)
        elif upload is not None or row.size >= self.threshold or row.size > self.chunksize:
            copied = self._stream_multipart(row)
        else:
            copied = self._stream_single(row)
        self.destination.apply_acl(self.dest, row.new_bucket, row.new_key)
        return copied

    def describe_source(self, row: Row) -> SourceVersion:
        """The source's current size, ETag and LastModified, after a SourceChanged."""
        head = s3.head_or_none(self.source, "HeadObject on the source", Bucket=row.old_bucket, Key=row.old_key)
        if head is None:
            raise CopyError(
                "HeadObject on the source: NoSuchKey: the source object no longer exists",
                code="NoSuchKey",
                retryable=False,
            )
        try:
            modified = s3.last_modified(head.get("LastModified"))
        except ValueError:  # a date movers3 can't read: unknown, and the row keeps the one it has
            modified = None
        return SourceVersion(int(head["ContentLength"]), s3.bare_etag(head["ETag"]), modified)

    def abandon(self, row: Row) -> bool:
        """The row failed for good: abort its recorded upload if the role may. True when it is gone."""
        return self.uploads.abort(row, self.gaps.warn)

    # -- server-side -------------------------------------------------------------------------------

    def hot_request(self, row: Row) -> CopyRequest | None:
        """The one CopyObject that copies `row` when that request is all its copy takes (server-side,
        below the threshold, no upload to resume, no HEAD for a redirect, no ACL to set after it), for
        a caller that sends it on its own; None when the row needs `copy`. The result goes through
        `copied_by_copy_object`, as `copy` does."""
        if not self.server_side or self.destination.acl or not self._one_copy_object(row):
            return None
        if self.redirects == "always" or (self.redirects == "auto" and row.size == 0):
            return None
        if row.upload is not None or self.journal.current(row) is not None:
            return None
        return self._copy_request(row, self.destination.params(row.storage_class))

    def copied_by_copy_object(self, row: Row, dest_etag: str) -> Copied:
        """A CopyObject of `row` answered `dest_etag`: the proof, or a mismatch error."""
        source_etag = s3.bare_etag(row.source_etag)
        if not (s3.is_md5(source_etag) and self.destination.etag_is_md5):
            # A multipart or KMS-encrypted object's ETag is not the MD5 of its bytes; the pinned
            # source version (CopySourceIfMatch) is the proof here.
            return Copied(row.size, source_etag, dest_etag, "copy", "pinned")
        if dest_etag != source_etag:
            raise s3.mismatch("CopyObject: destination ETag", dest_etag, source_etag)
        return Copied(row.size, source_etag, dest_etag, "copy", "etag", f"md5:{source_etag}")

    def hot_failure(self, row: Row, error: CopyError) -> CopyError | None:
        """What the failure of `hot_request`'s CopyObject counts as: the error itself, or None when
        the row is simply to be copied again (an endpoint that refuses the storage class: from now
        on none is sent, as `copy` does within one try)."""
        return None if self.destination.storage_class_refused(row.storage_class, error.code) else error

    def _one_copy_object(self, row: Row) -> bool:
        """Whether a server-side copy of `row` is one CopyObject: below MULTIPART_THRESHOLD, or no
        larger than the one part a multipart copy would make of it (its HEAD, Create and Complete
        would be three requests more for the same copy, and one part gives nothing to resume)."""
        return row.size < self.threshold or row.size <= part_size_for(row.size, self.chunksize)

    def _server_single(self, row: Row) -> Copied:
        extra: dict[str, Any] = self.destination.params(row.storage_class)
        if self.redirects == "always" or (self.redirects == "auto" and row.size == 0):
            # CopyObject never carries the website redirect location: read it and write every
            # attribute explicitly (tags still follow the TaggingDirective).
            attributes = SourceAttributes.from_response(self._head(row))
            extra.update(MetadataDirective="REPLACE", **attributes.params())
        request = self._copy_request(row, extra)
        try:
            dest_etag = self.engine.copy_object(request)
        except CopyError as exc:
            if not self.destination.storage_class_refused(row.storage_class, exc.code):
                raise
            extra = {k: v for k, v in request.extra.items() if k != "StorageClass"}
            dest_etag = self.engine.copy_object(dataclasses.replace(request, extra=extra))
        return self.copied_by_copy_object(row, dest_etag)

    def _copy_request(self, row: Row, extra: dict[str, Any]) -> CopyRequest:
        if not self.destination.copy_tags:
            extra["TaggingDirective"] = "REPLACE"
        return CopyRequest(row.old_bucket, row.old_key, row.source_etag, row.new_bucket, row.new_key, extra)

    def _server_multipart(self, row: Row) -> Copied:
        head = self._head(row)
        row = dataclasses.replace(row, size=int(head["ContentLength"]))
        create = self._create_params(row, SourceAttributes.from_response(head))
        parts = ServerParts(self.dest, row, self.stop)
        dest_etag, _, _ = self.uploads.run(row, part_size_for(row.size, self.chunksize), create, parts)
        # Every part was pinned to the same source ETag and the ranges cover exactly `size` bytes.
        return Copied(row.size, s3.bare_etag(row.source_etag), dest_etag, "multipart-copy", "size+pinned")

    # -- streamed ----------------------------------------------------------------------------------

    def _stream_single(self, row: Row) -> Copied:
        self.budget.acquire(row.size, self.stop.is_set)
        try:
            data, response = read_source(self.source, row)
            md5 = hashlib.md5(data).hexdigest()  # noqa: S324 (S3's ETag format)
            if s3.is_md5(s3.bare_etag(row.source_etag)) and md5 != s3.bare_etag(row.source_etag):
                # Checked before the PUT: damaged bytes never become the new object.
                raise s3.mismatch("GetObject: bytes read from the source", md5, s3.bare_etag(row.source_etag))
            params = self._create_params(row, SourceAttributes.from_response(response))()
            put = s3.request(
                self.dest.put_object,
                "PutObject",
                Bucket=row.new_bucket,
                Key=row.new_key,
                Body=data,
                ContentMD5=s3.content_md5(md5),
                **params,
            )
        finally:
            self.budget.release(row.size)
        dest_etag = s3.bare_etag(put.get("ETag"))
        source_etag = s3.bare_etag(row.source_etag)
        if self.destination.etag_is_md5 and dest_etag != md5:
            raise s3.mismatch("PutObject: destination ETag", dest_etag, md5)
        if s3.is_md5(source_etag):
            return Copied(row.size, source_etag, dest_etag, "stream", "md5", f"md5:{md5}")
        return Copied(row.size, source_etag, dest_etag, "stream", "md5-dest", f"md5:{md5}")

    def _stream_multipart(self, row: Row) -> Copied:
        head = self._head(row)
        row = dataclasses.replace(row, size=int(head["ContentLength"]))
        create = self._create_params(row, SourceAttributes.from_response(head))
        source_etag = s3.bare_etag(row.source_etag)
        parts = StreamParts(self.source, self.dest, row, self.budget, self.stop)
        dest_etag, md5s, whole = self.uploads.run(
            row,
            part_size_for(row.size, self.chunksize),
            create,
            parts,
            expected_md5=source_etag if s3.is_md5(source_etag) else None,
        )
        expected = s3.composite_etag([m for m in md5s if m])
        if "-" in dest_etag and self.destination.etag_is_md5 and dest_etag != expected:
            self.journal.forget(row)
            raise s3.mismatch("CompleteMultipartUpload: destination ETag", dest_etag, expected)
        if "-" not in dest_etag:
            self.gaps.warn(
                "multipart_etag_not_comparable",
                etag=dest_etag,
                reason="the destination's multipart ETags are not MD5 composites; parts are still checked one by one",
            )
        if whole is None:
            return Copied(row.size, source_etag, dest_etag, "multipart-stream", "parts-md5", f"etag:{expected}")
        return Copied(row.size, source_etag, dest_etag, "multipart-stream", "md5+parts", f"md5:{whole}")

    # -- shared steps ------------------------------------------------------------------------------

    def _head(self, row: Row) -> dict:
        return s3.request(
            self.source.head_object,
            "HeadObject on the source",
            Bucket=row.old_bucket,
            Key=row.old_key,
            IfMatch=s3.quoted_etag(row.source_etag),
        )

    def _create_params(self, row: Row, attributes: SourceAttributes):
        """Parameters of the request that creates the new object, computed when it is sent (a
        resumed upload never asks for the tags again)."""

        def params() -> dict[str, Any]:
            result = {**attributes.params(), **self.destination.params(row.storage_class)}
            tagging = self.destination.tagging(self.source, row.old_bucket, row.old_key, attributes)
            if tagging:
                result["Tagging"] = tagging
            return result

        return params
