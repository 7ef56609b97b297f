"""The destination's rights, each proven by a request the server refuses for another reason once the
right has been checked, so that nothing is written: a PutObject whose Content-MD5 is wrong on purpose
(or a CopyObject pinned to an ETag its source cannot have), a PutObjectAcl and a PutObjectTagging of a
key that does not exist, an AbortMultipartUpload of an upload that does not exist."""

from __future__ import annotations

import base64
import hashlib
import secrets
from typing import Any

from movers3.check.lines import OK, PROBLEM, UNKNOWN, Check
from movers3.check.rights import Asked, missing_key, not_asked, refused, tags_refused
from movers3.check.sides import Answer, Side, ownership
from movers3.settings import Settings

# What the write probe sends: its Content-MD5 is that of other bytes, so S3 refuses to store it.
_PROBE_BODY = b"movers3 check: this body does not match its Content-MD5, so no server stores it\n"
_NO_ETAG = '"' + "0" * 32 + '"'  # the MD5 no object of this probe's source has
_WRONG_MD5 = base64.b64encode(hashlib.md5(b"not the body").digest()).decode("ascii")  # noqa: S324 (S3's format)
_PROBE_TAGS = {"TagSet": [{"Key": "movers3-check", "Value": "never-stored"}]}


class Writes:
    """The destination's rights, probed on one key that does not exist and is never made: s3:PutObject,
    s3:PutObjectAcl when NEW_ACL is set (write_tags and abort below: s3:PutObjectTagging, s3:AbortMultipartUpload)."""

    def __init__(self, settings: Settings, asked: Asked, source: Side, dest: Side) -> None:
        self.settings = settings
        self.asked = asked
        self.source = source
        self.dest = dest
        self.probe_key = missing_key(settings.new_prefix)
        self.acl_answer: Answer | None = None  # the existence probe's PutObjectAcl, when it was made

    def dest_exists(self) -> bool | None:
        """Whether the new bucket exists, asked before any write probe: SeaweedFS creates a missing bucket
        for a PutObject it then refuses (BadDigest), though not for a PutObjectAcl or a CopyObject."""
        s = self.settings
        head = self.asked.head(self.dest, s.new_bucket)
        if head is None or head.response is not None:
            return None if head is None else True
        if head.status == 404:
            return False
        # HeadBucket needs s3:ListBucket, which a worker lacks on the destination: a PutObjectAcl on a key
        # that does not exist reaches the bucket without changing anything.
        self.acl_answer = self._put_acl(s.new_acl or "private")
        code = self.acl_answer.code if self.acl_answer else ""
        if code in ("NoSuchKey", "AccessControlListNotSupported"):
            return True
        return False if code == "NoSuchBucket" else None

    def put(self, exists: bool | None, source_key: str | None) -> Check:
        s = self.settings
        name = f"s3:PutObject {s.new_bucket}"
        params: dict[str, Any] = {"Bucket": s.new_bucket, "Key": self.probe_key}
        if s.new_sse:
            params["ServerSideEncryption"] = s.new_sse
        if s.new_sse_kms_key_id:
            params["SSEKMSKeyId"] = s.new_sse_kms_key_id
        if self.dest.refused is not None:
            return not_asked(name)
        if exists is False:
            return Check(name, UNKNOWN, f"not provable: {s.new_bucket} does not exist")
        if exists is None:
            if source_key is None or self.dest is not self.source:
                return Check(
                    name,
                    UNKNOWN,
                    "not provable: the bucket's existence is not readable with these credentials, and a PutObject "
                    "probe could create it on servers that make buckets on write",
                )
            # A copy pinned to an ETag the source cannot have: refused for that once the rights are checked.
            source = {"Bucket": s.old_bucket, "Key": source_key}
            answer = self.asked.ask(
                self.dest, s.new_bucket, "copy_object", CopySource=source, CopySourceIfMatch=_NO_ETAG, **params
            )
            if answer is None:
                return not_asked(name)
            if answer.code in ("PreconditionFailed", "412"):
                return Check(name, OK, "allowed: a CopyObject pinned to an ETag the source lacks was refused for that")
            if answer.response is not None:
                return Check(name, PROBLEM, f"the server ignored CopySourceIfMatch and copied: delete {self.probe_key}")
            return refused(name, answer, "s3:PutObject")
        answer = self.asked.ask(
            self.dest, s.new_bucket, "put_object", Body=_PROBE_BODY, ContentMD5=_WRONG_MD5, **params
        )
        if answer is None:
            return not_asked(name)
        if answer.code == "BadDigest":
            return Check(
                name, OK, "allowed: a PutObject with a wrong Content-MD5 was refused for that alone (BadDigest)"
            )
        if answer.response is not None:
            return Check(
                name,
                PROBLEM,
                f"the server stored a PutObject whose Content-MD5 is wrong (it does not check Content-MD5): "
                f"delete {self.probe_key}",
            )
        return refused(name, answer, "s3:PutObject")

    def acl(self) -> Check:
        s = self.settings
        name = f"s3:PutObjectAcl {s.new_bucket}"
        if not s.new_acl:
            return Check(name, OK, "not needed: NEW_ACL is unset")
        answer = self.acl_answer or self._put_acl(s.new_acl)
        if answer is None:
            return not_asked(name)
        enforced = f"NEW_ACL={s.new_acl} would fail every copy; unset NEW_ACL or use bucket-owner-full-control"
        if answer.code == "AccessControlListNotSupported":
            return Check(name, PROBLEM, f"the bucket's ACLs are disabled (BucketOwnerEnforced): {enforced}")
        if answer.code != "NoSuchKey":
            return refused(name, answer, "s3:PutObjectAcl")
        allowed = f"allowed: NEW_ACL={s.new_acl} on a key that does not exist answered NoSuchKey"
        if s.new_acl == "bucket-owner-full-control":
            return Check(name, OK, allowed)
        owner = ownership(self.dest.ask("get_bucket_ownership_controls", Bucket=s.new_bucket))
        if owner == "BucketOwnerEnforced":
            return Check(name, PROBLEM, f"the bucket is BucketOwnerEnforced (ACLs disabled): {enforced}")
        if owner is None:
            return Check(
                name,
                UNKNOWN,
                f"{allowed}, but the bucket's object ownership is not readable with these credentials "
                "(s3:GetBucketOwnershipControls): if it is BucketOwnerEnforced every copy fails",
            )
        return Check(name, OK, f"{allowed}; object ownership {owner}")

    def _put_acl(self, acl: str) -> Answer | None:
        s = self.settings
        return self.asked.ask(
            self.dest, s.new_bucket, "put_object_acl", Bucket=s.new_bucket, Key=self.probe_key, ACL=acl
        )


