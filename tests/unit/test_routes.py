import pytest

from movers3 import routes


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
