import pytest

from movers3 import routes
from movers3.exceptions import ConfigError
from movers3.ledger.seeds import Known
from movers3.seed.judge import Listed, judge
from movers3.settings import load


@pytest.mark.parametrize(
    "old,new",
    [
        ("images/a/b.png", "avatar/a/b.png"),
        ("images/x", "avatar/x"),
        ("images/", "avatar/"),
        ("images/ Trailing space ", "avatar/ Trailing space "),
        ("images/Cafe\u0301.png", "avatar/Cafe\u0301.png"),
        ("images/images/x", "avatar/images/x"),
    ],
)
def test_remainder_is_kept_exactly(old, new):
    assert routes.new_key(old, "images", "avatar") == new


@pytest.mark.parametrize("key", ["images-old/x", "imagesX.png", "Images/x", "images"])
def test_keys_outside_the_folder_are_refused(key):
    with pytest.raises(ValueError):
        routes.new_key(key, "images", "avatar")


def test_new_key_over_1024_bytes_is_refused():
    key = "i/" + "é" * 511  # 1024 bytes
    with pytest.raises(ValueError):
        routes.new_key(key, "i", "longer")


def test_db_form_is_utf8_bytes_and_round_trips():
    for key in ["a", "Caf\u00e9", "Cafe\u0301", "x\n\t", "😀" * 10]:
        assert routes.from_db(routes.to_db(key)) == key
    assert routes.to_db("Caf\u00e9") != routes.to_db("Cafe\u0301")


def test_overlap():
    assert routes.overlaps("b", "images", "b", "images")
    assert routes.overlaps("b", "images", "b", "images/x")
    assert routes.overlaps("b", "images/x", "b", "images")
    assert not routes.overlaps("b", "images", "b", "images2")
    assert not routes.overlaps("a", "images", "b", "images")


# -- a bucket's root: OLD_PREFIX=/ or NEW_PREFIX=/ ----------------------------------------------------


@pytest.mark.parametrize("value", ["/", "//"])
def test_a_slash_names_the_root(value):
    assert routes.check_prefix("OLD_PREFIX", value) == routes.ROOT == ""


@pytest.mark.parametrize("value", ["", " ", " /", "\t"])
def test_an_empty_prefix_is_still_refused_with_the_same_message(value):
    with pytest.raises(ConfigError) as raised:
        routes.check_prefix("OLD_PREFIX", value)
    assert str(raised.value) == "OLD_PREFIX: must name a folder, e.g. 'images' (empty prefixes are refused)"


def test_the_roots_folder_is_every_key_and_routes_show_it_once():
    assert routes.folder(routes.ROOT) == ""
    assert routes.folder("images") == "images/"
    assert routes.route("bk", routes.ROOT) == "bk/"
    assert routes.route("bk", "images/2019") == "bk/images/2019/"


@pytest.mark.parametrize(
    "old,old_prefix,new_prefix,new",
    [
        ("a.png", "", "avatar", "avatar/a.png"),  # a key at the root level
        ("images/a/b.png", "", "avatar", "avatar/images/a/b.png"),
        ("images/a/b.png", "images", "", "a/b.png"),
        ("images/x", "images", "", "x"),
        ("a.png", "", "", "a.png"),
        ("sp ace/Cafe\u0301 /new\nline", "", "", "sp ace/Cafe\u0301 /new\nline"),
        ("x/ trailing ", "", "deep/er", "deep/er/x/ trailing "),
        ("/lead", "", "avatar", "avatar//lead"),  # S3 allows a key that starts with '/': kept as it is
    ],
)
def test_root_keys_keep_their_whole_path(old, old_prefix, new_prefix, new):
    assert routes.new_key(old, old_prefix, new_prefix) == new


def test_the_folders_own_marker_cannot_become_an_empty_key():
    with pytest.raises(ValueError, match="empty"):
        routes.new_key("images/", "images", routes.ROOT)
    assert routes.new_key("images/", "images", "avatar") == "avatar/"


def test_a_root_key_that_would_pass_1024_bytes_under_a_folder_is_refused():
    key = "é" * 511 + "ab"  # 1024 bytes at the root
    assert routes.new_key(key, routes.ROOT, routes.ROOT) == key
    with pytest.raises(ValueError, match="1024"):
        routes.new_key(key, routes.ROOT, "a")


@pytest.mark.parametrize(
    "old_prefix,new_prefix",
    [("", ""), ("", "avatar"), ("images", ""), ("", "a/b/c"), ("a/b/c", "")],
)
def test_a_root_overlaps_everything_in_its_bucket_and_nothing_elsewhere(old_prefix, new_prefix):
    assert routes.overlaps("b", old_prefix, "b", new_prefix)
    assert not routes.overlaps("a", old_prefix, "b", new_prefix)


def test_the_range_of_the_root_is_every_key():
    r = routes.folder_range(routes.folder(routes.ROOT))
    keys = [b"", b"\x00", b"a", b"images/x", "😀".encode(), "\U0010ffff".encode() * 256, b"\xf4\x8f\xbf\xbf" * 256]
    assert all(r["folder"] <= k < r["folder_end"] for k in keys)
    # and a folder's range is still that folder's keys alone
    f = routes.folder_range("images/")
    assert f == {"folder": b"images/", "folder_end": b"images0"}


def test_a_folders_marker_brought_to_a_root_is_a_reported_skip_and_the_rest_is_mapped():
    settings = load({"OLD_PREFIX": "images", "NEW_BUCKET": "other", "NEW_PREFIX": "/"})
    entries = [Listed("images/", 0, "m"), Listed("images/a/b.png", 1, "e"), Listed("images/x", 1, "e")]
    judgement = judge(entries, settings, lambda old, new: Known({}, {}))
    assert [(e.key, reason) for e, reason in judgement.skipped] == [("images/", "new key would be empty")]
    assert [(e.key, new) for e, new in judgement.new] == [("images/a/b.png", "a/b.png"), ("images/x", "x")]
