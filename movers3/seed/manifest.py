"""Seeding without listing: an S3 Inventory report, or a plain CSV of
bucket,key[,size,etag[,class[,last_modified]]].

`movers3 seed --manifest FILE_OR_S3_URI` takes either
- an S3 Inventory `manifest.json` (CSV format): its `fileSchema` gives the column order, its
  `files` the gzip'd CSV data files (in `destinationBucket`, or, for a local manifest, in the local
  copy of that bucket: the first ancestor folder of the manifest that holds the file's key). Keys in
  inventory CSV are URL-encoded with '+' for space (form encoding) and are decoded here. Only
  current versions that are not delete markers are seeded. Each data file's MD5 is checked
  against the manifest once it has been read. The LastModifiedDate column is read when the
  fileSchema has it: a catch-up compares it with the version the ledger has (judge.py).
- a plain CSV (optionally .gz) of `bucket,key[,size,etag[,storage_class[,last_modified]]]`, keys as
  they are (CSV quoting carries commas and newlines), an optional header row, last_modified in ISO
  8601 (as a listing or an inventory prints it; a row without it is of unknown date: in a catch-up,
  any other ETag or size queues its row again). Rows without size or ETag are completed with a
  HeadObject (the seeder then needs s3:GetObject on the old bucket), retried like any request. A key
  the HeadObject finds gone (deleted since the CSV was written) is handed back as skipped, with its
  reason, and the seed goes on; so is a key refused for a reason of its own. A failure that is the
  role's or the configuration's (AccessDenied on every HeadObject of a page, a missing bucket, wrong
  credentials), or a server that stays unavailable, stops the seed with one line: the resume reads
  the same page again.

Data files are read as a stream (gzip over the file or over GetObject's body), one page at a time:
memory stays flat whatever their size. Parquet and ORC inventories are refused with a message:
reading them needs pyarrow, and Parquet needs random access (its footer comes last).
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import hashlib
import io
import json
import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from urllib.parse import unquote_plus, urlsplit

import botocore.exceptions
from botocore.client import BaseClient

from movers3.exceptions import ConfigError, CopyError, StorageError
from movers3.ledger.seeds import PartSpec
from movers3.seed.entries import Chunk, Entry, Heads
from movers3.transfer import s3

READ_ATTEMPTS = 3
# Inventory columns movers3 reads (any others are ignored).
INVENTORY_COLUMNS = ("Bucket", "Key", "Size", "ETag", "StorageClass", "LastModifiedDate", "IsLatest", "IsDeleteMarker")


@dataclasses.dataclass(frozen=True)
class DataFile:
    """What a part records about its file: where it is and how to read it."""

    uri: str
    format: str  # inventory-csv | csv
    schema: tuple[str, ...] = ()

    def encode(self) -> str:
        return json.dumps({"uri": self.uri, "format": self.format, "schema": list(self.schema)})

    @classmethod
    def decode(cls, text: str) -> DataFile:
        data = json.loads(text)
        return cls(data["uri"], data["format"], tuple(data.get("schema") or ()))


def plan(source: str, client: BaseClient, old_bucket: str) -> list[PartSpec]:
    """The parts of a manifest seed: one per data file."""
    head = _read_small(source, client)
    if not _looks_like_json(head):
        return [PartSpec(file=DataFile(source, "csv").encode(), ordinal=0)]
    try:
        doc = json.loads(head)
    except ValueError as exc:
        raise ConfigError(f"--manifest: {source} is not valid JSON ({exc})") from None
    fmt = str(doc.get("fileFormat", "")).upper()
    if fmt != "CSV":
        raise ConfigError(
            f"--manifest: inventory format {fmt or 'unknown'} is not supported: configure the "
            "S3 Inventory report as CSV (Parquet and ORC would need pyarrow)"
        )
    schema = tuple(c.strip() for c in str(doc.get("fileSchema", "")).split(","))
    missing = [c for c in ("Bucket", "Key", "Size", "ETag") if c not in schema]
    if missing:
        raise ConfigError(
            f"--manifest: the inventory's fileSchema lacks {', '.join(missing)}: add the Size "
            "and ETag fields to the inventory configuration"
        )
    source_bucket = doc.get("sourceBucket")
    if source_bucket and source_bucket != old_bucket:
        raise ConfigError(f"--manifest: the inventory is of bucket {source_bucket!r}, not OLD_BUCKET {old_bucket!r}")
    files = doc.get("files") or []
    if not files:
        raise ConfigError(f"--manifest: {source} lists no data files")
    parts = []
    for ordinal, item in enumerate(files):
        uri = _data_file_uri(source, str(doc.get("destinationBucket", "")), item["key"])
        parts.append(
            PartSpec(
                file=DataFile(uri, "inventory-csv", schema).encode(), file_md5=item.get("MD5checksum"), ordinal=ordinal
            )
        )
    return parts


def chunks(
    file: str,
    md5: str | None,
    client: BaseClient,
    *,
    skip: int,
    size: int,
    stop: threading.Event,
    tries: int,
    keep: Callable[[Entry], bool] = lambda e: True,
) -> Iterator[Chunk]:
    """The file's entries that `keep` accepts, in chunks of `size` data rows, after the first `skip`
    rows. A read that fails midway is reopened and skipped forward, a few times. Rows completed with a
    HeadObject get `tries` tries each; those that can't be are the chunk's `skipped`."""
    data = DataFile.decode(file)
    heads = Heads(client, stop, tries)
    done = skip
    for attempt in range(READ_ATTEMPTS):
        try:
            for chunk in _chunks_once(data, md5, client, skip=done, size=size, heads=heads, keep=keep):
                done += chunk.consumed
                yield chunk
            return
        except CopyError as exc:  # a retryable read failure (reset, timeout, 5xx)
            if not exc.retryable or attempt == READ_ATTEMPTS - 1 or stop.is_set():
                raise StorageError(f"reading {data.uri}: {exc}") from exc


def _chunks_once(
    data: DataFile,
    md5: str | None,
    client: BaseClient,
    *,
    skip: int,
    size: int,
    heads: Heads,
    keep: Callable[[Entry], bool],
) -> Iterator[Chunk]:
    with _open(data.uri, client) as raw:
        hashed = _Hashing(raw)
        text = io.TextIOWrapper(_maybe_gunzip(hashed, data), encoding="utf-8", newline="")
        reader = csv.reader(text)
        parse = _inventory_row(data.schema) if data.format == "inventory-csv" else _plain_row()
        entries: list[Entry] = []
        consumed = 0
        seen = 0
        try:
            for record in reader:
                seen += 1
                if seen <= skip:
                    continue
                consumed += 1
                entry = parse(record)
                if entry is not None and keep(entry):
                    entries.append(entry)
                if consumed >= size:
                    yield heads.chunk(entries, consumed)
                    entries, consumed = [], 0
        except (gzip.BadGzipFile, EOFError, csv.Error, UnicodeDecodeError) as exc:
            raise StorageError(f"reading {data.uri}: not a readable {data.format} file ({exc})") from exc
        except OSError as exc:  # the connection under a streamed body
            raise CopyError(f"{type(exc).__name__}: {exc}", code=type(exc).__name__, retryable=True) from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise s3.classify(exc, f"GetObject {data.uri}") from exc
        if entries or consumed:
            yield heads.chunk(entries, consumed)
        hashed.drain()
        if md5 and hashed.hexdigest() != md5.lower():
            raise StorageError(f"reading {data.uri}: MD5 {hashed.hexdigest()} differs from the manifest's {md5}")


def _inventory_row(schema: tuple[str, ...]):
    index = {name: schema.index(name) for name in INVENTORY_COLUMNS if name in schema}

    def parse(record: list[str]) -> Entry | None:
        def cell(name: str) -> str:
            i = index.get(name)
            return record[i] if i is not None and i < len(record) else ""

        if cell("IsDeleteMarker").lower() == "true" or cell("IsLatest").lower() == "false":
            return None
        if len(record) < len(schema):
            raise StorageError(f"an inventory row has {len(record)} fields, the fileSchema {len(schema)}")
        return Entry(
            cell("Bucket"),
            unquote_plus(cell("Key")),
            int(cell("Size") or 0),
            s3.bare_etag(cell("ETag")),
            cell("StorageClass") or None,
            _date(cell("LastModifiedDate")),
        )

    return parse


def _plain_row():
    first = [True]

    def parse(record: list[str]) -> Entry | None:
        header, first[0] = first[0], False
        if not record or (len(record) == 1 and not record[0]):
            return None
        if header and [c.strip().lower() for c in record[:2]] == ["bucket", "key"]:
            return None
        if len(record) < 2:
            raise StorageError("a CSV row needs at least bucket,key")
        bucket, key = record[0], record[1]
        size = int(record[2]) if len(record) > 2 and record[2] != "" else -1
        etag = s3.bare_etag(record[3]) if len(record) > 3 else ""
        storage_class = record[4] or None if len(record) > 4 else None
        modified = _date(record[5]) if len(record) > 5 else None
        return Entry(bucket, key, size, etag, storage_class, modified)

    return parse


def _date(text: str) -> datetime | None:
    try:
        return s3.last_modified(text)
    except ValueError as exc:
        raise StorageError(f"a manifest row's last-modified date: {exc}") from None


def _data_file_uri(manifest: str, destination_bucket: str, key: str) -> str:
    if manifest.startswith("s3://"):
        bucket = destination_bucket.rsplit(":", 1)[-1] or urlsplit(manifest).netloc
        return f"s3://{bucket}/{key}"
    base = Path(manifest).resolve().parent
    for folder in (base, *base.parents):
        candidate = folder / key
        if candidate.is_file():
            return str(candidate)
    name = Path(manifest).parent / Path(key).name
    if name.is_file():
        return str(name)
    raise ConfigError(f"--manifest: data file {key!r} not found under any folder above {manifest}")


def _split_s3(uri: str) -> tuple[str, str]:
    parts = urlsplit(uri)
    if not parts.netloc or not parts.path.lstrip("/"):
        raise ConfigError(f"--manifest: {uri!r} is not of the form s3://bucket/key")
    return parts.netloc, parts.path[1:]


class _open:
    """A local file or an S3 object (GetObject streaming body), as a binary stream."""

    def __init__(self, uri: str, client: BaseClient) -> None:
        self.uri, self.client, self.stream = uri, client, None

    def __enter__(self):
        if self.uri.startswith("s3://"):
            bucket, key = _split_s3(self.uri)
            try:
                self.stream = self.client.get_object(Bucket=bucket, Key=key)["Body"]
            except botocore.exceptions.ClientError as exc:
                raise s3.storage_error(exc, f"GetObject {self.uri}") from exc
            except botocore.exceptions.BotoCoreError as exc:
                raise s3.classify(exc, f"GetObject {self.uri}") from exc
        else:
            try:
                self.stream = open(self.uri, "rb")  # noqa: SIM115 (closed by __exit__)
            except OSError as exc:
                raise ConfigError(f"--manifest: cannot read {self.uri}: {exc.strerror}") from None
        return self.stream

    def __exit__(self, *exc) -> None:
        if self.stream is not None:
            self.stream.close()


def _read_small(uri: str, client: BaseClient, limit: int = 64 * 1024 * 1024) -> str:
    """The manifest's text (a manifest.json is small); a CSV is only peeked at."""
    with _open(uri, client) as stream:
        head = stream.read(1)
        if head != b"{":
            return head.decode("latin-1")
        rest = stream.read(limit)
    return (head + rest).decode("utf-8")


def _looks_like_json(text: str) -> bool:
    return text.startswith("{")


def _maybe_gunzip(stream, data: DataFile):
    if data.format == "inventory-csv" or data.uri.endswith(".gz"):
        return gzip.GzipFile(fileobj=stream, mode="rb")
    return stream


class _Hashing(io.RawIOBase):
    """Passes bytes through and computes their MD5, for the manifest's per-file checksum."""

    def __init__(self, stream) -> None:
        self.stream = stream
        self.md5 = hashlib.md5()  # noqa: S324 (the manifest's checksum is MD5)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self.stream.read(len(buffer))
        self.md5.update(data)
        buffer[: len(data)] = data
        return len(data)

    def drain(self) -> None:
        """Read (and hash) what the CSV reader left, e.g. the gzip trailer."""
        while chunk := self.stream.read(1024 * 1024):
            self.md5.update(chunk)

    def hexdigest(self) -> str:
        return self.md5.hexdigest()
