"""The upload journal: where copy and part threads record multipart uploads as they go, so that a
worker that dies mid-object leaves an upload the next worker resumes instead of one nobody knows
about. It has a connection of its own, apart from the worker loop's."""

from __future__ import annotations

import dataclasses
import threading

from movers3.exceptions import LeaseLost
from movers3.ledger.db import Database
from movers3.ledger.work import Row, Upload


class UploadJournal:
    """Where copy threads record multipart uploads as they go, so that a worker that dies mid-object
    leaves an upload the next worker resumes instead of one nobody knows about. Writes are guarded by
    the lease like every other write; `LeaseLost` tells the copy to stop. It also remembers, for this
    process, the latest upload of each row, so that a retried attempt continues its own upload."""

    def __init__(self, db: Database | None, owner: str) -> None:
        self.db = db  # None: remembered in this process only (a copy outside any ledger)
        self.owner = owner
        self._lock = threading.Lock()  # one connection, shared by the copy threads
        self._latest: dict[int, Upload | None] = {}

    @classmethod
    def open(cls, db: Database, owner: str) -> UploadJournal:
        """A journal for one worker's copy threads, on a connection apart from the worker loop's."""
        return cls(db.another(), owner)

    def current(self, row: Row) -> Upload | None:
        with self._lock:
            return self._latest.get(row.id, row.upload)  # None here: forgotten in this process

    def started(self, row: Row, upload: Upload) -> None:
        self._write(
            row,
            "rows_upload_start_if_owned",
            {"upload_id": upload.id, "source_etag": upload.source_etag, "part_size": upload.part_size},
        )
        with self._lock:
            self._latest[row.id] = dataclasses.replace(upload, parts={})

    def part_done(self, row: Row, upload_id: str, number: int, etag: str, md5: str | None) -> None:
        self._write(
            row, "rows_upload_part_if_owned", {"upload_id": upload_id, "number": number, "etag": etag, "md5": md5}
        )
        with self._lock:
            upload = self._latest.get(row.id)
            if upload is not None and upload.id == upload_id:
                upload.parts[number] = (etag, md5)

    def forget(self, row: Row) -> None:
        self._write(row, "rows_upload_forget_if_owned", {})
        with self._lock:
            self._latest[row.id] = None

    def release(self, row_id: int) -> None:
        """The row's outcome is written: its upload, if any, is the ledger's business again."""
        with self._lock:
            self._latest.pop(row_id, None)

    def _write(self, row: Row, query: str, params: dict) -> None:
        if self.db is None:
            return
        with self._lock:
            written = self.db.transaction(
                lambda tx: tx.execute(query, {**params, "id": row.id, "owner": self.owner, "token": row.token})
            )
        if not written:
            raise LeaseLost(f"row {row.id}: lease lost while recording its multipart upload")
