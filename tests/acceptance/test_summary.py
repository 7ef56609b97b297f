"""`movers3 report --summary`: a real migration with failures, a verify that finds a bad copy and
delete-source, then the page opened in headless Chromium (no network): its screenshot, and its text."""

from datetime import UTC, datetime

import pytest

from movers3 import summary
from tests.support import browser, png
from tests.support.helpers import admin_exec, run_cli

pytestmark = pytest.mark.acceptance

GONE = ('gone <b>&"x"</b> ü.png', "gone-2.png")
AMBER, BLUE = (0xFD, 0xF1, 0xDC), (0x22, 0x71, 0xB1)  # the verdict's background, the chart's bars


def test_the_sign_off_page_of_a_real_migration_in_a_browser(route, env, tmp_path):
    sizes = {f"{i:02d}.bin": (i + 1) * 1537 for i in range(40)}
    route.put_many([(name, b"s" * size) for name, size in sizes.items()])
    for name in GONE:
        route.put(name, b"soon gone")
    run_cli("seed", env=route.env("seeder", "m3_seeder"))
    admin = route.stack.s3.client()
    for name in GONE:  # removed between the seed and the copy: NoSuchKey
        admin.delete_object(Bucket=route.old_bucket, Key=route.old(name))
    run_cli("worker", "--exit-when-done", env=env, check=False, timeout=180)
    admin.put_object(Bucket=route.new_bucket, Key=route.new("03.bin"), Body=b"tampered")
    verifier = {**env, "AWS_ACCESS_KEY_ID": "admin", "AWS_SECRET_ACCESS_KEY": route.stack.s3.credentials("admin")[1]}
    verified = run_cli("verify", "--sample", "0", "--mark-failed", env=verifier, check=False)
    assert "40 done rows: 39 ok, 1 mismatched; 1 marked failed" in verified.stdout, verified.stdout
    deleted = run_cli("delete-source", "--max-deletes", "10", env=route.env("deleter", "m3_deleter"), check=False)
    assert "deleted 10 " in deleted.stdout, deleted.stdout + deleted.stderr

    page = tmp_path / "summary.html"
    written = run_cli("report", "--summary", str(page), env=env)  # the worker's account: reads only
    assert f"wrote the summary to {page}" in written.stderr
    shot = tmp_path / "summary.png"
    browser.render(page, tmp_path / "profile", screenshot=shot)
    dom = browser.render(page, tmp_path / "profile")

    parsed = browser.Text()
    parsed.feed(dom)
    text = parsed.text()
    assert "b" not in parsed.tags and "script" not in parsed.tags  # the key's markup stayed text
    done_bytes = sum(size for name, size in sizes.items() if name != "03.bin")
    assert "Not complete: 39 of 42 objects copied; 3 failed." in text
    assert f"done 39 {summary.human_bytes(done_bytes)} {done_bytes:,}" in text
    failed_bytes = 2 * len(b"soon gone") + sizes["03.bin"]
    assert f"failed 3 {summary.human_bytes(failed_bytes)} {failed_bytes:,}" in text
    assert f"NoSuchKey 2 {len(b'soon gone') * 2} B" in text
    assert f"{route.old_bucket}/{route.old(GONE[0])}" in text and "NoSuchKey" in text
    ((first, last),) = admin_exec(route, "SELECT MIN(done_at), MAX(done_at) FROM movers3_objects")
    ((started,),) = admin_exec(route, "SELECT MIN(started_at) FROM movers3_seeds")
    assert f"started {started:%Y-%m-%d %H:%M:%S} UTC" in text
    assert f"from {first:%Y-%m-%d %H:%M:%S} UTC to {last:%Y-%m-%d %H:%M:%S} UTC" in text
    assert f"{route.old_bucket}/{route.old_folder} {route.new_bucket}/{route.new_folder} 1 finished" in text
    assert "verify --mark-failed found 1 copies wrong" in text
    assert "10 source objects deleted by delete-source" in text and "29 copied objects keep their source" in text
    assert f"Written by movers3 report --summary at {datetime.now(UTC):%Y-%m-%d}" in text

    assert shot.stat().st_size > 20_000
    width, height, _, _ = png.read_rows(shot)
    assert (width, height) == browser.WINDOW
    colours = png.colours(shot)
    assert len(colours) > 50  # text, tables, the chart: not a blank page
    assert colours.get(AMBER, 0) > 10_000 and colours.get(BLUE, 0) > 500, (colours.get(AMBER), colours.get(BLUE))

    leaky = tmp_path / "leaky.html"  # the trap sees what a page asks for: the check above can fail
    leaky.write_text('<!DOCTYPE html><p>x</p><img src="http://example.com/x.png">')
    with pytest.raises(AssertionError, match=r"made network requests .*example\.com"):
        browser.render(leaky, tmp_path / "profile")
