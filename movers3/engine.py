"""The copy hot path: one server-side CopyObject, behind a small interface so that the client that
sends it can be swapped in one place (`COPY_ENGINE`) without touching the rest of the copy.

Everything else (HEAD, multipart, streaming, ACLs) stays on boto3, where API coverage matters more
than the per-request CPU; this request is the one a migration of small objects sends millions of.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Protocol

import botocore.exceptions
from botocore.client import BaseClient

from movers3 import s3
from movers3.exceptions import SourceChanged


@dataclasses.dataclass(frozen=True)
class CopyRequest:
    """One CopyObject. `extra` holds boto3 parameter names (StorageClass, ServerSideEncryption,
    SSEKMSKeyId, MetadataDirective, ...) so that every engine speaks the same vocabulary."""

    source_bucket: str
    source_key: str
    source_etag: str  # pinned with CopySourceIfMatch: a copy is never of another version
    dest_bucket: str
    dest_key: str
    extra: Mapping[str, str] = dataclasses.field(default_factory=dict)


class CopyEngine(Protocol):
    name: str

    def copy_object(self, request: CopyRequest) -> str:
        """Copy and return the destination's ETag (quotes stripped). Raises `SourceChanged` when the
        source no longer has the pinned ETag, and a classified `CopyError` for anything else."""
        ...


class Boto3Engine:
    name = "boto3"

    def __init__(self, dest: BaseClient) -> None:
        self.dest = dest

    def copy_object(self, request: CopyRequest) -> str:
        try:
            response = self.dest.copy_object(
                Bucket=request.dest_bucket, Key=request.dest_key,
                CopySource={"Bucket": request.source_bucket, "Key": request.source_key},
                CopySourceIfMatch=s3.quoted_etag(request.source_etag), **request.extra)
        except botocore.exceptions.ClientError as exc:
            if s3.status_code(exc) == 412 or s3.error_code(exc) == "PreconditionFailed":
                raise SourceChanged() from exc
            raise s3.classify(exc, "CopyObject") from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise s3.classify(exc, "CopyObject") from exc
        return s3.bare_etag(response.get("CopyObjectResult", {}).get("ETag"))
