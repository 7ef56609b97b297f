"""The S3 side of `check`: the credentials line of each side (sides.py), each bucket, and each right of
the role (rights.py: to list and read; writes.py: to write)."""

from __future__ import annotations

from movers3.check.lines import OK, PROBLEM, UNKNOWN, Check
from movers3.check.rights import Asked, list_folder, not_asked, read, read_tags
from movers3.check.roles import Role
from movers3.check.sides import Side, ownership
from movers3.check.writes import Writes, abort, write_tags
from movers3.ledger.reads import DoneRow
from movers3.settings import Settings


class Storage:
    """The S3 checks of one role: the requests first (each side stops at credentials that fail), then
    the lines, in the order an operator reads them."""

    def __init__(self, settings: Settings, role: Role, sample: DoneRow | None) -> None:
        self.settings = settings
        self.role = role
        self.sample = sample
        self.source = Side(settings.source)
        self.dest = self.source if settings.dest == settings.source else Side(settings.dest)
        self.asked = Asked()
        self.missing: set[str] = set()  # buckets found not to exist

    def run(self) -> list[Check]:
        s, role = self.settings, self.role
        rights: list[Check] = []
        first_key = dest_key = None
        if role.lists_source:
            check, first_key = list_folder(self.asked, self.source, s.old_bucket, s.old_prefix)
            rights.append(check)
        if role.reads_source:
            key = first_key or (self.sample.old_key if self.sample else None)
            rights.append(read(self.asked, self.source, s.old_bucket, s.old_prefix, key, listable=role.lists_source))
        if role.lists_dest:
            check, dest_key = list_folder(self.asked, self.dest, s.new_bucket, s.new_prefix)
            rights.append(check)
        if role.reads_dest:
            key = self.sample.new_key if self.sample else dest_key
            rights.append(read(self.asked, self.dest, s.new_bucket, s.new_prefix, key, listable=role.lists_dest))
        if role.writes_dest:
            rights.append(read_tags(self.asked, self.source, s, first_key, listable=role.lists_source))
            writes = Writes(s, self.asked, self.source, self.dest)
            rights.append(writes.put(writes.dest_exists(), first_key))
            rights += [write_tags(writes), abort(writes), writes.acl()]
        if role.deletes_source:
            unprovable = (
                "not provable without deleting something: grant it on the old bucket's objects as "
                "compose/policies/deleter.json does"
            )
            rights += [
                Check(f"{right} {s.old_bucket}", UNKNOWN, unprovable)
                for right in ("s3:DeleteObject", "s3:DeleteObjectVersion")
            ]
        touches_dest = role.reads_dest or role.writes_dest or role.lists_dest
        buckets = [self._bucket("source bucket", self.source, s.old_bucket)]
        if touches_dest:
            buckets.append(self._bucket("destination bucket", self.dest, s.new_bucket))
        if self.dest is self.source:
            sides = [_side_line("", self.source)]
        else:
            sides = [_side_line("source ", self.source)]
            sides += [_side_line("destination ", self.dest)] if touches_dest else []
        return sides + buckets + self._gone(rights)

    # The lines of buckets, from what the requests above found.

    def _bucket(self, name: str, side: Side, bucket: str) -> Check:
        answers = self.asked.answers.get(bucket, [])
        head = self.asked.head(side, bucket)
        if head is None:
            return not_asked(name)
        if head.status == 404 or any(a.code == "NoSuchBucket" for a in answers):
            self.missing.add(bucket)
            return Check(name, PROBLEM, f"{bucket} does not exist")
        facts = _bucket_facts(side, bucket)
        if head.response is not None:
            return Check(name, OK, f"{bucket} exists; {facts}")
        if any(a.response is not None or not (a.denied or a.code == "NoSuchBucket") for a in answers):
            return Check(
                name, OK, f"{bucket} exists (a request of this role reached it; HeadBucket was denied); {facts}"
            )
        return Check(
            name,
            UNKNOWN,
            f"{bucket}: every request was denied, and some servers deny a bucket that does not exist: check "
            "its name and the credentials' rights",
        )

    def _gone(self, rights: list[Check]) -> list[Check]:
        """A right on a bucket that does not exist is not proven by an answer the server may give first
        (SeaweedFS checks a Content-MD5 before the bucket)."""
        return [
            Check(c.name, UNKNOWN, f"not provable: {c.name.split(' ', 1)[1]} does not exist")
            if c.status == OK and c.name.split(" ", 1)[-1] in self.missing
            else c
            for c in rights
        ]


def _side_line(label: str, side: Side) -> Check:
    """A side's credentials line, from what its requests found: accepted, refused, or not used."""
    name = f"{label}S3 credentials"
    key, source = side.credentials()
    if key is None and side.client is None:
        return Check(name, PROBLEM, f"{source} (endpoint {side.endpoint.shown})")
    at = f"at {side.endpoint.shown}"
    who = f"access key {key} from {source} {at}" if key else f"{source} {at}"
    if side.refused is not None:
        return Check(name, PROBLEM, f"{who}: {side.refused.text()}")
    if not side.answered:
        return Check(name, UNKNOWN, f"{who}: not used by this role's checks")
    return Check(name, OK, f"{who}: accepted")


def _bucket_facts(side: Side, bucket: str) -> str:
    versioning = side.ask("get_bucket_versioning", Bucket=bucket)
    owner = ownership(side.ask("get_bucket_ownership_controls", Bucket=bucket))
    facts = []
    if versioning is not None and versioning.response is not None:
        facts.append(f"versioning {versioning.response.get('Status') or 'never enabled'}")
    else:
        facts.append("versioning not readable (s3:GetBucketVersioning)")
    facts.append(f"object ownership {owner}" if owner else "object ownership not readable")
    return ", ".join(facts)
