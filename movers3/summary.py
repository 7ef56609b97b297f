"""`movers3 report --summary FILE`: the sign-off page of a migration, one self-contained HTML file.

Inline CSS and inline SVG, no script, no font, image or link to fetch (a Content-Security-Policy of
`default-src 'none'` says so to the browser): it opens from a mail attachment or an archive years
later. Everything on it comes from the ledger, read in a bounded number of aggregate queries (the rate
chart and the failures are grouped by the server), so a ledger of 10 million rows gives the same small
page. Every value from the ledger (keys, errors, buckets) is HTML-escaped, its control characters
shown as escapes."""

from __future__ import annotations

import dataclasses
import html
import string
from datetime import UTC, datetime, timedelta

from movers3 import logs, routes
from movers3.ledger.reads import Counts, FailureCode, Reads, SeedRoute
from movers3.ledger.schema import STATES
from movers3.status import ERROR_CODE, duration
from movers3.verify import MISMATCH_ERROR_PREFIX

# The chart has at most this many intervals, each as wide as the first of these (microseconds) that
# keeps it so, else a whole number of days.
MAX_INTERVALS = 120
_SECOND = 1_000_000
_DAY = 86_400 * _SECOND
INTERVAL_WIDTHS = tuple(
    int(s * _SECOND)
    for s in (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200)
)
# Error codes shown, and example rows shown of each.
MAX_CODES = 20
EXAMPLES_PER_CODE = 3
# Seeds listed by name.
MAX_SEEDS = 50
# What each `verified_by` says about a copy (movers3/transfer/copier.py).
PROOFS = {
    "etag": "the copy has the source's MD5 ETag",
    "md5": "MD5 computed while streaming = source ETag = destination's",
    "md5-dest": "MD5 computed while streaming = destination's (the source ETag is not an MD5)",
    "md5+parts": "every part's MD5 matched the destination's, and the whole object's the source's",
    "parts-md5": "every part's MD5 matched the destination's",
    "size+pinned": "server-side parts, each pinned to the source version, covering exactly its size",
    "pinned": "a server-side copy pinned to the source version (ETags not MD5s)",
    "": "not recorded (copied before the ledger kept it)",
}
# The pattern the server matches a failed row's error against: status.error_code_of's, whole message.
CODE_PATTERN = "(?s)" + ERROR_CODE.pattern + ".*"


@dataclasses.dataclass(frozen=True)
class Summary:
    counts: Counts
    seeds: list[SeedRoute]
    started: datetime | None  # the first seed round's start (UTC)
    first_done: datetime | None
    last_done: datetime | None
    width_us: int  # of one chart interval
    intervals: list[tuple[int, int, int]]  # (interval number, rows, bytes)
    failures: list[FailureCode]
    proofs: list[tuple[str, int, int]]
    verify_failed: tuple[int, int]
    deletions: tuple[int, int, datetime | None, datetime | None]
    generated: datetime

    @property
    def remaining(self) -> int:
        return self.counts.rows["pending"] + self.counts.rows["in_progress"]

    @property
    def end(self) -> datetime | None:
        """The last copy's finish, once no row is left to copy."""
        return self.last_done if not self.remaining else None


def gather(reads: Reads) -> Summary:
    counts = reads.counts()
    seeds, started = reads.seed_routes(MAX_SEEDS + 1)
    first_done, last_done = reads.done_span()
    width = interval_width(first_done, last_done)
    intervals = reads.done_per_interval(first_done, last_done, width) if first_done and last_done else []
    return Summary(
        counts=counts,
        seeds=seeds,
        started=started or first_done,
        first_done=first_done,
        last_done=last_done,
        width_us=width,
        intervals=intervals,
        failures=reads.failures_by_code(CODE_PATTERN, MAX_CODES, EXAMPLES_PER_CODE),
        proofs=reads.done_by_proof(),
        verify_failed=reads.failed_with_error_prefix(MISMATCH_ERROR_PREFIX),
        deletions=reads.source_deletions(),
        generated=datetime.now(UTC).replace(tzinfo=None),
    )


