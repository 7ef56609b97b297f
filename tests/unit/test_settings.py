import pytest

from movers3.exceptions import ConfigError
from movers3.settings import load, parse_mysql_url
from movers3.values import MIB

SECRET = "s3cr3t-Pa55word!"


def test_defaults_are_the_original_tools():
    s = load({})
    assert s.source.url == "http://localhost:8080"
    assert (s.old_bucket, s.old_prefix, s.new_bucket, s.new_prefix) == (
        "legacy-s3",
        "images",
        "production-s3",
        "avatar",
    )
    assert s.mysql == parse_mysql_url("mysql+pymysql://sketchUser:sketchPassword@localhost/sketch")
    assert (s.mysql.user, s.mysql.host, s.mysql.port, s.mysql.database) == ("sketchUser", "localhost", 3306, "sketch")
    assert s.mysql.password.reveal() == "sketchPassword"
    assert s.load_files is False


def test_flags_override_environment():
    s = load({"WORKER_THREADS": "4", "OLD_PREFIX": "a"}, {"WORKER_THREADS": "8"})
    assert s.worker_threads == 8
    assert s.old_prefix == "a"


def test_sizes_and_bools_parse():
    s = load({"MULTIPART_THRESHOLD": "8MiB", "MULTIPART_CHUNKSIZE": "5242880", "LOAD_FILES": "TRUE"})
    assert s.multipart_threshold == 8 * MIB
    assert s.multipart_chunksize == 5 * MIB
    assert s.load_files is True


def test_prefix_trailing_slash_is_the_same_folder():
    assert load({"OLD_PREFIX": "images/", "NEW_PREFIX": "a/b//"}).new_prefix == "a/b"


@pytest.mark.parametrize(
    "name,value",
    [
        ("WORKER_THREADS", "0"),
        ("WORKER_THREADS", "-3"),
        ("WORKER_THREADS", "100000"),
        ("WORKER_THREADS", "x"),
        ("LEASE_SECONDS", "1"),
        ("LEASE_SECONDS", "999999999"),
        ("MAX_ATTEMPTS", "0"),
        ("MAX_ATTEMPTS", "1000"),
        ("OLD_PREFIX", ""),
        ("NEW_PREFIX", ""),
        ("NEW_PREFIX", "/abs"),
        ("NEW_PREFIX", "a//b"),
        ("OLD_PREFIX", "a/../b"),
        ("OLD_PREFIX", "a\nb"),
        ("OLD_BUCKET", "x"),
        ("NEW_BUCKET", "Bad Bucket!"),
        ("URL_ENDPOINT", "ftp://x"),
        ("URL_ENDPOINT", "localhost:8080"),
        ("URL_ENDPOINT", "http://h:99999"),
        ("LOAD_FILES", "maybe"),
        ("LOG_FORMAT", "xml"),
        ("MULTIPART_THRESHOLD", "1KiB"),
        ("MULTIPART_CHUNKSIZE", "lots"),
        ("S3_ADDRESSING_STYLE", "sideways"),
    ],
)
def test_invalid_values_name_the_variable(name, value):
    with pytest.raises(ConfigError) as info:
        load({name: value})
    message = str(info.value)
    assert message.startswith(name + ":")
    assert "\n" not in message


@pytest.mark.parametrize(
    "old,new",
    [
        (("bk1", "images"), ("bk1", "images")),
        (("bk1", "images"), ("bk1", "images/avatar")),
        (("bk1", "images/x"), ("bk1", "images")),
    ],
)
def test_destination_inside_source_is_refused(old, new):
    env = {"OLD_BUCKET": old[0], "OLD_PREFIX": old[1], "NEW_BUCKET": new[0], "NEW_PREFIX": new[1]}
    with pytest.raises(ConfigError, match="NEW_BUCKET/NEW_PREFIX"):
        load(env)


@pytest.mark.parametrize(
    "old,new",
    [
        (("bk1", "images"), ("bk1", "images-new")),  # a sibling folder: images/ is not a prefix of images-new/
        (("bk1", "images"), ("bk2", "images")),
        (("bk1", "images/a"), ("bk1", "images/b")),
    ],
)
def test_sibling_folders_and_other_buckets_are_fine(old, new):
    s = load({"OLD_BUCKET": old[0], "OLD_PREFIX": old[1], "NEW_BUCKET": new[0], "NEW_PREFIX": new[1]})
    assert ((s.old_bucket, s.old_prefix), (s.new_bucket, s.new_prefix)) == (old, new)


