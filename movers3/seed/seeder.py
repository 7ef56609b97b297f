"""The seeder: enumerate OLD_BUCKET/OLD_PREFIX/ into the ledger, from a listing or a manifest.

A seed runs in rounds. A round is cut into parts (walk.py: folder levels, flat levels split into
key ranges; manifest.py: one part per data file) that any number of seeder threads and processes
claim with SKIP LOCKED. Each page's rows, the parts it discovered and the part's cursor commit in one
transaction, so a seeder killed at any moment resumes its part after the last committed page (once
its lease expires; a seeder stopped by a signal or an error hands its part back at once).

A second round is a catch-up: keys not yet in the ledger are added, keys whose ETag or size changed
go back to pending as their new version (whatever their state: a worker copying the old version
loses its lease), keys listed with a version older than the row's are left alone and counted (a
catch-up never moves a row backwards: judge.py), and keys the round did not list are counted as
vanished and left alone.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import socket
import threading

import structlog
from botocore.client import BaseClient

from movers3 import routes
from movers3.exceptions import CopyError, Interrupted
from movers3.ledger.seeds import PageWrite, Part, PartSpec, SeedRound, Seeds
from movers3.seed import manifest, walk
from movers3.seed.entries import Entry
from movers3.seed.judge import Listed, judge
from movers3.settings import Settings
from movers3.transfer import s3

log = structlog.get_logger(__name__)

IDLE_MIN_SECONDS = 0.2
IDLE_MAX_SECONDS = 2.0


@dataclasses.dataclass
class SeedStats:
    """What this process did (other seed processes may have done the rest of the round)."""

    pages: int = 0
    listed: int = 0
    added: int = 0
    changed: int = 0
    older: int = 0  # listed with a version older than the one the row describes: left alone
    skipped: int = 0
    parts: int = 0
    resumed_after: str | None = None
    round: int = 0
    round_finished: bool = False


class Seeder:
    # Longer than most: the thread pool, the part loop and the two kinds of part read best side by side.
    def __init__(
        self,
        seeds: Seeds,
        client: BaseClient,
        settings: Settings,
        stop_event: threading.Event | None = None,
        *,
        manifest_uri: str | None = None,
        restart: bool = False,
        threads: int | None = None,
    ) -> None:
        self.seeds = seeds
        self.client = client
        self.settings = settings
        self.stopped = stop_event or threading.Event()
        self.manifest_uri = manifest_uri
        self.restart = restart
        self.threads = threads or settings.seed_threads
        self.folder = routes.folder(settings.old_prefix)
        self._stats = SeedStats()
        self._lock = threading.Lock()
        self._owner = _owner_id()

    def run(self) -> SeedStats:
        st = self.settings
        seed = self.seeds.seed_round(
            st.old_bucket, st.old_prefix, st.new_bucket, st.new_prefix, input=self.manifest_uri, restart=self.restart
        )
        self._stats.round = seed.round
        log.info(
            "seed_started",
            bucket=st.old_bucket,
            prefix=self.folder,
            round=seed.round,
            manifest=self.manifest_uri,
            threads=self.threads,
            joined=seed.planned,
        )
        if not seed.planned:
            self.seeds.seed_plan(seed, self._plan())
        errors: list[BaseException] = []
        workers = [
            threading.Thread(target=self._thread, args=(seed, i, errors), name=f"seed-{i}", daemon=True)
            for i in range(self.threads)
        ]
        for t in workers:
            t.start()
        for t in workers:
            t.join()
        if errors:
            raise errors[0]
        if self.stopped.is_set():
            raise Interrupted("seeding stopped; `movers3 seed` resumes where it stopped")
        log.info("seed_finished", **dataclasses.asdict(self._stats))
        if self._stats.skipped:
            log.warning(
                "seed_finished_with_skipped_keys",
                skipped=self._stats.skipped,
                reason="not in the ledger, so not copied: each is a key_skipped event with its reason, "
                "`movers3 status` counts them and `movers3 plan` lists examples",
            )
        return self._stats

    def _plan(self) -> list[PartSpec]:
        if self.manifest_uri is not None:
            return manifest.plan(self.manifest_uri, self.client, self.settings.old_bucket)
        return [PartSpec(prefix=self.folder)]

    # -- one thread ----------------------------------------------------------------------------

    def _thread(self, seed: SeedRound, index: int, errors: list[BaseException]) -> None:
        seeds = self.seeds if index == 0 else self.seeds.for_another_thread()
        owner = f"{self._owner}-{index}"
        try:
            self._work(seeds, seed, owner)
        except BaseException as exc:  # handed to run(), which raises the first
            self.stopped.set()
            errors.append(exc)
        finally:
            if seeds is not self.seeds:
                seeds.db.close()

    def _work(self, seeds: Seeds, seed: SeedRound, owner: str) -> None:
        idle = IDLE_MIN_SECONDS
        while not self.stopped.is_set():
            part = seeds.part_claim(seed, owner, self.settings.lease_seconds)
            if part is None:
                unfinished, _ = seeds.parts_unfinished(seed)
                if not unfinished:
                    return
                # Other seeders hold the rest (or a dead one's lease has yet to expire).
                self.stopped.wait(idle)
                idle = min(idle * 2, IDLE_MAX_SECONDS)
                continue
            idle = IDLE_MIN_SECONDS
            with self._lock:
                self._stats.parts += 1
                if part.cursor is not None and self._stats.resumed_after is None:
                    self._stats.resumed_after = part.cursor
            try:
                if part.file is not None:
                    self._read_file(seeds, seed, part, part.file)
                else:
                    self._list_level(seeds, seed, part)
            except BaseException:
                try:
                    seeds.part_release(part)
                except Exception:  # the lease expires on its own
                    log.warning("seed_part_not_released", part=part.id)
                raise
            if seeds.part_finish(seed, part, self.settings.old_bucket, self.folder):
                with self._lock:
                    self._stats.round_finished = True
                log.info("seed_round_finished", round=seed.round)

    def _list_level(self, seeds: Seeds, seed: SeedRound, part: Part) -> None:
        level = walk.Level(part.prefix or self.folder, part.after, part.upto)
        for step in walk.walk(self._list, self.settings.old_bucket, level, part.cursor):
            self._check_stop()
            page = step.page
            write = self._page(
                seeds,
                [Listed.from_listing(o) for o in page.files],
                cursor=page.cursor,
                cursor_rows=0,
                parts=[PartSpec(prefix=f) for f in page.folders],
            )
            if step.split:
                # The part now stops where the split begins; the ranges after it are parts of their own.
                write.narrow_to = step.split[0].after
                write.parts += [PartSpec(prefix=s.prefix, after=s.after, upto=s.upto) for s in step.split]
            self._write(seeds, seed, part, write)
            if step.split:
                log.info("seed_level_split", prefix=level.prefix, parts=len(step.split) + 1)

    def _read_file(self, seeds: Seeds, seed: SeedRound, part: Part, file: str) -> None:
        st = self.settings
        rows = part.cursor_rows  # data rows of the file read so far, committed with each page

        def mine(entry: Entry) -> bool:
            return entry.bucket == st.old_bucket and entry.key.startswith(self.folder)

        for chunk in manifest.chunks(
            file,
            part.file_md5,
            self.client,
            skip=part.cursor_rows,
            size=walk.PAGE_SIZE,
            stop=self.stopped,
            tries=st.max_attempts,
            keep=mine,
        ):
            self._check_stop()
            entries = [
                Listed(e.key, e.size, e.etag, e.storage_class, last_modified=e.last_modified) for e in chunk.entries
            ]
            rows += chunk.consumed
            write = self._page(seeds, _latest(entries), cursor=None, cursor_rows=rows, parts=[])
            # Rows the manifest named that could not be completed (gone since it was written): skipped keys.
            gone = dict(chunk.skipped)
            for key, reason in gone.items():
                log.warning("key_skipped", key=key, reason=reason)
            write.listed += len(gone)
            write.skipped += len(gone)
            self._write(seeds, seed, part, write)

    # -- one page ------------------------------------------------------------------------------

    def _page(
        self, seeds: Seeds, entries: list[Listed], *, cursor: str | None, cursor_rows: int, parts: list[PartSpec]
    ) -> PageWrite:
        st = self.settings
        judgement = judge(entries, st, lambda old, new: seeds.known(st.old_bucket, old, st.new_bucket, new))
        for entry, reason in judgement.skipped:
            log.warning("key_skipped", key=entry.key, reason=reason)
        if judgement.older:
            log.info(
                "rows_listed_older_than_copied",
                count=len(judgement.older),
                key=judgement.older[0][0].key,
                reason="listed with a version older than the one the ledger has (an inventory older than "
                "the copy, or a previous version made current again): left as they are",
            )
        if judgement.retargeted:
            log.warning(
                "rows_keep_their_destination",
                count=judgement.retargeted,
                reason="these keys are in the ledger with another new key (NEW_PREFIX changed?)",
            )
        return judgement.page_write(st, entries, cursor=cursor, cursor_rows=cursor_rows, parts=parts)

    def _write(self, seeds: Seeds, seed: SeedRound, part: Part, write: PageWrite) -> None:
        added, taken = seeds.seed_page(part, self.settings.lease_seconds, write, seed)
        for old_key, owner in taken:
            # Another seed gave the same new key to its source first: the ledger's unique key refused it.
            log.warning("key_skipped", key=old_key, reason=f"its new key already belongs to {owner}")
        with self._lock:
            stats = self._stats
            stats.pages += 1
            stats.listed += write.listed
            stats.added += added
            stats.changed += len(write.changes)
            stats.older += write.older
            stats.skipped += write.skipped + len(taken)
            pages, listed = stats.pages, stats.listed
        log.info(
            "seed_page",
            part=part.id,
            page=pages,
            listed=listed,
            added=added,
            changed=len(write.changes),
            parts_found=len(write.parts),
        )

    def _check_stop(self) -> None:
        if self.stopped.is_set():
            raise Interrupted("seeding stopped; `movers3 seed` resumes where it stopped")

    def _list(self, params: dict) -> dict:
        try:
            return s3.list_page(self.client, params, tries=self.settings.max_attempts, stop=self.stopped)
        except CopyError as exc:
            raise s3.storage_error(exc.__cause__ or exc, f"ListObjectsV2 on bucket {params['Bucket']!r}") from exc


def _latest(entries: list[Listed]) -> list[Listed]:
    """One entry per key (the last one given): a page must not insert a key twice."""
    return list({e.key: e for e in entries}.values())


def _owner_id() -> str:
    return f"seed-{socket.gethostname()[:80]}-{os.getpid()}-{secrets.token_hex(3)}"
