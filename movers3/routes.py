"""Where an object goes: prefixes are folders, and a key keeps its remainder byte for byte.

`/` names a bucket's root: the prefix ROOT (''), whose folder is every key of the bucket, keys at the
root level included; a key under it keeps its whole path (`a/b.png` at the root of one bucket becomes
`avatar/a/b.png` under `avatar`, and `avatar/a/b.png` becomes `a/b.png` at another's root).

Keys stay `str` in Python (boto3 speaks str) and become UTF-8 bytes only at the database boundary,
where they are stored as VARBINARY so that case, trailing spaces and Unicode normalisation survive.
"""

from __future__ import annotations

from movers3.exceptions import ConfigError

MAX_KEY_BYTES = 1024
ROOT = ""  # OLD_PREFIX=/ or NEW_PREFIX=/: the bucket's root
# Above every key: no UTF-8 text holds the byte 0xFF, so every key of a bucket sorts before it.
_PAST_EVERY_KEY = b"\xff"


def folder(prefix: str) -> str:
    """The listing prefix of a folder: `images` -> `images/`; the root's is '' (every key)."""
    return prefix + "/" if prefix != ROOT else ""


def route(bucket: str, prefix: str) -> str:
    """A folder as users read it: `bucket/images/`, and the root `bucket/`."""
    return f"{bucket}/{folder(prefix)}"


def new_key(old_key: str, old_prefix: str, new_prefix: str) -> str:
    """`images/a/b.png` under `images` becomes `avatar/a/b.png` under `avatar`."""
    head = folder(old_prefix)
    if not old_key.startswith(head):
        raise ValueError(f"key is not under the folder {head!r}")
    key = folder(new_prefix) + old_key[len(head) :]
    if not key:  # the folder's own marker (`images/`) brought to a root: S3 has no empty key
        raise ValueError("new key would be empty")
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise ValueError(f"new key would exceed {MAX_KEY_BYTES} bytes")
    return key


def to_db(key: str) -> bytes:
    return key.encode("utf-8")


def from_db(raw: bytes) -> str:
    return raw.decode("utf-8")


def check_prefix(name: str, value: str) -> str:
    """Validate a folder prefix and return it without trailing slashes; `/` is the bucket's root."""
    prefix = value.rstrip("/")
    if value and not prefix:
        return ROOT
    if not prefix.strip():  # blanks alone are an unset variable (`OLD_PREFIX= ` in a compose file), not a folder
        raise ConfigError(f"{name}: must name a folder, e.g. 'images' (empty prefixes are refused)")
    if prefix.startswith("/"):
        raise ConfigError(f"{name}: must not start with '/'")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in prefix):
        raise ConfigError(f"{name}: must not contain control characters")
    segments = prefix.split("/")
    if any(segment in ("", ".", "..") for segment in segments):
        raise ConfigError(f"{name}: must not contain empty, '.' or '..' path segments")
    if len(prefix.encode("utf-8")) > MAX_KEY_BYTES // 2:
        raise ConfigError(f"{name}: must be at most {MAX_KEY_BYTES // 2} bytes")
    return prefix


def overlaps(old_bucket: str, old_prefix: str, new_bucket: str, new_prefix: str) -> bool:
    """True when one route is the other's folder or inside it: copying would feed on its own output
    (or overwrite sources not yet copied). A bucket's root is around every folder of that bucket."""
    if old_bucket != new_bucket:
        return False
    a, b = folder(old_prefix), folder(new_prefix)
    return a.startswith(b) or b.startswith(a)


def folder_range(folder: str) -> dict[str, bytes]:
    """The keys under a folder as a byte range: `images/` <= key < `images0` ('/' + 1 is '0'); at
    the root (folder ''), every key."""
    start = to_db(folder)
    if not start:
        return {"folder": start, "folder_end": _PAST_EVERY_KEY}
    return {"folder": start, "folder_end": start[:-1] + bytes([start[-1] + 1])}
