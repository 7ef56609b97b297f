"""The two sources of a multipart upload's parts (`multipart.PartSource`): UploadPartCopy, where S3
copies each range of the pinned source version itself, and a ranged GET streamed into an
UploadPart, where the bytes pass through this process, hashed on the way."""

from __future__ import annotations

import hashlib
import threading

from botocore.client import BaseClient

from movers3.exceptions import SourceChanged
from movers3.ledger.work import Row
from movers3.transfer import retry, s3
from movers3.transfer.buffers import Budget, OrderedMD5, read_exact

# Transient failures of one part are retried in place, so that a large object does not start its
# attempt over for one throttled request (the attempt itself is retried by the worker).
PART_ATTEMPTS = 3


class ServerParts:
    """UploadPartCopy: S3 copies each range of the pinned source version itself."""

    streams = False

    def __init__(self, dest: BaseClient, row: Row, stop: threading.Event) -> None:
        self.dest, self.row, self.stop = dest, row, stop

    def __call__(
        self, upload_id: str, number: int, first: int, last: int, hasher: OrderedMD5 | None
    ) -> tuple[str, str | None]:
        row = self.row
        part = _retried(
            lambda: s3.request(
                self.dest.upload_part_copy,
                "UploadPartCopy",
                Bucket=row.new_bucket,
                Key=row.new_key,
                UploadId=upload_id,
                PartNumber=number,
                CopySource={"Bucket": row.old_bucket, "Key": row.old_key},
                CopySourceRange=f"bytes={first}-{last}",
                CopySourceIfMatch=s3.quoted_etag(row.source_etag),
            ),
            self.stop,
        )
        return s3.bare_etag(part["CopyPartResult"]["ETag"]), None


class StreamParts:
    """A ranged GET of the pinned source version into one buffer, its MD5, and an UploadPart that the
    destination checks against that MD5 (Content-MD5) and answers with it (the part's ETag)."""

    streams = True

    def __init__(self, source: BaseClient, dest: BaseClient, row: Row, budget: Budget, stop: threading.Event):
        self.source, self.dest, self.row, self.budget, self.stop = source, dest, row, budget, stop

    def __call__(
        self, upload_id: str, number: int, first: int, last: int, hasher: OrderedMD5 | None
    ) -> tuple[str, str | None]:
        row, size = self.row, last - first + 1
        try:
            data, _ = _retried(lambda: read_source(self.source, row, (first, last)), self.stop)
            md5 = hashlib.md5(data).hexdigest()  # noqa: S324 (S3's ETag format)

            def put() -> str:
                part = s3.request(
                    self.dest.upload_part,
                    "UploadPart",
                    Bucket=row.new_bucket,
                    Key=row.new_key,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=data,
                    ContentMD5=s3.content_md5(md5),
                )
                etag = s3.bare_etag(part.get("ETag"))
                if s3.is_md5(etag) and etag != md5:
                    raise s3.mismatch(f"UploadPart {number}: destination ETag", etag, md5)
                return etag

            etag = _retried(put, self.stop)
        except BaseException:
            self.budget.release(size)
            raise
        if hasher is not None:
            hasher.feed(number, data)  # gives the buffer space back once hashed
        else:
            self.budget.release(size)
        return etag, md5


def read_source(source: BaseClient, row: Row, byte_range: tuple[int, int] | None = None) -> tuple[bytearray, dict]:
    """The source version the ledger recorded, whole or bytes first..last of it, in one buffer, and the
    response that carried them (its headers are the object's attributes)."""
    first, last = byte_range or (0, row.size - 1)
    ranged = {"Range": f"bytes={first}-{last}"} if byte_range else {}
    response = s3.request(
        source.get_object,
        "GetObject on the source",
        Bucket=row.old_bucket,
        Key=row.old_key,
        IfMatch=s3.quoted_etag(row.source_etag),
        **ranged,
    )
    return read_exact(response["Body"], last - first + 1, "GetObject on the source"), response


def _retried(fn, stop: threading.Event):
    # A changed source is not retried here: the worker re-reads it and starts the object over.
    return retry.call(fn, tries=PART_ATTEMPTS, stop=stop, attempts=retry.Attempts(), exclude=(SourceChanged,))
