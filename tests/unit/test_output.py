import csv
import io

from movers3.logs import Redactor, escape_controls
from movers3.report import REPORT_COLUMNS, spreadsheet_safe, write_csv
from movers3.transfer.multipart import part_size_for, plan_parts
from movers3.values import GIB, MIB


def test_redactor_scrubs_every_occurrence():
    r = Redactor(["hunter22", "abc"])  # too short to scrub safely: left alone
    assert r("pw=hunter22 again hunter22 abc") == "pw=*** again *** abc"


def test_control_characters_are_escaped_for_console():
    assert escape_controls("a\nb\x1b[31m") == "a\\nb\\x1b[31m"
    assert escape_controls("plain é") == "plain é"


def test_csv_guards_formulas_and_quotes_hostile_keys():
    row = dict.fromkeys(REPORT_COLUMNS, "") | {"old_key": "=cmd|' /C calc'!A0", "new_key": 'a,"b"\nc', "size": 3}
    out = io.StringIO()
    assert write_csv([row], out) == 1
    parsed = list(csv.reader(io.StringIO(out.getvalue())))
    assert parsed[0] == list(REPORT_COLUMNS)
    assert parsed[1][1] == "'=cmd|' /C calc'!A0"
    assert parsed[1][3] == 'a,"b"\nc'
    assert spreadsheet_safe("+1") == "'+1" and spreadsheet_safe("@x") == "'@x" and spreadsheet_safe("ok") == "ok"


def test_parts_cover_the_object_exactly_within_s3_limits():
    for size in (5 * MIB, 64 * MIB + 1, 5 * GIB + 7, 5 * 1024 * GIB):
        parts = plan_parts(size, part_size_for(size, 8 * MIB))
        assert parts[0][0] == 0 and parts[-1][1] == size - 1
        assert all(b[0] == a[1] + 1 for a, b in zip(parts, parts[1:], strict=False))
        assert len(parts) <= 10_000
        assert all(last - first + 1 <= 5 * GIB for first, last in parts)
