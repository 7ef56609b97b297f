"""`movers3 report`: the ledger as CSV or JSON lines, the old and new route of every object.

CSV cells that a spreadsheet would take for a formula (starting with =, +, -, @, tab or CR) get a
leading apostrophe, as OWASP recommends; docs/operations.md says so. JSON lines are for programs and keep every
value exactly. Both writers take an iterator and write row by row, so a ledger of any size streams
through in constant memory."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from typing import IO

REPORT_COLUMNS = (
    "old_bucket",
    "old_key",
    "new_bucket",
    "new_key",
    "state",
    "size",
    "attempts",
    "error",
    "source_etag",
    "dest_etag",
    "copy_method",
    "verified_by",
    "checksum",
    "done_at",
    "source_deleted_at",  # set: done, and `delete-source` removed the source on purpose
    "id",
)
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
REPORT_FORMATS = ("csv", "jsonl")


def write_csv(rows: Iterable[dict], out: IO[str]) -> int:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(REPORT_COLUMNS)
    count = 0
    for row in rows:
        writer.writerow([spreadsheet_safe(row[c]) for c in REPORT_COLUMNS])
        count += 1
    return count


def write_jsonl(rows: Iterable[dict], out: IO[str]) -> int:
    count = 0
    for row in rows:
        out.write(json.dumps({c: row[c] for c in REPORT_COLUMNS}, ensure_ascii=False) + "\n")
        count += 1
    return count


def write_report(rows: Iterable[dict], out: IO[str], format: str) -> int:
    return write_jsonl(rows, out) if format == "jsonl" else write_csv(rows, out)


def spreadsheet_safe(value: object) -> object:
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value
