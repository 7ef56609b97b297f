"""The AWS SDKs' conventions for the endpoint and the region, and which variable wins (README, "On
AWS"): OLD_/NEW_URL_ENDPOINT, then URL_ENDPOINT (`aws` or set empty: AWS's own endpoint), then
AWS_ENDPOINT_URL_S3, then AWS_ENDPOINT_URL, then the original tool's http://localhost:8080; OLD_/NEW_REGION,
then AWS_REGION, then AWS_DEFAULT_REGION, then the profile's (transfer/s3.py), then us-east-1. The clients
are built offline here: nothing is sent."""

from __future__ import annotations

import dataclasses

import botocore.credentials
import pytest

from movers3.exceptions import ConfigError
from movers3.settings import load
from movers3.transfer import copy_object, s3

LOCAL = "http://127.0.0.1:9000"
OTHER = "http://127.0.0.1:9001"


def urls(environ: dict[str, str]) -> tuple[str | None, str | None]:
    s = load(environ)
    return s.source.url, s.dest.url


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, "http://localhost:8080"),  # the original tool's default, for those who relied on it
        ({"AWS_ENDPOINT_URL": LOCAL}, LOCAL),
        ({"AWS_ENDPOINT_URL_S3": LOCAL}, LOCAL),
        ({"AWS_ENDPOINT_URL_S3": LOCAL, "AWS_ENDPOINT_URL": OTHER}, LOCAL),  # the service's own wins
        ({"AWS_ENDPOINT_URL_S3": " ", "AWS_ENDPOINT_URL": OTHER}, OTHER),  # blank: not set
        ({"URL_ENDPOINT": OTHER, "AWS_ENDPOINT_URL_S3": LOCAL}, OTHER),  # ours wins over the SDK's
        ({"URL_ENDPOINT": "", "AWS_ENDPOINT_URL_S3": LOCAL}, None),  # set empty: AWS's own
        ({"URL_ENDPOINT": "aws"}, None),
        ({"URL_ENDPOINT": " AWS "}, None),
    ],
)
def test_the_endpoint_each_convention_names(environ, expected):
    assert urls(environ) == (expected, expected)


def test_one_side_on_aws_and_the_other_elsewhere():
    assert urls({"URL_ENDPOINT": LOCAL, "OLD_URL_ENDPOINT": "aws"}) == (None, LOCAL)
    assert urls({"AWS_ENDPOINT_URL_S3": LOCAL, "NEW_URL_ENDPOINT": OTHER}) == (LOCAL, OTHER)


def test_a_bad_sdk_endpoint_is_named_by_its_own_variable():
    with pytest.raises(ConfigError, match=r"^AWS_ENDPOINT_URL_S3: must be an http:// or https:// URL"):
        load({"AWS_ENDPOINT_URL_S3": "ftp://127.0.0.1"})
    with pytest.raises(ConfigError, match=r"^AWS_ENDPOINT_URL: names the bucket 'legacy-s3'"):
        load({"AWS_ENDPOINT_URL": "https://legacy-s3.s3.eu-west-1.amazonaws.com"})


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, None),  # the profile's, else us-east-1: see test_the_region_falls_back_to_us_east_1
        ({"AWS_DEFAULT_REGION": "eu-west-3"}, "eu-west-3"),
        ({"AWS_REGION": "eu-north-1", "AWS_DEFAULT_REGION": "eu-west-3"}, "eu-north-1"),
        ({"AWS_REGION": "", "AWS_DEFAULT_REGION": "eu-west-3"}, None),  # set empty: the default
        ({"AWS_DEFAULT_REGION": "eu-west-3", "OLD_REGION": "ap-south-1"}, "ap-south-1"),
    ],
)
def test_the_region_each_convention_names(environ, expected):
    assert load(environ).source.region == expected


def test_the_guard_knows_aws_by_any_name():
    """AWS's own endpoint and an AWS URL reach the same buckets: the same folder either way is refused."""
    with pytest.raises(ConfigError, match="^NEW_BUCKET/NEW_PREFIX: must not be equal"):
        load({"OLD_URL_ENDPOINT": "aws", "NEW_URL_ENDPOINT": "https://s3.eu-west-1.amazonaws.com",
              "NEW_BUCKET": "legacy-s3", "NEW_PREFIX": "images"})  # fmt: skip
    assert load({"URL_ENDPOINT": "aws", "AWS_REGION": "eu-west-3"}).source.shown == "AWS S3 (eu-west-3)"


def test_aws_endpoint_clients_go_to_the_regions_s3_whatever_the_sdk_variables(monkeypatch):
    """`URL_ENDPOINT=aws` means AWS's endpoint even with AWS_ENDPOINT_URL_S3 in the environment, on both
    engines: boto3 would otherwise read that variable itself."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", LOCAL)
    monkeypatch.setenv("AWS_ENDPOINT_URL", OTHER)
    settings = load({"URL_ENDPOINT": "aws", "AWS_REGION": "eu-west-3", "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
                     "AWS_SECRET_ACCESS_KEY": "not-a-real-secret"})  # fmt: skip
    client = s3.client(settings.dest)
    assert client.meta.endpoint_url == "https://s3.eu-west-3.amazonaws.com"
    assert client.meta.region_name == "eu-west-3"
    engine = copy_object.from_settings(dataclasses.replace(settings, copy_engine="crt"), client)
    assert isinstance(engine, copy_object.CrtEngine)
    assert (engine.scheme, engine.authority) == ("https", "s3.eu-west-3.amazonaws.com")
    local = s3.client(load({"URL_ENDPOINT": LOCAL, "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
                            "AWS_SECRET_ACCESS_KEY": "not-a-real-secret"}).dest)  # fmt: skip
    assert local.meta.endpoint_url == LOCAL


def test_the_region_falls_back_to_us_east_1(monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    s3._SESSIONS.clear()
    try:
        assert s3.region(load({}).source) == "us-east-1"
    finally:
        s3._SESSIONS.clear()


def test_given_keys_are_static_credentials():
    settings = load({"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "not-a-real-secret"})
    creds = s3.credentials(settings.source)
    assert isinstance(creds, botocore.credentials.Credentials) and creds.access_key == "AKIDEXAMPLE"


def test_a_session_token_goes_with_the_shared_keys_only():
    """Temporary keys exported with their token (`aws configure export-credentials`, SSO) sign with it;
    a side with keys of its own never gets another key's token."""
    shared = {"AWS_ACCESS_KEY_ID": "ASIATEMP", "AWS_SECRET_ACCESS_KEY": "temp-secret", "AWS_SESSION_TOKEN": "tok-en"}
    settings = load({**shared, "NEW_AWS_ACCESS_KEY_ID": "AKIAOTHER", "NEW_AWS_SECRET_ACCESS_KEY": "other-secret"})
    assert s3.credentials(settings.source).get_frozen_credentials()[:3] == ("ASIATEMP", "temp-secret", "tok-en")
    assert s3.credentials(settings.dest).get_frozen_credentials()[:3] == ("AKIAOTHER", "other-secret", None)
    signer = s3.client(settings.source)._request_signer._credentials
    assert (signer.access_key, signer.token) == ("ASIATEMP", "tok-en")
    assert "tok-en" in settings.secrets()
