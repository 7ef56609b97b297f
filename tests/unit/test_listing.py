"""The split listing's pure logic against a fake server that orders keys either as S3 does (UTF-8
bytes) or as a file-tree server does (a folder where its name sorts, as if '/' were the lowest
byte). Every split must give back every key exactly once in both."""

import itertools

import pytest

from movers3.seed import walk as listing

KEYS = sorted(
    {
        "r/a-b",
        "r/a.c",
        "r/a/x",
        "r/a/y/z",
        "r/a0",
        "r/b/1",
        "r/b!",
        "r/Case",
        "r/case",
        "r/trailing ",
        "r/trailing",
        "r/é",
        "r/e\u0301",
        "r/😀",
        "r/\uffff",
        "r/~",
        *(f"r/f{i:04x}" for i in range(700)),
        *(f"r/IMG_{i:05d}" for i in range(600)),
        *(f"r/d/{i:03d}" for i in range(30)),
    }
)


# S3 may hold a key and a folder of the same name; a file-tree server can't.
KEYS_S3 = sorted(KEYS + ["r/a", "r/b"])


def s3_order(key: str) -> bytes:
    return key.encode()


def tree_order(key: str) -> tuple:
    return tuple(part.encode() for part in key.split("/"))


class FakeServer:
    """ListObjectsV2 with Prefix, Delimiter, StartAfter, MaxKeys and continuation tokens."""

    def __init__(self, keys, order):
        self.order = order
        self.entries = keys
        self.calls = 0

    def __call__(self, params: dict) -> dict:
        self.calls += 1
        prefix, delimiter = params["Prefix"], params.get("Delimiter")
        after = params.get("ContinuationToken") or params.get("StartAfter")
        seen, out = set(), []
        for key in sorted(self.entries, key=self.order):
            if not key.startswith(prefix):
                continue
            rest = key[len(prefix) :]
            if delimiter and delimiter in rest:
                entry = (prefix + rest.split(delimiter)[0] + delimiter, True)
            else:
                entry = (key, False)
            if entry in seen:
                continue
            position = entry[0][:-1] if entry[1] and self.order is tree_order else entry[0]
            if after is not None and self.order(position) <= self.order(after):
                continue
            seen.add(entry)
            out.append(entry)
        page = out[: params["MaxKeys"]]
        truncated = len(out) > len(page)
        response = {
            "Contents": [{"Key": k, "Size": 1, "ETag": '"e"'} for k, folder in page if not folder],
            "CommonPrefixes": [{"Prefix": k} for k, folder in page if folder],
            "IsTruncated": truncated,
        }
        if truncated:
            last = page[-1]
            response["NextContinuationToken"] = last[0][:-1] if last[1] and self.order is tree_order else last[0]
        return response


def crawl(server, *, split_every_page: bool, page_size: int) -> list[str]:
    """Every part of a seed, run to the end in one process: what the seeder's threads do."""
    queue = [listing.Level("r/")]
    found: list[str] = []
    done_parts = set()
    while queue:
        level = queue.pop(0)
        if (level.prefix, level.after) in done_parts:
            continue
        done_parts.add((level.prefix, level.after))
        cursor, restart = None, True
        while restart:
            restart = False
            for page in listing.pages(server, "b", level, cursor, page_size=page_size):
                found.extend(o["Key"] for o in page.files)
                queue.extend(listing.Level(f) for f in page.folders)
                if split_every_page and level.upto is None and not page.end:
                    points = listing.split_points(server, "b", level, page.cursor, parts=4, probes=20)
                    if points:
                        bounds = points + [None]
                        ranges = zip(points, bounds[1:], strict=True)
                        queue.extend(listing.Level(level.prefix, a, b) for a, b in ranges)
                        level = listing.Level(level.prefix, level.after, points[0])
                        cursor, restart = page.cursor, True
                        break
                cursor = page.cursor
    return found


@pytest.mark.parametrize("order", [s3_order, tree_order], ids=["s3", "file-tree"])
@pytest.mark.parametrize("split", [False, True])
@pytest.mark.parametrize("page_size", [7, 100, 1000])
def test_every_key_exactly_once_whatever_the_order_and_splits(order, split, page_size):
    keys = KEYS_S3 if order is s3_order else KEYS
    found = crawl(FakeServer(keys, order), split_every_page=split, page_size=page_size)
    assert sorted(found) == keys  # nothing lost, nothing twice


def test_the_two_orders_really_differ_on_these_keys():
    assert sorted(KEYS, key=s3_order) != sorted(KEYS, key=tree_order)


def test_python_string_order_is_utf8_byte_order():
    # S3 orders keys by UTF-8 bytes; Python compares code points. They agree (UTF-8 keeps code point
    # order), including astral characters against the top of the BMP, which UTF-16 would not.
    samples = ["a", "\x7f", "\x80", "é", "\u0800", "\uffff", "\U00010000", "😀", "\U0010ffff", "a/", "a-", "a\x00"]
    for x, y in itertools.permutations(samples, 2):
        assert (x < y) == (x.encode() < y.encode())


def test_split_points_follow_a_shared_stem_and_stay_after_the_cursor():
    server = FakeServer([f"r/IMG_{i:05d}" for i in range(5000)], s3_order)
    points = listing.split_points(server, "b", listing.Level("r/"), "r/IMG_00100", parts=8, probes=40)
    # Every name starts with 'IMG_0': the boundaries are found four characters deeper.
    assert len(points) == 7 and all(p.startswith("r/IMG_0") and p.encode() > b"r/IMG_00100" for p in points)
    assert points == sorted(points, key=str.encode)
    assert server.calls <= 40
    mixed = FakeServer(KEYS, s3_order)
    points = listing.split_points(mixed, "b", listing.Level("r/"), "r/IMG_00100", parts=8, probes=40)
    assert len(points) == 7 and all(p.encode() > b"r/IMG_00100" and "/" not in p[2:] for p in points)


def walk_all(server) -> tuple[list[str], int]:
    """Every part walked with `walk.walk`, the seeder's and plan's own loop: the keys, and the splits."""
    queue, found, splits = [listing.Level("r/")], [], 0
    while queue:
        for step in listing.walk(server, "b", queue.pop(0)):
            found.extend(o["Key"] for o in step.page.files)
            queue.extend(listing.Level(f) for f in step.page.folders)
            queue.extend(step.split)
            splits += bool(step.split)
    return found, splits


@pytest.mark.parametrize("order", [s3_order, tree_order], ids=["s3", "file-tree"])
def test_the_walk_splits_a_flat_level_once_and_gives_every_key_exactly_once(order):
    keys = KEYS_S3 if order is s3_order else KEYS
    found, splits = walk_all(FakeServer(keys, order))
    assert sorted(found) == keys
    # "r/" holds 1,300 files on its first page of 1,000: flat, so its rest is split, and only once
    # (the ranges it hands out are never split again).
    assert splits == 1


def test_a_level_of_folders_is_not_split():
    server = FakeServer([f"r/{d:04d}/x" for d in range(1500)], s3_order)
    found, splits = walk_all(server)
    assert len(found) == 1500 and splits == 0
