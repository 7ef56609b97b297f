"""A PNG's pixels with the standard library alone (zlib): enough to tell what a browser's screenshot shows."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}  # colour type -> samples per pixel (8-bit, no palette)


def read_rows(path: Path) -> tuple[int, int, int, list[bytes]]:
    """(width, height, samples per pixel, unfiltered rows) of an 8-bit, non-interlaced PNG."""
    data = path.read_bytes()
    assert data.startswith(_SIGNATURE), "not a PNG"
    pos, idat = len(_SIGNATURE), b""
    width = height = channels = 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and colour in _CHANNELS and not interlace, (depth, colour, interlace)
            channels = _CHANNELS[colour]
        elif kind == b"IDAT":
            idat += body
    raw = zlib.decompress(idat)
    stride = width * channels
    assert len(raw) == height * (stride + 1), "truncated image data"
    rows: list[bytes] = []
    prior = bytearray(stride)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        _unfilter(kind, line, prior, channels)
        rows.append(bytes(line))
        prior = line
    return width, height, channels, rows


def _unfilter(kind: int, line: bytearray, prior: bytearray, bpp: int) -> None:
    if kind == 0:
        return
    if kind == 2:
        line[:] = bytes((a + b) & 0xFF for a, b in zip(line, prior, strict=True))
        return
    for i in range(len(line)):
        left = line[i - bpp] if i >= bpp else 0
        if kind == 1:
            line[i] = (line[i] + left) & 0xFF
        elif kind == 3:
            line[i] = (line[i] + ((left + prior[i]) >> 1)) & 0xFF
        elif kind == 4:
            up_left = prior[i - bpp] if i >= bpp else 0
            p = left + prior[i] - up_left
            pa, pb, pc = abs(p - left), abs(p - prior[i]), abs(p - up_left)
            predictor = left if pa <= pb and pa <= pc else prior[i] if pb <= pc else up_left
            line[i] = (line[i] + predictor) & 0xFF
        else:
            raise AssertionError(f"unknown PNG filter {kind}")


def colours(path: Path) -> dict[tuple[int, ...], int]:
    """How many pixels of each colour (RGB, alpha dropped) the image has."""
    width, _, channels, rows = read_rows(path)
    found: dict[tuple[int, ...], int] = {}
    for row in rows:
        for x in range(width):
            pixel = tuple(row[x * channels : x * channels + min(channels, 3)])
            found[pixel] = found.get(pixel, 0) + 1
    return found