def test_a_slash_is_the_buckets_root_on_either_side():
    s = load({"OLD_PREFIX": "/", "NEW_BUCKET": "bk2", "NEW_PREFIX": "/"})
    assert (s.old_prefix, s.new_prefix) == ("", "")
    s = load({"OLD_PREFIX": "/", "NEW_BUCKET": "bk2"}, {"NEW_PREFIX": "avatar"})
    assert (s.old_prefix, s.new_prefix) == ("", "avatar")
    s = load({"NEW_BUCKET": "bk2"}, {"OLD_PREFIX": "images/2019", "NEW_PREFIX": "/"})
    assert (s.old_prefix, s.new_prefix) == ("images/2019", "")


@pytest.mark.parametrize("name", ["OLD_PREFIX", "NEW_PREFIX"])
def test_an_empty_prefix_is_refused_and_an_unset_one_is_the_default(name):
    with pytest.raises(ConfigError) as info:
        load({name: "", "NEW_BUCKET": "bk2"})
    assert str(info.value) == f"{name}: must name a folder, e.g. 'images' (empty prefixes are refused)"
    s = load({"NEW_BUCKET": "bk2"})
    assert (s.old_prefix, s.new_prefix) == ("images", "avatar")


@pytest.mark.parametrize(
    "old,new",
    [
        ("/", "/"),
        ("/", "avatar"),
        ("images", "/"),
        ("/", "images/a/b"),
    ],
)
def test_a_root_overlaps_every_route_of_its_bucket(old, new):
    env = {"OLD_BUCKET": "bk1", "OLD_PREFIX": old, "NEW_BUCKET": "bk1", "NEW_PREFIX": new}
    with pytest.raises(ConfigError) as info:
        load(env)
    shown = {"/": "bk1/", "avatar": "bk1/avatar/", "images": "bk1/images/", "images/a/b": "bk1/images/a/b/"}
    assert str(info.value) == (
        "NEW_BUCKET/NEW_PREFIX: must not be equal to, inside, or around OLD_BUCKET/OLD_PREFIX "
        f"({shown[new]} vs {shown[old]}): the copy would feed on its own output"
    )
    # another bucket, or the same name on another service, is another namespace
    load({**env, "NEW_BUCKET": "bk2"})
    load({**env, "OLD_URL_ENDPOINT": "http://127.0.0.1:9000", "NEW_URL_ENDPOINT": "http://127.0.0.2:9000"})


@pytest.mark.parametrize(
    "url",
    [
        "postgres://u:" + SECRET + "@h/db",
        "mysql+pymysql://u:" + SECRET + "@h",
        "mysql+pymysql://:" + SECRET + "@h/db",
        "mysql+pymysql://u:" + SECRET + "@h:notaport/db",
        "mysql+pymysql://u:" + SECRET + "@h/db?sslmode=x",
        "not a url " + SECRET,
    ],
)
def test_malformed_mysql_url_never_echoes_the_password(url):
    with pytest.raises(ConfigError) as info:
        load({"MYSQL_URL": url})
    assert str(info.value).startswith("MYSQL_URL:")
    assert SECRET not in str(info.value)


def test_mysql_url_forms():
    u = parse_mysql_url("mysql+pymysql://us%40er:p%3Ass@db.example:3307/led%20ger")
    assert (u.user, u.password.reveal(), u.host, u.port, u.database) == ("us@er", "p:ss", "db.example", 3307, "led ger")
    s = parse_mysql_url("mysql+pymysql://u:p@/sketch?unix_socket=/run/mysqld/mysqld.sock")
    assert s.unix_socket == "/run/mysqld/mysqld.sock"
    assert "p" not in s.safe().split("@")[0].split("//")[1]


def test_secrets_never_print():
    s = load({"AWS_SECRET_ACCESS_KEY": SECRET, "MYSQL_URL": f"mysql+pymysql://u:{SECRET}@h/db"})
    assert SECRET not in repr(s)
    assert SECRET not in str(s)
    assert SECRET not in s.mysql.safe()
    assert set(s.secrets()) == {SECRET}


def test_mysql_url_tls_parameters(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("not read here")
    url = parse_mysql_url(f"mysql+pymysql://u:p%40ss%2Fw%23rd@db.example:3306/sketch?ssl_ca={ca}")
    assert url.password.reveal() == "p@ss/w#rd" and url.safe() == "mysql://u@db.example:3306/sketch (TLS)"
    # A CA given is checked against, certificate and host name, unless the URL says otherwise.
    assert dict(url.tls) == {"ssl_ca": str(ca), "ssl_verify_cert": True, "ssl_verify_identity": True}
    relaxed = parse_mysql_url(f"mysql://u:p@h/db?ssl_ca={ca}&ssl_check_hostname=false")
    assert dict(relaxed.tls)["ssl_verify_identity"] is False
    assert parse_mysql_url("mysql://u:p@h/db").tls is None
