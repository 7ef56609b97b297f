"""Settings the chaos suite found accepted or echoed when they should not be."""

import pytest

from movers3.exceptions import ConfigError
from movers3.settings import load


@pytest.mark.parametrize("name", ["OLD_PREFIX", "NEW_PREFIX"])
@pytest.mark.parametrize("value", [" ", "   ", "\u3000", " /"])
def test_a_prefix_of_blanks_is_an_empty_prefix(name, value):
    with pytest.raises(ConfigError, match=f"{name}: must name a folder"):
        load({name: value})


@pytest.mark.parametrize("name", ["URL_ENDPOINT", "OLD_URL_ENDPOINT", "NEW_URL_ENDPOINT"])
@pytest.mark.parametrize(
    "value",
    [
        "ftp://user:Hunter2-secret@host",
        "http://user:Hunter2-secret@127.0.0.1:99999",
        "http://user:Hunter2#secret@127.0.0.1:9000",
        "http://user:Hunter2-secret@h",
    ],
)
def test_an_endpoint_with_credentials_is_refused_without_echoing_them(name, value):
    with pytest.raises(ConfigError) as raised:
        load({name: value})
    message = str(raised.value)
    assert message.startswith(f"{name}: must not carry credentials")
    assert "Hunter2" not in message and "secret" not in message.split("AWS_SECRET_ACCESS_KEY")[0]


@pytest.mark.parametrize(
    "name,value",
    [("URL_ENDPOINT", "http://[::1"), ("NEW_URL_ENDPOINT", "http://[zz]:80"), ("OLD_URL_ENDPOINT", "https://h]:9000")],
)
def test_a_malformed_endpoint_url_is_a_settings_error_not_an_internal_one(name, value):
    with pytest.raises(ConfigError, match=f"^{name}: is not a valid URL"):
        load({name: value})


@pytest.mark.parametrize("name", ["AWS_REGION", "OLD_REGION", "NEW_REGION"])
@pytest.mark.parametrize("value", ["us east 1", "x/y", "eu_west_1", "-a"])
def test_a_region_botocore_would_refuse_is_refused_with_its_name(name, value):
    with pytest.raises(ConfigError, match=f"^{name}: "):
        load({name: value})


def test_regions_that_exist_pass():
    settings = load({"AWS_REGION": "eu-west-3", "OLD_REGION": "us-gov-west-1", "NEW_REGION": "cn-north-1"})
    assert (settings.source.region, settings.dest.region) == ("us-gov-west-1", "cn-north-1")
