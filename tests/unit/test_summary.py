"""The sign-off page's pure parts: chart intervals, sizes, and a page built from hostile values that
stays one escaped, self-contained file."""

import re
from datetime import datetime, timedelta

import pytest

from movers3 import summary
from movers3.ledger.reads import Counts, FailureCode, SeedRoute
from movers3.status import error_code_of

T0 = datetime(2024, 5, 1, 12, 0, 0)


@pytest.mark.parametrize(
    "span, width",
    [
        (timedelta(0), 100_000),
        (timedelta(seconds=11), 100_000),
        (timedelta(seconds=12), 200_000),
        (timedelta(hours=3), 120_000_000),
        (timedelta(days=3), 3_600_000_000),
        (timedelta(days=400), 4 * 86_400_000_000),
    ],
)
def test_a_chart_has_at_most_its_number_of_intervals(span, width):
    assert summary.interval_width(T0, T0 + span) == width
    assert (span // timedelta(microseconds=width)) + 1 <= summary.MAX_INTERVALS


def test_sizes_read_as_people_read_them():
    assert summary.human_bytes(0) == "0 B"
    assert summary.human_bytes(1023) == "1,023 B"
    assert summary.human_bytes(1536) == "1.5 KiB"
    assert summary.human_bytes(5 * 1024**4 * 1024) == "5,120.0 TiB"


def test_the_server_side_pattern_is_the_status_pattern_over_the_whole_message():
    assert summary.CODE_PATTERN.startswith("(?s)^") and summary.CODE_PATTERN.endswith(": .*")
    assert error_code_of("CopyObject: NoSuchKey: The specified key does not exist.") == "NoSuchKey"


HOSTILE = "<script>alert(\"x\")</script>&amp; 'quote' \x07bell/ü.png"


def page(**changes) -> str:
    counts = Counts(
        rows={"pending": 0, "in_progress": 0, "done": 3, "failed": 1},
        bytes={"pending": 0, "in_progress": 0, "done": 3 * 1024**2, "failed": 7},
        done_last_minute=0,
        bytes_last_minute=0,
        seeds=[],
        source_deleted=2,
    )
    fields = dict(
        counts=counts,
        seeds=[
            SeedRoute("old-b", "images<i>", "new-b", "avatar", "finished", 1, None, T0, T0 + timedelta(seconds=5), 0)
        ],
        started=T0,
        first_done=T0 + timedelta(seconds=2),
        last_done=T0 + timedelta(seconds=62),
        width_us=1_000_000,
        intervals=[(0, 1, 1024**2), (30, 1, 1024**2), (60, 1, 1024**2)],
        failures=[
            FailureCode("AccessDenied<b>", 1, 7, [("old-b", HOSTILE, "CopyObject: AccessDenied<b>: no " + HOSTILE)])
        ],
        proofs=[("etag", 2, 2 * 1024**2), ("", 1, 1024**2)],
        verify_failed=(0, 0),
        deletions=(2, 2 * 1024**2, T0 + timedelta(minutes=5), T0 + timedelta(minutes=6)),
        generated=T0 + timedelta(hours=1),
    )
    fields.update(changes)
    return summary.render(summary.Summary(**fields))


def test_every_value_from_the_ledger_is_escaped():
    text = page()
    assert "<script" not in text and "<b>" not in text and "<i>" not in text
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;amp; &#x27;quote&#x27; \\x07bell/ü.png" in text
    assert "AccessDenied&lt;b&gt;" in text and "old-b/images&lt;i&gt;/" in text
    assert "\x07" not in text


def test_the_page_fetches_nothing_and_runs_nothing():
    text = page()
    assert not re.search(r"https?:|src=|href=|url\(|@import|<script|<link|<img|<iframe|<object", text, re.I)
    assert "default-src 'none'" in text


def test_the_page_says_what_happened():
    text = page()
    assert "Not complete: 3 of 4 objects copied; 1 failed." in text
    assert "2024-05-01 12:00:00 UTC" in text and "2024-05-01 12:01:02 UTC" in text  # started, finished
    assert "<td>duration</td><td>1m02s</td>" in text
    assert "3,145,728" in text and "3.0 MiB" in text
    assert text.count("<rect ") == 3 * 2  # three intervals with rows, on both charts
    assert "2 source objects deleted by <code>delete-source</code>" in text
    assert "not recorded" in text and "the copy has the source&#x27;s MD5 ETag" in text


def test_keys_a_seed_skipped_are_counted_on_the_page():
    """A skipped key never becomes a row: the page counts them from the seeds, and names where they are."""
    assert "skipped" not in page().split("<h2>When</h2>")[0].split("</table>")[1]
    seed = SeedRoute("old-b", "images", "new-b", "avatar", "finished", 1, None, T0, T0 + timedelta(seconds=5), 2)
    text = page(seeds=[seed])
    assert "<td>2</td></tr></table>" in text.replace("\n", "")
    assert "The seeds skipped 2 keys they cannot map" in text and "<code>key_skipped</code>" in text


def test_a_run_still_going_and_an_empty_ledger():
    going = Counts(
        rows={"pending": 5, "in_progress": 1, "done": 0, "failed": 0},
        bytes=dict.fromkeys(("pending", "in_progress", "done", "failed"), 0),
        done_last_minute=0,
        bytes_last_minute=0,
        seeds=[],
    )
    text = page(
        counts=going,
        first_done=None,
        last_done=None,
        intervals=[],
        failures=[],
        proofs=[],
        deletions=(0, 0, None, None),
    )
    assert "Not complete: 0 of 6 objects copied; 5 pending, 1 in progress." in text
    assert "not yet: 6 rows still to copy" in text and "No copy has finished yet." in text
    assert "No row failed." in text and "No source object was deleted" in text
    empty = Counts(
        rows=dict.fromkeys(going.rows, 0), bytes=going.bytes, done_last_minute=0, bytes_last_minute=0, seeds=[]
    )
    assert "nothing was seeded" in page(counts=empty, seeds=[], intervals=[], first_done=None, last_done=None)
