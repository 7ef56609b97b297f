"""What a manifest gives the seeder: entries (bucket, key, size, ETag, class, date), a page of them at a
time, and the HeadObject that completes the rows a plain CSV gave without size or ETag."""

from __future__ import annotations

import dataclasses
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from botocore.client import BaseClient

from movers3.exceptions import CopyError, Interrupted, StorageError
from movers3.transfer import retry, s3

HEAD_THREADS = 16
DENIED_CODES = frozenset({"AccessDenied", "403"})  # a HeadObject answer has no body: a bare 403


@dataclasses.dataclass(frozen=True)
class Entry:
    bucket: str
    key: str
    size: int
    etag: str
    storage_class: str | None
    last_modified: datetime | None = None  # aware UTC, to the second; None: the manifest gave none


@dataclasses.dataclass(frozen=True)
class Chunk:
    entries: list[Entry]
    consumed: int  # data rows read for this chunk, kept or not (the part's cursor moves by this)
    skipped: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (key, reason): kept, not seedable


@dataclasses.dataclass(frozen=True)
class _Miss:
    """A row a HeadObject could not complete: a skipped key, unless `fatal` stops the seed."""

    reason: str
    code: str  # "404" when the key is gone
    fatal: StorageError | None = None


class Heads:
    """Completes the rows a plain CSV gave without size or ETag with a HeadObject each (concurrently,
    bounded, each retried), and sorts the failures: a key's own (gone, refused) makes it a skipped key;
    the role's or the configuration's stops the seed (StorageError), as does a server that stays
    unavailable once the tries are spent."""

    def __init__(self, client: BaseClient, stop: threading.Event, tries: int) -> None:
        self.client, self.stop, self.tries = client, stop, tries
        self.buckets: set[str] = set()  # those a listing found, once a HeadObject in them answered 404

    def chunk(self, entries: list[Entry], consumed: int) -> Chunk:
        """The chunk of these entries, completed, with the (key, reason) of those that could not be."""
        missing = [e for e in entries if e.size < 0 or not e.etag]
        if not missing:
            return Chunk(entries, consumed)
        halt = threading.Event()  # set by a failure that stops the seed: the HeadObjects not yet made aren't

        def head(entry: Entry) -> Entry | _Miss | None:
            if halt.is_set() or self.stop.is_set():
                return None
            miss = self._head(entry)
            if isinstance(miss, _Miss) and miss.fatal is not None:
                halt.set()
            return miss

        with ThreadPoolExecutor(min(HEAD_THREADS, len(missing))) as pool:
            outcomes = dict(zip(missing, pool.map(head, missing), strict=True))
        if self.stop.is_set():
            raise Interrupted("seeding stopped; `movers3 seed` resumes where it stopped")
        misses = [o for o in outcomes.values() if isinstance(o, _Miss)]
        for miss in misses:
            if miss.fatal is not None:
                raise miss.fatal
        if misses and len(misses) == len(outcomes) and all(m.code in DENIED_CODES for m in misses):
            raise StorageError(
                f"{misses[0].reason} (and every other HeadObject of the page: the credentials lack s3:GetObject "
                "on the old bucket, which a CSV without sizes or ETags needs)"
            )
        completed: list[Entry] = []
        skipped: list[tuple[str, str]] = []
        for entry in entries:
            outcome = outcomes.get(entry, entry)
            if isinstance(outcome, Entry):
                completed.append(outcome)
            elif isinstance(outcome, _Miss):
                if outcome.code == "404":
                    self._check_bucket(entry)
                skipped.append((entry.key, outcome.reason))
            else:  # not made: only after a stop or a fatal failure, both raised above
                raise StorageError(f"HeadObject {entry.bucket}/{entry.key} was not made")
        return Chunk(completed, consumed, skipped)

    def _head(self, entry: Entry) -> Entry | _Miss:
        what = f"HeadObject {entry.bucket}/{entry.key}"
        try:
            response = retry.call(
                lambda: s3.head_or_none(self.client, what, Bucket=entry.bucket, Key=entry.key),
                tries=self.tries,
                stop=self.stop,
                attempts=retry.Attempts(),
            )
        except CopyError as exc:
            if exc.retryable:
                fatal = StorageError(f"{exc} (after {self.tries} tries; `movers3 seed` resumes at this page)")
                return _Miss(str(exc), exc.code, fatal)
            if exc.code in s3.SYSTEMIC_CODES:
                cause = exc.__cause__
                return _Miss(str(exc), exc.code, s3.storage_error(cause, what) if cause else StorageError(str(exc)))
            return _Miss(str(exc), exc.code)
        if response is None:
            return _Miss("gone since the CSV was written (HeadObject: 404 Not Found)", "404")
        return Entry(
            entry.bucket,
            entry.key,
            int(response["ContentLength"]),
            s3.bare_etag(response.get("ETag")),
            response.get("StorageClass") or "STANDARD",
            entry.last_modified or s3.last_modified(response.get("LastModified")),
        )

    def _check_bucket(self, entry: Entry) -> None:
        """A HeadObject in a bucket that does not exist answers a bare 404, as one of a deleted key does:
        one listing (per bucket and part) tells them apart, and a missing bucket stops the seed."""
        if entry.bucket in self.buckets:
            return
        params = {"Bucket": entry.bucket, "Prefix": entry.key, "MaxKeys": 1}
        try:
            s3.list_page(self.client, params, tries=self.tries, stop=self.stop)
        except CopyError as exc:
            if self.stop.is_set():
                raise Interrupted("seeding stopped; `movers3 seed` resumes where it stopped") from exc
            if exc.retryable or exc.code in s3.SYSTEMIC_CODES:
                raise s3.storage_error(exc.__cause__ or exc, f"ListObjectsV2 on bucket {entry.bucket!r}") from exc
            # Any other refusal (a role that may read but not list): the 404 stands.
        self.buckets.add(entry.bucket)


# -- where the files are ------------------------------------------------------------------------
