"""Keys that break naive tools. SeaweedFS keeps all of these exactly; it refuses '.' and '..'
segments, folds '//' and turns backslashes into slashes, so such keys are left to a moto-backed suite."""

import unicodedata

HOSTILE = [
    "Case.png",
    "case.png",
    "trailing ",
    "trailing",
    unicodedata.normalize("NFC", "Café.png"),
    unicodedata.normalize("NFD", "Café.png"),
    "quote'\"`.png",
    "pct%20plus+q?hash#.png",
    "semi;DROP TABLE x;--",
    "emoji-😀.png",
    "sp ace/de ep/f",
    "=formula",
    "new\nline",
    "ctl\x01char",
]
# About 950 bytes with a test's folder prefix, in segments of at most 200 bytes.
LONG = "long/" + "/".join(["é" * 100] * 4) + "/" + "ü" * 60
