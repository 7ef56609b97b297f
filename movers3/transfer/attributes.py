"""What a copy keeps, and what the destination adds.

The source side: content headers, user metadata, the website redirect location and the tag count, read
from a HEAD or a GET of the source; tags themselves come from GetObjectTagging. The destination side:
the storage class the source had (from the listing), server-side encryption (`NEW_SSE`) and the canned
ACL (`NEW_ACL`, applied afterwards with PutObjectAcl, the one ACL request the worker role may make).

Whatever an endpoint or a role can't carry is logged once per process (`Gaps`), never silently dropped.
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Any
from urllib.parse import urlencode

import botocore.exceptions
import structlog
from botocore.client import BaseClient

from movers3.settings import Settings
from movers3.transfer import s3

log = structlog.get_logger(__name__)

# Headers a GET/HEAD of the source reports and a PutObject/CreateMultipartUpload/CopyObject(REPLACE)
# accepts under the same boto3 name.
CONTENT_FIELDS = (
    "ContentType",
    "ContentEncoding",
    "ContentLanguage",
    "ContentDisposition",
    "CacheControl",
    "Expires",
    "WebsiteRedirectLocation",
)
# The storage class S3 gives when none is asked for: no need to send it.
DEFAULT_STORAGE_CLASS = "STANDARD"


@dataclasses.dataclass(frozen=True)
class SourceAttributes:
    """The attributes of one source object version, as a HEAD or GET of it reported them."""

    fields: dict[str, Any]
    metadata: dict[str, str]
    tag_count: int

    @classmethod
    def from_response(cls, response: dict) -> SourceAttributes:
        fields = {name: response[name] for name in CONTENT_FIELDS if response.get(name)}
        return cls(fields, dict(response.get("Metadata") or {}), int(response.get("TagCount") or 0))

    def params(self) -> dict[str, Any]:
        """As parameters of a request that writes a new object (or CopyObject with REPLACE)."""
        params = dict(self.fields)
        if self.metadata:
            params["Metadata"] = self.metadata
        return params


class Gaps:
    """A capability gap of an endpoint or a role, logged once per process rather than once per object."""

    def __init__(self) -> None:
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def warn(self, event: str, **kw: Any) -> None:
        with self._lock:
            if event in self._seen:
                return
            self._seen.add(event)
        log.warning(event, **kw)


class Destination:
    """What every new object gets besides the source's own attributes."""

    def __init__(self, settings: Settings, gaps: Gaps) -> None:
        self.acl = settings.new_acl
        self.sse = settings.new_sse
        self.kms_key = settings.new_sse_kms_key_id
        self.copy_tags = settings.copy_tags
        self.gaps = gaps
        self._storage_class_kept = True

    @property
    def etag_is_md5(self) -> bool:
        """S3 makes an object's (single-part) ETag the MD5 of its bytes, except under SSE-KMS."""
        return not (self.sse or "").startswith("aws:kms")

    def params(self, storage_class: str | None) -> dict[str, str]:
        params: dict[str, str] = {}
        if storage_class and storage_class != DEFAULT_STORAGE_CLASS and self._storage_class_kept:
            params["StorageClass"] = storage_class
        if self.sse:
            params["ServerSideEncryption"] = self.sse
        if self.kms_key:
            params["SSEKMSKeyId"] = self.kms_key
        return params

    def storage_class_refused(self, storage_class: str | None, code: str) -> bool:
        """An endpoint that refuses a storage class (InvalidStorageClass) gets none from now on; True
        when the caller should simply try again."""
        if not self._storage_class_kept or not storage_class or code != "InvalidStorageClass":
            return False
        self._storage_class_kept = False
        self.gaps.warn(
            "storage_class_not_kept",
            storage_class=storage_class,
            reason="the destination refused it (InvalidStorageClass); new objects get its default class",
        )
        return True

    def tagging(self, source: BaseClient, bucket: str, key: str, attributes: SourceAttributes) -> str | None:
        """The source's tags as a Tagging parameter, when it has any and the role may read them."""
        if not self.copy_tags or not attributes.tag_count:
            return None
        try:
            tags = source.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]
        except botocore.exceptions.ClientError as exc:
            if s3.status_code(exc) in (403, 501):
                self.gaps.warn(
                    "tags_not_carried",
                    code=s3.error_code(exc),
                    reason="the source role lacks s3:GetObjectTagging (or the endpoint has no tagging); "
                    "set COPY_TAGS=false to silence this",
                )
                return None
            raise s3.classify(exc, "GetObjectTagging on the source") from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise s3.classify(exc, "GetObjectTagging on the source") from exc
        return urlencode([(t["Key"], t["Value"]) for t in tags]) or None

    def apply_acl(self, dest: BaseClient, bucket: str, key: str) -> None:
        if not self.acl:
            return
        try:
            dest.put_object_acl(Bucket=bucket, Key=key, ACL=self.acl)
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            raise s3.classify(exc, f"PutObjectAcl {self.acl}") from exc
