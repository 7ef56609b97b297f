"""The listing walk: the key space under a folder cut into parts that list concurrently. The seeder
and `plan` both walk the source through `walk()`, so that a plan lists exactly what a seed would.

A part is one folder *level*: ListObjectsV2 with Delimiter '/' returns the level's files and its
sub-folders. The files (those whose keys fall in the part's (after, upto] range) become rows; each
sub-folder becomes a part of its own, for any seeder to claim. A flat level (many files, few
folders) is split into byte ranges of its files once its first page shows it is big.

Why levels and not plain key ranges: S3 lists keys in UTF-8 binary order, but servers built on a
file tree (SeaweedFS here) list a folder's whole subtree where the folder's name sorts, as if '/'
were the smallest byte: `a/b` before `a-c`. A key range that spans folders would then lose keys
on such a server. Within one level both orders agree (file names are compared byte by byte, and
Python's code-point order is UTF-8 byte order), so ranges are only ever cut among one level's files,
and every comparison here is on UTF-8 bytes, explicitly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator

DELIMITER = "/"
PAGE_SIZE = 1000
# The largest code point: `prefix + c + MAX_CHAR` sorts after (nearly) every key that starts with
# `prefix + c`, so a listing that starts after it skips to the next first character.
MAX_CHAR = "\U0010ffff"
# How many ranges a flat level is cut into at once, and the requests spent finding where.
SPLIT_PARTS = 16
SPLIT_PROBES = 64
# A page is flat enough to split its level when at least this share of it are files.
FLAT_SHARE = 0.5

List = Callable[[dict], dict]


def utf8(key: str) -> bytes:
    return key.encode("utf-8")


@dataclasses.dataclass(frozen=True)
class Level:
    """Files of the level `prefix` whose keys are in (after, upto]; None is unbounded."""

    prefix: str
    after: str | None = None
    upto: str | None = None


@dataclasses.dataclass
class Page:
    files: list[dict]  # Contents entries inside the part's range, in listing order
    folders: list[str]  # sub-folders met (CommonPrefixes)
    cursor: str | None  # where the part resumes after this page (StartAfter)
    end: bool  # the part has nothing more
    truncated: bool  # the server had more entries (even if past the range)


def pages(
    call: List, bucket: str, level: Level, cursor: str | None, *, page_size: int = PAGE_SIZE, extra: dict | None = None
) -> Iterator[Page]:
    """The part's pages, from `cursor` (or its lower bound). Files come in byte order relative to each
    other on any server, so the first file past `upto` ends the part."""
    start = cursor if cursor is not None else level.after
    params = {"Bucket": bucket, "Prefix": level.prefix, "Delimiter": DELIMITER, "MaxKeys": page_size, **(extra or {})}
    if start is not None:
        params["StartAfter"] = start
    upto = utf8(level.upto) if level.upto is not None else None
    while True:
        response = call(params)
        contents = response.get("Contents") or []
        folders = [p["Prefix"] for p in response.get("CommonPrefixes") or []]
        files, past = [], False
        for obj in contents:
            if upto is not None and utf8(obj["Key"]) > upto:
                past = True
                break
            if level.after is None or utf8(obj["Key"]) > utf8(level.after):
                files.append(obj)
        truncated = bool(response.get("IsTruncated"))
        last = _last_entry(contents, folders)
        token = response.get("NextContinuationToken")
        end = past or not truncated or last is None
        yield Page(files, folders, last if last is not None else start, end, truncated)
        if end:
            return
        if not token or token == params.get("ContinuationToken"):
            # Without a token, StartAfter the last entry resumes the same listing.
            params = {k: v for k, v in params.items() if k != "ContinuationToken"}
            params["StartAfter"] = last
        else:
            params = {**{k: v for k, v in params.items() if k != "StartAfter"}, "ContinuationToken": token}


@dataclasses.dataclass
class Step:
    """One page of a part, and the ranges its level was split into at this page (if it was)."""

    page: Page
    split: list[Level]  # the rest of a flat level, for others to list; this walk stops before them


def walk(
    call: List, bucket: str, level: Level, cursor: str | None = None, *, extra: dict | None = None
) -> Iterator[Step]:
    """The pages of one part, from `cursor`. The first page that shows the level is flat (mostly
    files, and more to come) splits the rest of it: the ranges past the first split point are handed
    to the caller in that page's step, and this walk goes on only up to that point."""
    may_split = level.upto is None
    while True:
        split: list[Level] = []
        for page in pages(call, bucket, level, cursor, extra=extra):
            if (
                may_split
                and not page.end
                and page.cursor is not None
                and len(page.files) >= FLAT_SHARE * (len(page.files) + len(page.folders))
            ):
                may_split = False
                points = split_points(call, bucket, level, page.cursor)
                if points:
                    split = [Level(level.prefix, a, b) for a, b in zip(points, [*points[1:], level.upto], strict=True)]
                    level = dataclasses.replace(level, upto=points[0])
            yield Step(page, split)
            cursor = page.cursor
            if split:
                break  # list again from the cursor, now bounded by the first split point
        if not split:
            return


def _last_entry(contents: list[dict], folders: list[str]) -> str | None:
    """The last entry of a page in the server's own order: what StartAfter must name to go on."""
    candidates = [o["Key"] for o in contents[-1:]] + folders[-1:]
    if not candidates:
        return None
    # The server interleaves files and folders in its own order; the greater of the two last ones
    # (in that order) is the page's end. Both orders agree on names without '/', and a folder
    # compares as its name here, which is how either kind of server places it.
    return max(candidates, key=lambda k: utf8(k.rstrip(DELIMITER)) + (b"\x00" if k.endswith(DELIMITER) else b""))


def split_points(
    call: List, bucket: str, level: Level, cursor: str, *, parts: int = SPLIT_PARTS, probes: int = SPLIT_PROBES
) -> list[str]:
    """Boundaries that cut the rest of a flat level (files after `cursor`, up to `level.upto`) into
    up to `parts` ranges. Each request skips from one next character to the following one (a loose
    index scan); where the names after the cursor share the cursor's next characters, it looks one
    character deeper along the cursor. Any set of boundaries after the cursor is correct; these
    only make the ranges even for names such as hex ids, dates or counters."""
    floor = utf8(cursor)
    ceiling = utf8(level.upto) if level.upto is not None else None
    points: set[str] = set()
    stem, spent = level.prefix, 0
    while spent < probes and len(points) < parts - 1:
        after: str | None = cursor if utf8(cursor) > utf8(stem) else None
        while spent < probes:
            params = {"Bucket": bucket, "Prefix": stem, "Delimiter": DELIMITER, "MaxKeys": 1}
            if after is not None:
                params["StartAfter"] = after
            response = call(params)
            spent += 1
            names = [o["Key"] for o in response.get("Contents") or []] + [
                p["Prefix"] for p in response.get("CommonPrefixes") or []
            ]
            if not names:
                break
            name = min(names, key=utf8)
            if len(name) == len(stem):
                after = name
                continue
            step = stem + name[len(stem)]
            after = step + MAX_CHAR
            if step.endswith(DELIMITER):
                continue
            if utf8(step) > floor and (ceiling is None or utf8(step) < ceiling):
                points.add(step)
        # Names that continue the cursor's own next character are not split yet: one level deeper.
        if len(cursor) <= len(stem) or cursor[len(stem)] == DELIMITER:
            break
        stem = cursor[: len(stem) + 1]
    ordered = sorted(points, key=utf8)
    if len(ordered) > parts - 1:
        step = len(ordered) / (parts - 1)
        ordered = [ordered[int(i * step)] for i in range(parts - 1)]
    return ordered
