"""Which endpoints are one service: the same S3 written two ways is one service, for
the guard against copying a folder onto itself and for choosing server-side copies."""

import pytest

from movers3.exceptions import ConfigError
from movers3.settings import Endpoint, load
from movers3.values import Secret


def endpoint(url: str, key: str | None = "AKIDEXAMPLE", secret: str | None = "s3cr3t") -> Endpoint:
    return Endpoint(url, key, Secret(secret) if secret else None, "us-east-1", "path", 300)


SAME_SERVICE = [
    # scheme and host case, default port, trailing slash
    ("https://s3.amazonaws.com", "https://S3.AMAZONAWS.COM:443/"),
    ("HTTPS://s3.eu-west-1.amazonaws.com", "https://s3.eu-west-1.amazonaws.com/"),
    ("http://minio.example:80", "HTTP://MinIO.Example/"),
    ("https://minio.example", "https://minio.example:443"),
    ("http://localhost:8080", "http://LOCALHOST:8080//"),
    ("http://gw.example:8333/s3", "HTTP://GW.example:8333/s3/"),
    ("http://[::1]:9000", "Http://[::1]:9000/"),
    ("https://storage.example.", "https://storage.example"),
    # AWS: us-east-1's global, regional, external and dual-stack names
    ("https://s3.amazonaws.com", "https://s3.us-east-1.amazonaws.com"),
    ("https://s3.amazonaws.com", "https://s3-external-1.amazonaws.com"),
    ("https://s3.amazonaws.com", "https://s3.dualstack.us-east-1.amazonaws.com"),
    ("https://s3.us-east-1.amazonaws.com", "http://s3.us-east-1.amazonaws.com"),
    # AWS: one region's regional, legacy dash, dual-stack and FIPS names
    ("https://s3.eu-west-1.amazonaws.com", "https://s3-eu-west-1.amazonaws.com"),
    ("https://s3.eu-west-1.amazonaws.com", "https://s3.dualstack.eu-west-1.amazonaws.com"),
    ("https://s3.us-gov-west-1.amazonaws.com", "https://s3-fips.us-gov-west-1.amazonaws.com"),
    ("https://s3.cn-north-1.amazonaws.com.cn", "https://S3.DUALSTACK.cn-north-1.amazonaws.com.cn/"),
]

DIFFERENT_SERVICES = [
    ("http://localhost:8080", "http://127.0.0.1:8080"),  # may be one machine; not ours to guess
    ("http://localhost:8080", "http://localhost:8081"),
    ("http://minio.example", "http://minio.example:8080"),
    ("http://minio.example:9000", "https://minio.example:9000"),
    ("http://minio.example", "https://minio.example"),
    ("http://gw.example:8333/s3", "http://gw.example:8333/S3"),
    ("http://gw.example:8333/s3", "http://gw.example:8333"),
    ("https://s3.eu-west-1.amazonaws.com", "https://s3.eu-west-2.amazonaws.com"),
    ("https://s3.amazonaws.com", "https://s3.us-west-2.amazonaws.com"),
    ("https://s3.amazonaws.com", "https://s3.amazonaws.com.example"),
    ("https://s3.us-east-1.amazonaws.com", "https://s3-accelerate.amazonaws.com"),
    ("https://s3.cn-north-1.amazonaws.com.cn", "https://s3.us-east-1.amazonaws.com"),
]


@pytest.mark.parametrize("a,b", SAME_SERVICE)
def test_one_service_written_two_ways_is_one_service(a, b):
    assert endpoint(a).same_service_as(endpoint(b))
    assert endpoint(b).same_service_as(endpoint(a))
    assert endpoint(a).shares_buckets_with(endpoint(b))


@pytest.mark.parametrize("a,b", DIFFERENT_SERVICES)
def test_different_services_stay_different(a, b):
    assert not endpoint(a).same_service_as(endpoint(b))
    assert not endpoint(b).same_service_as(endpoint(a))


def overlap(old_url: str, new_url: str, **extra: str) -> dict[str, str]:
    """A destination folder inside the source's, on the same bucket name."""
    return {
        "OLD_URL_ENDPOINT": old_url,
        "NEW_URL_ENDPOINT": new_url,
        "OLD_BUCKET": "legacy-s3",
        "OLD_PREFIX": "images",
        "NEW_BUCKET": "legacy-s3",
        "NEW_PREFIX": "images/avatar",
        **extra,
    }


@pytest.mark.parametrize("a,b", SAME_SERVICE)
def test_a_folder_is_not_copied_onto_itself_through_two_names_of_its_service(a, b):
    with pytest.raises(ConfigError) as info:
        load(overlap(a, b))
    assert str(info.value).startswith(
        "NEW_BUCKET/NEW_PREFIX: must not be equal to, inside, or around OLD_BUCKET/OLD_PREFIX "
    )


