"""`movers3 plan`: a dry run. It lists the source the way a seed would (the same level parts, split
the same way, on SEED_THREADS threads), compares every page with the ledger, and writes nothing:
no ledger row, no seed progress, no S3 object.

It reports what a seed and the workers would do: objects and bytes to copy (new, and changed since
they were seeded; a version older than the one a row describes is no change and is counted apart),
bytes per storage class, objects in archive tiers that need a restore before they can be copied,
keys that can't go to the destination (too long after the prefix swap, empty there (a folder's own
marker brought to a root), or whose new key already belongs to another source's row), and rows whose
source has vanished.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import Counter, defaultdict

import structlog
from botocore.client import BaseClient

from movers3 import routes
from movers3.exceptions import CopyError, Interrupted
from movers3.ledger.seeds import Known, Seeds
from movers3.seed import walk
from movers3.seed.judge import Listed, judge
from movers3.settings import Settings
from movers3.transfer import s3

log = structlog.get_logger(__name__)

SAMPLES = 10
# Objects in these classes must be restored (RestoreObject) before CopyObject or GetObject works.
ARCHIVE_CLASSES = frozenset({"GLACIER", "DEEP_ARCHIVE"})
# Objects here may sit in an archive access tier that a listing does not show (HeadObject's
# ArchiveStatus does); copying one of those fails with InvalidObjectState.
MAYBE_ARCHIVED_CLASSES = frozenset({"INTELLIGENT_TIERING"})
# ListObjectsV2 codes that mean "this endpoint does not know OptionalObjectAttributes".
UNSUPPORTED = frozenset({"InvalidArgument", "NotImplemented", "InvalidRequest", "AccessDenied"})


@dataclasses.dataclass
class Tally:
    objects: int = 0
    bytes: int = 0

    def add(self, size: int) -> None:
        self.objects += 1
        self.bytes += size


@dataclasses.dataclass
class PlanResult:
    source: str
    destination: str
    ledger: bool  # False: no ledger schema yet, everything counts as new
    restore_status_known: bool = True
    listed: Tally = dataclasses.field(default_factory=Tally)
    new: Tally = dataclasses.field(default_factory=Tally)
    changed: Tally = dataclasses.field(default_factory=Tally)
    older: Tally = dataclasses.field(default_factory=Tally)  # listed older than the row's version: left alone
    unchanged: Counter = dataclasses.field(default_factory=Counter)  # by ledger state
    by_class: dict = dataclasses.field(default_factory=lambda: defaultdict(Tally))
    needs_restore: Tally = dataclasses.field(default_factory=Tally)
    restoring: Tally = dataclasses.field(default_factory=Tally)
    restored: Tally = dataclasses.field(default_factory=Tally)
    maybe_archived: Tally = dataclasses.field(default_factory=Tally)
    too_long: Tally = dataclasses.field(default_factory=Tally)
    collisions: Tally = dataclasses.field(default_factory=Tally)
    retargeted: int = 0
    vanished: int = 0
    parts: int = 0
    requests: int = 0
    samples: dict = dataclasses.field(default_factory=lambda: defaultdict(list))

    def sample(self, kind: str, text: str) -> None:
        if len(self.samples[kind]) < SAMPLES:
            self.samples[kind].append(text)

    @property
    def to_copy(self) -> Tally:
        return Tally(self.new.objects + self.changed.objects, self.new.bytes + self.changed.bytes)

    @property
    def blocking(self) -> bool:
        """Keys a seed would skip: the operator must decide about them."""
        return bool(self.too_long.objects or self.collisions.objects)

    def as_dict(self) -> dict:
        def tally(t: Tally) -> dict:
            return {"objects": t.objects, "bytes": t.bytes}

        return {
            "source": self.source,
            "destination": self.destination,
            "ledger": self.ledger,
            "listed": tally(self.listed),
            "to_copy": tally(self.to_copy),
            "new": tally(self.new),
            "changed": tally(self.changed),
            "older_than_copied": tally(self.older),
            "unchanged_by_state": dict(self.unchanged),
            "by_storage_class": {k: tally(v) for k, v in sorted(self.by_class.items())},
            "needs_restore": tally(self.needs_restore),
            "restore_in_progress": tally(self.restoring),
            "restored": tally(self.restored),
            "maybe_in_archive_access_tier": tally(self.maybe_archived),
            "restore_status_known": self.restore_status_known,
            "too_long_for_destination": tally(self.too_long),
            "destination_taken": tally(self.collisions),
            "keep_other_destination": self.retargeted,
            "vanished": self.vanished,
            "parts": self.parts,
            "list_requests": self.requests,
            "samples": dict(self.samples),
            "blocking": self.blocking,
        }


class Planner:
    # Past 150 lines by its work queue: a plan walks the same parts as a seed, in-process.

    def __init__(
        self,
        seeds: Seeds | None,
        client: BaseClient,
        settings: Settings,
        stop_event: threading.Event | None = None,
        *,
        threads: int | None = None,
    ) -> None:
        self.seeds = seeds
        self.client = client
        self.settings = settings
        self.stopped = stop_event or threading.Event()
        self.threads = threads or settings.seed_threads
        self.folder = routes.folder(settings.old_prefix)
        st = settings
        self.result = PlanResult(
            routes.route(st.old_bucket, st.old_prefix), routes.route(st.new_bucket, st.new_prefix), seeds is not None
        )
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)
        self._queue: list[walk.Level] = []
        self._seen: set[tuple[str, str | None]] = set()
        self._busy = 0
        self._extra: dict = {"OptionalObjectAttributes": ["RestoreStatus"]}
        self._local = threading.local()  # one ledger connection per thread (a Database is single-threaded)
        self._errors: list[BaseException] = []

    def run(self) -> PlanResult:
        self._push(walk.Level(self.folder))
        threads = [threading.Thread(target=self._thread, name=f"plan-{i}", daemon=True) for i in range(self.threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if self._errors:
            raise self._errors[0]
        if self.stopped.is_set():
            raise Interrupted("plan stopped before the listing ended")
        if self.seeds is not None:
            in_ledger = self.seeds.rows_in_folder(self.settings.old_bucket, self.folder)
            r = self.result
            listed_in_ledger = r.listed.objects - r.too_long.objects - r.collisions.objects - r.new.objects
            r.vanished = max(0, in_ledger - listed_in_ledger)
        return self.result

    # -- the work queue: level parts, as a seed's parts ------------------------------------------

    def _push(self, level: walk.Level) -> None:
        with self._work:
            key = (level.prefix, level.after)
            if key in self._seen:
                return
            self._seen.add(key)
            self._queue.append(level)
            self.result.parts += 1
            self._work.notify()

    def _thread(self) -> None:
        while True:
            with self._work:
                while not self._queue and self._busy and not self.stopped.is_set():
                    self._work.wait(0.5)
                if not self._queue or self.stopped.is_set():
                    self._work.notify_all()
                    seeds = getattr(self._local, "seeds", None)
                    if seeds is not None:
                        seeds.db.close()
                    return
                level = self._queue.pop(0)
                self._busy += 1
            try:
                self._level(level)
            except BaseException as exc:  # raised by run()
                self._errors.append(exc)
                self.stopped.set()
            finally:
                with self._work:
                    self._busy -= 1
                    self._work.notify_all()

    def _level(self, level: walk.Level) -> None:
        for step in walk.walk(self._list, self.settings.old_bucket, level, extra=self._extra):
            if self.stopped.is_set():
                return
            for folder in step.page.folders:
                self._push(walk.Level(folder))
            self._page([Listed.from_listing(o) for o in step.page.files])
            for rest in step.split:
                self._push(rest)

    def _thread_seeds(self, shared: Seeds) -> Seeds:
        seeds = getattr(self._local, "seeds", None)
        if seeds is None:
            seeds = self._local.seeds = shared.for_another_thread()
        return seeds

    def _page(self, entries: list[Listed]) -> None:
        st = self.settings
        if self.seeds is not None:
            seeds = self._thread_seeds(self.seeds)

            def lookup(old: list[bytes], new: list[bytes]) -> Known:
                return seeds.known(st.old_bucket, old, st.new_bucket, new)
        else:

            def lookup(old: list[bytes], new: list[bytes]) -> Known:
                return Known({}, {})

        judgement = judge(entries, st, lookup)
        with self._lock:
            r = self.result
            for e in entries:
                r.listed.add(e.size)
                r.by_class[e.storage_class or "STANDARD"].add(e.size)
                self._archive(e)
            for e, _ in judgement.new:
                r.new.add(e.size)
            for e, _ in judgement.changed:
                r.changed.add(e.size)
                r.sample("changed", e.key)
            for e, _ in judgement.older:
                r.older.add(e.size)
                r.sample("older_than_copied", e.key)
            r.unchanged.update(judgement.unchanged_states)
            collided = {id(e) for e, _ in judgement.collisions}
            for e, reason in judgement.skipped:
                if id(e) in collided:
                    r.collisions.add(e.size)
                    r.sample("destination_taken", f"{e.key}: {reason}")
                else:
                    r.too_long.add(e.size)
                    r.sample("too_long_for_destination", e.key)
            r.retargeted += judgement.retargeted

    def _archive(self, e: Listed) -> None:
        r = self.result
        if e.storage_class in ARCHIVE_CLASSES:
            restore = e.restore or {}
            if restore.get("IsRestoreInProgress"):
                r.restoring.add(e.size)
            elif restore.get("RestoreExpiryDate"):
                r.restored.add(e.size)
            else:
                r.needs_restore.add(e.size)
                r.sample("needs_restore", e.key)
        elif e.storage_class in MAYBE_ARCHIVED_CLASSES:
            r.maybe_archived.add(e.size)

    def _list(self, params: dict) -> dict:
        with self._lock:
            self.result.requests += 1

        try:
            return s3.list_page(self.client, params, tries=self.settings.max_attempts, stop=self.stopped)
        except CopyError as exc:
            if "OptionalObjectAttributes" in params and exc.code in UNSUPPORTED:
                # An endpoint (or a role) without restore status: list without it and say so.
                with self._lock:
                    self._extra.clear()
                    self.result.restore_status_known = False
                log.info("restore_status_unavailable", code=exc.code)
                return self._list({k: v for k, v in params.items() if k != "OptionalObjectAttributes"})
            raise s3.storage_error(exc.__cause__ or exc, f"ListObjectsV2 on bucket {params['Bucket']!r}") from exc


def render(result: PlanResult) -> str:
    r = result

    def t(tally: Tally) -> str:
        return f"{tally.objects:,} objects, {tally.bytes:,} bytes"

    lines = [
        f"plan: {r.source} -> {r.destination} (dry run: nothing was written)",
        f"listed: {t(r.listed)} in {r.parts:,} parts, {r.requests:,} list requests",
    ]
    if not r.ledger:
        lines.append("ledger: no schema yet (`movers3 init`): every object counts as new")
    lines.append(f"to copy: {t(r.to_copy)} (new {t(r.new)}; changed since seeded {t(r.changed)})")
    if r.older.objects:
        lines.append(f"listed older than the version the ledger has (left alone, never copied back): {t(r.older)}")
    if r.unchanged:
        by_state = ", ".join(f"{n:,} {s}" for s, n in sorted(r.unchanged.items()))
        lines.append(f"already in the ledger, unchanged: {by_state}")
    lines.append("by storage class:")
    for name, tally in sorted(r.by_class.items()):
        lines.append(f"  {name:<20} {t(tally)}")
    lines.append(
        f"need a restore before they can be copied (GLACIER, DEEP_ARCHIVE): {t(r.needs_restore)}"
        + (
            ""
            if r.restore_status_known
            else " (this endpoint gives no restore status: restored ones are counted here too)"
        )
    )
    if r.restoring.objects or r.restored.objects:
        lines.append(f"  restore in progress: {t(r.restoring)}; restored (copyable until expiry): {t(r.restored)}")
    if r.maybe_archived.objects:
        lines.append(
            f"INTELLIGENT_TIERING (may be in an archive access tier; HeadObject shows ArchiveStatus): "
            f"{t(r.maybe_archived)}"
        )
    lines.append(
        f"can't be copied, a seed skips them: too long for the destination (> 1024 bytes) or empty there: "
        f"{t(r.too_long)}; "
        f"new key already taken by another source: {t(r.collisions)}"
    )
    if r.retargeted:
        lines.append(
            f"in the ledger with another destination (NEW_PREFIX changed?), kept as they are: {r.retargeted:,}"
        )
    if r.ledger:
        lines.append(f"in the ledger but no longer in the source (vanished; rows left alone): {r.vanished:,}")
    for kind, keys in sorted(r.samples.items()):
        lines.append(f"e.g. {kind}: " + "; ".join(repr(k) for k in keys))
    return "\n".join(lines)