def write_tags(writes: Writes) -> Check:
    """s3:PutObjectTagging's line (COPY_TAGS): a PutObjectTagging of the probe key, which does not exist."""
    s = writes.settings
    name = f"s3:PutObjectTagging {s.new_bucket}"
    if not s.copy_tags:
        return Check(name, OK, "not needed: COPY_TAGS=false")
    answer = writes.asked.ask(
        writes.dest, s.new_bucket, "put_object_tagging", Bucket=s.new_bucket, Key=writes.probe_key, Tagging=_PROBE_TAGS
    )
    if answer is None:
        return not_asked(name)
    if answer.code in ("NoSuchKey", "404"):
        return Check(name, OK, "allowed: a PutObjectTagging of a key that does not exist answered NoSuchKey")
    if answer.response is not None:
        return Check(name, PROBLEM, f"the server tagged a key that should not exist: check {writes.probe_key}")
    return tags_refused(name, answer, "s3:PutObjectTagging")


def abort(writes: Writes) -> Check:
    """s3:AbortMultipartUpload's line: an abort of an upload id no upload has."""
    s = writes.settings
    name = f"s3:AbortMultipartUpload {s.new_bucket}"
    upload = f"movers3-check-{secrets.token_hex(16)}"
    answer = writes.asked.ask(
        writes.dest, s.new_bucket, "abort_multipart_upload", Bucket=s.new_bucket, Key=writes.probe_key, UploadId=upload
    )
    if answer is None:
        return not_asked(name)
    if answer.code in ("NoSuchUpload", "404"):
        return Check(
            name, OK, "allowed: an AbortMultipartUpload of an upload that does not exist answered NoSuchUpload"
        )
    if answer.response is not None:
        return Check(name, OK, "allowed: an AbortMultipartUpload of an upload that does not exist was answered 204")
    stays = (
        "a multipart upload whose row fails for good would stay until a lifecycle rule "
        "(AbortIncompleteMultipartUpload) removes it"
    )
    if answer.denied and not s.copy_tags:
        # The minimal policy (compose/policies/worker-minimal.json) is enough with COPY_TAGS=false.
        return Check(name, OK, f"not granted, which COPY_TAGS=false allows (worker-minimal.json): {stays}")
    check = refused(name, answer, "s3:AbortMultipartUpload")
    return Check(name, PROBLEM, f"{check.detail}: {stays}") if answer.denied else check