def interval_width(first: datetime | None, last: datetime | None) -> int:
    """Microseconds per chart interval: the narrowest that spans first..last in MAX_INTERVALS."""
    span = _micros(last - first) if first and last else 0
    for width in INTERVAL_WIDTHS:
        if span // width < MAX_INTERVALS:
            return width
    return (span // (MAX_INTERVALS * _DAY) + 1) * _DAY


def write(summary: Summary, path: str) -> None:
    with open(path, "w", encoding="utf-8") as out:
        out.write(render(summary))


def render(s: Summary) -> str:
    body = "\n".join(
        (
            _verdict(s),
            _routes(s),
            _times(s),
            _states(s),
            _rate(s),
            _failures(s),
            _verification(s),
            _deletions(s),
        )
    )
    return _PAGE.substitute(css=_CSS, body=body, generated=e(_when(s.generated)))


# -- the sections ------------------------------------------------------------------------------------


def _verdict(s: Summary) -> str:
    rows = s.counts.rows
    if s.counts.total == 0:
        return '<p class="verdict open">The ledger has no rows: nothing was seeded.</p>'
    if not s.remaining and not rows["failed"]:
        return f'<p class="verdict ok">Complete: all {rows["done"]:,} objects copied.</p>'
    open_ = [f"{rows[state]:,} {state.replace('_', ' ')}" for state in ("pending", "in_progress") if rows[state]]
    failed = f"{rows['failed']:,} failed" if rows["failed"] else ""
    parts = ", ".join([*open_, *([failed] if failed else [])])
    return (
        f'<p class="verdict open">Not complete: {rows["done"]:,} of {s.counts.total:,} objects copied; {e(parts)}.</p>'
    )


def _routes(s: Summary) -> str:
    if not s.seeds:
        return "<h2>Source and destination</h2>\n<p>No seed has run.</p>"
    rows = [
        _tr(
            routes.route(seed.old_bucket, seed.old_prefix) + (f" (manifest {seed.input})" if seed.input else ""),
            routes.route(seed.new_bucket, seed.new_prefix),
            f"{seed.round}",
            seed.state,
            _when(seed.started_at),
            _when(seed.finished_at),
            f"{seed.skipped:,}",
        )
        for seed in s.seeds[:MAX_SEEDS]
    ]
    more = f"<p>And more seeds after these {MAX_SEEDS}.</p>" if len(s.seeds) > MAX_SEEDS else ""
    skipped = sum(seed.skipped for seed in s.seeds)
    if skipped:
        more += (
            f"<p>The seeds skipped {skipped:,} keys they cannot map (too long at the destination, or a "
            "destination another source already takes): each is named in the seed's log as "
            "<code>key_skipped</code>, and none was copied.</p>"
        )
    return (
        "<h2>Source and destination</h2>\n<table>"
        + _th("source", "destination", "round", "seed", "started", "finished", "skipped keys")
        + "".join(rows)
        + "</table>"
        + more
    )


def _times(s: Summary) -> str:
    end = _when(s.end) if s.end else f"not yet: {s.remaining:,} rows still to copy"
    copied = s.counts.bytes["done"]
    span = _seconds(s.started, s.end or s.last_done)
    rows = [
        _tr("started", _when(s.started)),
        _tr("finished", end),
        _tr("duration" if s.end else "duration so far", duration(span) if span is not None else "-"),
    ]
    if span:
        rows.append(
            _tr("average rate", f"{s.counts.rows['done'] / span:,.1f} objects/s, {human_bytes(copied / span)}/s")
        )
    return '<h2>When</h2>\n<table class="facts">' + "".join(rows) + "</table>"


def _states(s: Summary) -> str:
    c = s.counts
    rows = [
        _tr(state.replace("_", " "), f"{c.rows[state]:,}", human_bytes(c.bytes[state]), f"{c.bytes[state]:,}")
        for state in STATES
    ]
    rows.append(
        _tr("total", f"{c.total:,}", human_bytes(sum(c.bytes.values())), f"{sum(c.bytes.values()):,}", cls="total")
    )
    return (
        '<h2>Objects and bytes by state</h2>\n<table class="num">'
        + _th("state", "objects", "bytes", "bytes (exact)")
        + "".join(rows)
        + "</table>"
    )


def _rate(s: Summary) -> str:
    if not s.intervals or s.first_done is None:
        return "<h2>Rate over time</h2>\n<p>No copy has finished yet.</p>"
    per = _micros_text(s.width_us)
    return (
        "<h2>Rate over time</h2>\n"
        f"<p>Copies finished per {e(per)}, from {e(_when(s.first_done))} to {e(_when(s.last_done))}.</p>\n"
        + _chart(s, 1, "objects/s", lambda v: f"{v:,.1f}")
        + _chart(s, 2, "bytes/s", human_bytes)
    )


def _failures(s: Summary) -> str:
    failed = s.counts.rows["failed"]
    if not failed:
        return "<h2>Failures</h2>\n<p>No row failed.</p>"
    rows = []
    for f in s.failures:
        examples = "".join(
            f"<li><code>{e(bucket + '/' + logs.escape_controls(key))}</code><br>"
            f'<span class="err">{e(logs.escape_controls(error))}</span></li>'
            for bucket, key, error in f.examples
        )
        rows.append(
            f'<tr><td class="code"><code>{e(f.code)}</code></td><td class="n">{f.rows:,}</td>'
            f'<td class="n">{e(human_bytes(f.bytes))}</td><td><ul>{examples}</ul></td></tr>'
        )
    shown = sum(f.rows for f in s.failures)
    more = f"<p>{failed - shown:,} more failed rows under other codes.</p>" if failed > shown else ""
    return (
        f"<h2>Failures by error code</h2>\n<p>{failed:,} failed rows. <code>movers3 report --state failed</code> "
        'lists them all; <code>movers3 retry</code> queues them again.</p>\n<table class="num">'
        + _th("code", "objects", "bytes", "first rows")
        + "".join(rows)
        + "</table>"
        + more
    )


def _verification(s: Summary) -> str:
    rows = [_tr(proof or "(none)", f"{n:,}", human_bytes(size), PROOFS.get(proof, "")) for proof, n, size in s.proofs]
    table = (
        '<table class="num">' + _th("proof", "objects", "bytes", "what it means") + "".join(rows) + "</table>"
        if rows
        else "<p>No copy is done.</p>"
    )
    marked, marked_bytes = s.verify_failed
    found = (
        f"<code>verify --mark-failed</code> found {marked:,} copies wrong ({e(human_bytes(marked_bytes))}) "
        "and set them to failed: they are among the failures above."
        if marked
        else "No row was set to failed by <code>verify --mark-failed</code>."
    )
    return (
        "<h2>Verification</h2>\n<p>How each copy was proved when it was made:</p>\n"
        + table
        + f'\n<p>{found}</p>\n<p class="note">A <code>verify</code> run that finds nothing wrong writes nothing '
        "to the ledger: keep its last line (<code>verified N done rows: N ok, 0 mismatched</code>) with this page.</p>"
    )


def _deletions(s: Summary) -> str:
    n, size, first, last = s.deletions
    if not n:
        return "<h2>Source deletions</h2>\n<p>No source object was deleted by <code>delete-source</code>.</p>"
    return (
        f"<h2>Source deletions</h2>\n<p>{n:,} source objects deleted by <code>delete-source</code> "
        f"({e(human_bytes(size))}, {size:,} bytes), from {e(_when(first))} to {e(_when(last))}; "
        f"{max(s.counts.rows['done'] - n, 0):,} copied objects keep their source.</p>"
    )


# -- the chart ---------------------------------------------------------------------------------------

_W, _H, _LEFT, _BOTTOM, _TOP = 1000, 200, 90, 28, 12


def _chart(s: Summary, column: int, unit: str, fmt) -> str:
    assert s.first_done is not None and s.last_done is not None
    seconds = s.width_us / _SECOND
    slots = _micros(s.last_done - s.first_done) // s.width_us + 1
    values = {row[0]: row[column] / seconds for row in s.intervals}
    top = max(values.values()) or 1.0
    plot_w, plot_h = _W - _LEFT - 10, _H - _BOTTOM - _TOP
    bar = plot_w / slots
    bars = []
    for slot, value in sorted(values.items()):
        h = plot_h * value / top
        x = _LEFT + slot * bar
        tip = f"{_when(s.first_done + timedelta(microseconds=slot * s.width_us))}: {fmt(value)} {unit}"
        bars.append(
            f'<rect x="{x:.1f}" y="{_TOP + plot_h - h:.1f}" width="{max(bar - 1, 1):.1f}" height="{h:.1f}">'
            f"<title>{e(tip)}</title></rect>"
        )
    base = _TOP + plot_h
    return (
        f'<svg class="chart" viewBox="0 0 {_W} {_H}" width="{_W}" height="{_H}" role="img" '
        f'aria-label="{e(unit)} over time">'
        f'<line x1="{_LEFT}" y1="{base}" x2="{_W - 10}" y2="{base}" class="axis"/>'
        f'<line x1="{_LEFT}" y1="{_TOP}" x2="{_LEFT}" y2="{base}" class="axis"/>'
        f'<text x="{_LEFT - 6}" y="{_TOP + 10}" text-anchor="end">{e(fmt(top))}</text>'
        f'<text x="{_LEFT - 6}" y="{base}" text-anchor="end">0</text>'
        f'<text x="{_LEFT - 6}" y="{_TOP + plot_h / 2 + 4:.0f}" text-anchor="end">{e(unit)}</text>'
        f'<text x="{_LEFT}" y="{_H - 8}">{e(_clock(s.first_done))}</text>'
        f'<text x="{_W - 10}" y="{_H - 8}" text-anchor="end">{e(_clock(s.last_done))}</text>' + "".join(bars) + "</svg>"
    )


# -- formatting --------------------------------------------------------------------------------------


def e(value: object) -> str:
    """HTML-escaped text of a value, quotes included (safe in text and in attributes)."""
    return html.escape(str(value), quote=True)


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "-"


def _clock(moment: datetime) -> str:
    return moment.strftime("%H:%M:%S")


def _micros(delta) -> int:
    return delta.days * _DAY + delta.seconds * _SECOND + delta.microseconds


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    return _micros(end - start) / _SECOND if start and end and end >= start else None


def _micros_text(width: int) -> str:
    if width < _SECOND:
        return f"{width / _SECOND:g} s"
    if width % _DAY == 0:
        return f"{width // _DAY} day" + ("s" if width > _DAY else "")
    if width % (3600 * _SECOND) == 0:
        return f"{width // (3600 * _SECOND)} h"
    if width % (60 * _SECOND) == 0:
        return f"{width // (60 * _SECOND)} min"
    return f"{width // _SECOND} s"


def _tr(*cells: str, cls: str = "") -> str:
    attr = f' class="{cls}"' if cls else ""
    return f"<tr{attr}>" + "".join(f"<td>{e(c)}</td>" for c in cells) + "</tr>"


def _th(*cells: str) -> str:
    return "<tr>" + "".join(f"<th>{e(c)}</th>" for c in cells) + "</tr>"


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1040px;
       color: #1d2327; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.2em; margin-top: 1.6em; border-bottom: 1px solid #ccd0d4; padding-bottom: 0.2em; }
table { border-collapse: collapse; margin: 0.5em 0; }
th, td { text-align: left; padding: 0.3em 0.8em; border-bottom: 1px solid #e2e4e7; vertical-align: top; }
th { background: #f0f2f4; }
table.num td:nth-child(2), table.num td:nth-child(3), table.num td:nth-child(4) { text-align: right; }
table.num td:last-child { text-align: left; }
tr.total td { font-weight: bold; }
table.facts td:first-child { font-weight: bold; }
code { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 0.92em; word-break: break-all; }
td.code code { word-break: normal; white-space: nowrap; }
td.n { white-space: nowrap; text-align: right; }
ul { margin: 0; padding-left: 1.2em; }
.err { color: #8a2424; font-size: 0.9em; word-break: break-word; }
.verdict { font-size: 1.2em; padding: 0.6em 1em; border-radius: 4px; }
.verdict.ok { background: #e3f4e4; border-left: 6px solid #2e7d32; }
.verdict.open { background: #fdf1dc; border-left: 6px solid #c77700; }
.note { color: #50575e; font-size: 0.92em; }
svg.chart { display: block; margin: 0.6em 0 1.2em; max-width: 100%; height: auto; }
svg.chart rect { fill: #2271b1; }
svg.chart .axis { stroke: #50575e; stroke-width: 1; }
svg.chart text { font-size: 12px; fill: #1d2327; }
footer { margin-top: 2em; color: #50575e; font-size: 0.9em; }
"""

_PAGE = string.Template(
    """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>movers3 migration summary</title>
<style>$css</style>
</head>
<body>
<h1>movers3 migration summary</h1>
$body
<footer>Written by <code>movers3 report --summary</code> at $generated from the ledger.
Times are UTC. <code>movers3 report</code> lists every row.</footer>
</body>
</html>
"""
)