@pytest.mark.parametrize(
    "a,b",
    [
        # AWS bucket names are unique in a partition: any region's endpoint names the same bucket.
        ("https://s3.eu-west-1.amazonaws.com", "https://s3.us-west-2.amazonaws.com"),
        ("https://s3.amazonaws.com", "https://s3-accelerate.dualstack.amazonaws.com"),
        ("https://s3.ap-southeast-2.amazonaws.com", "http://s3-eu-west-1.amazonaws.com/"),
    ],
)
def test_a_folder_is_not_copied_onto_itself_through_two_regions_of_aws(a, b):
    with pytest.raises(ConfigError, match="^NEW_BUCKET/NEW_PREFIX: must not be equal to"):
        load(overlap(a, b))


@pytest.mark.parametrize(
    "a,b",
    [
        ("http://localhost:8080", "http://127.0.0.1:8080"),
        ("http://minio.example", "http://minio.example:9000"),
        ("http://gw.example:8333/s3", "http://gw.example:8333/other"),
        ("https://s3.amazonaws.com", "http://localhost:8080"),
        ("https://s3.cn-north-1.amazonaws.com.cn", "https://s3.us-east-1.amazonaws.com"),
        ("https://s3.us-gov-west-1.amazonaws.com", "https://s3.us-west-1.amazonaws.com"),
    ],
)
def test_the_same_bucket_name_on_two_services_is_two_buckets(a, b):
    s = load(overlap(a, b))
    assert (s.old_bucket, s.new_bucket) == ("legacy-s3", "legacy-s3")


@pytest.mark.parametrize(
    "variable,url,message",
    [
        (
            "OLD_URL_ENDPOINT",
            "https://legacy-s3.s3.eu-west-1.amazonaws.com",
            "OLD_URL_ENDPOINT: names the bucket 'legacy-s3' (got 'https://legacy-s3.s3.eu-west-1.amazonaws.com'): "
            "give the service URL https://s3.eu-west-1.amazonaws.com here and the bucket in OLD_BUCKET",
        ),
        (
            "NEW_URL_ENDPOINT",
            "https://Production-S3.S3.dualstack.us-east-1.amazonaws.com:443/",
            "NEW_URL_ENDPOINT: names the bucket 'production-s3' (got "
            "'https://Production-S3.S3.dualstack.us-east-1.amazonaws.com:443'): give the service URL "
            "https://s3.dualstack.us-east-1.amazonaws.com:443 here and the bucket in NEW_BUCKET",
        ),
        (
            "URL_ENDPOINT",
            "https://my.dotted.bucket.s3.amazonaws.com",
            "URL_ENDPOINT: names the bucket 'my.dotted.bucket' (got 'https://my.dotted.bucket.s3.amazonaws.com'): "
            "give the service URL https://s3.amazonaws.com here and the bucket in OLD_BUCKET and NEW_BUCKET",
        ),
        (
            "OLD_URL_ENDPOINT",
            "https://s3-eu-west-1.amazonaws.com/legacy-s3/images",
            "OLD_URL_ENDPOINT: names the bucket 'legacy-s3' (got "
            "'https://s3-eu-west-1.amazonaws.com/legacy-s3/images'): give the service URL "
            "https://s3-eu-west-1.amazonaws.com here and the bucket in OLD_BUCKET",
        ),
    ],
)
def test_an_aws_endpoint_that_names_a_bucket_is_refused(variable, url, message):
    """boto3 adds OLD_BUCKET/NEW_BUCKET to the endpoint, in its path or its host: an endpoint that already
    names a bucket would reach `legacy-s3.s3...amazonaws.com/legacy-s3/images/...` and fail far from here."""
    with pytest.raises(ConfigError) as info:
        load({variable: url})
    assert str(info.value) == message


@pytest.mark.parametrize(
    "url",
    [
        "https://s3.amazonaws.com",
        "https://s3.us-east-1.amazonaws.com/",
        "https://s3-fips.dualstack.us-gov-east-1.amazonaws.com",
        "https://bucket.vpce-1a2b3c4d-5e6f.s3.us-east-1.vpce.amazonaws.com",  # PrivateLink: AWS's own form
        "http://minio.example:9000/s3",  # a gateway's path is part of its service
        "http://legacy-s3.minio.example:9000",
    ],
)
def test_service_urls_are_taken_as_written(url):
    assert load({"URL_ENDPOINT": url}).source.url == url.rstrip("/")


@pytest.mark.parametrize(
    "old,new,server_side",
    [
        (endpoint("https://s3.amazonaws.com"), endpoint("https://S3.US-EAST-1.amazonaws.com:443/"), True),
        (endpoint("http://localhost:8080"), endpoint("http://localhost:8080/"), True),
        # what chose streaming still does
        (endpoint("https://s3.amazonaws.com"), endpoint("https://s3.us-east-1.amazonaws.com", key="other"), False),
        (endpoint("https://s3.amazonaws.com"), endpoint("https://s3.amazonaws.com", secret="other"), False),
        (endpoint("https://s3.eu-west-1.amazonaws.com"), endpoint("https://s3.us-west-2.amazonaws.com"), False),
        (endpoint("http://localhost:8080"), endpoint("http://127.0.0.1:8080"), False),
    ],
)
def test_server_side_copies_need_one_service_and_the_same_keys(old, new, server_side):
    assert new.can_copy_from(old) is server_side
