"""The CRT engine's request building (pure logic: no request is sent) and the COPY_ENGINE setting."""

import datetime

import boto3
import botocore.config
import botocore.credentials
import pytest
from botocore.stub import Stubber

from movers3.exceptions import ConfigError, CopyError, SourceChanged
from movers3.settings import Endpoint, load
from movers3.transfer.copy_object import Boto3Engine, CopyRequest, CrtEngine

CREDS = botocore.credentials.Credentials("AKIDEXAMPLE", "secret-example-0123456789")


class Recorder:
    name = "recorder"

    def __init__(self):
        self.requests = []

    def copy_object(self, request):
        self.requests.append(request)
        return "fallback-etag"


def crt(url="http://127.0.0.1:9000", style="path", fallback=None):
    endpoint = Endpoint(url=url, access_key=None, secret_key=None, region="eu-west-3", addressing_style=style)
    return CrtEngine(endpoint, CREDS, fallback=fallback or Recorder())


def built(engine, extra=None, key="a/b.png", bucket="new-bucket"):
    request = engine._http_request(CopyRequest("old-bucket", "old/k", "etag1", bucket, key, extra or {}))
    return request.path, dict(request.headers)


def test_path_style_and_exact_key_encoding():
    key = "dir/ sp+%?#\n😀é/" + "x" * 10
    path, headers = built(crt(), key=key)
    assert path == "/new-bucket/dir/%20sp%2B%25%3F%23%0A%F0%9F%98%80%C3%A9/xxxxxxxxxx"
    assert headers["Host"] == "127.0.0.1:9000"
    assert headers["x-amz-copy-source"] == "old-bucket/old/k"
    assert headers["x-amz-copy-source-if-match"] == "etag1"


def test_copy_source_is_encoded_like_botocore():
    engine = crt()
    request = engine._http_request(CopyRequest("old", "a b/+%?#\n", "e", "new", "k"))
    assert dict(request.headers)["x-amz-copy-source"] == "old/a%20b/%2B%25%3F%23%0A"


def test_virtual_and_auto_addressing():
    path, headers = built(crt("https://s3.example.test", "virtual"))
    assert (path, headers["Host"]) == ("/a/b.png", "new-bucket.s3.example.test")
    path, headers = built(crt("https://s3.example.test/base", "auto"))
    assert (path, headers["Host"]) == ("/base/a/b.png", "new-bucket.s3.example.test")
    path, headers = built(crt("http://127.0.0.1:9000", "auto"))  # an IP endpoint: path style
    assert (path, headers["Host"]) == ("/new-bucket/a/b.png", "127.0.0.1:9000")
    path, headers = built(crt("https://s3.example.test", "auto"), bucket="Not_DNS")
    assert (path, headers["Host"]) == ("/Not_DNS/a/b.png", "s3.example.test")


def test_extra_parameters_map_to_botocore_headers():
    extra = {
        "MetadataDirective": "REPLACE",
        "ContentType": "image/png",
        "StorageClass": "STANDARD_IA",
        "ServerSideEncryption": "aws:kms",
        "SSEKMSKeyId": "key-1",
        "BucketKeyEnabled": True,
        "Metadata": {"owner": "42"},
        "ACL": "private",
        "TaggingDirective": "COPY",
        "Expires": datetime.datetime(2030, 1, 2, 3, 4, 5, tzinfo=datetime.UTC),
        "ObjectLockRetainUntilDate": datetime.datetime(2031, 1, 1, tzinfo=datetime.UTC),
    }
    _, headers = built(crt(), extra)
    assert headers["x-amz-metadata-directive"] == "REPLACE"
    assert headers["Content-Type"] == "image/png"
    assert headers["x-amz-storage-class"] == "STANDARD_IA"
    assert headers["x-amz-server-side-encryption"] == "aws:kms"
    assert headers["x-amz-server-side-encryption-aws-kms-key-id"] == "key-1"
    assert headers["x-amz-server-side-encryption-bucket-key-enabled"] == "true"
    assert headers["x-amz-meta-owner"] == "42"
    assert headers["x-amz-acl"] == "private"
    assert headers["x-amz-tagging-directive"] == "COPY"
    assert headers["Expires"] == "Wed, 02 Jan 2030 03:04:05 GMT"
    assert headers["x-amz-object-lock-retain-until-date"] == "2031-01-01T00:00:00Z"


@pytest.mark.parametrize(
    "extra",
    [{"NoSuchParameter": "x"}, {"ContentType": "a\r\nx-amz-acl: public-read"}, {"Metadata": {"k": "line\nbreak"}}],
)
def test_unknown_parameters_and_header_injection_are_refused(extra):
    with pytest.raises(ValueError):
        built(crt(), extra)


def test_sse_c_requests_go_to_the_boto3_fallback():
    fallback = Recorder()
    engine = crt(fallback=fallback)
    request = CopyRequest("old", "k", "e", "new", "k", {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": "k" * 32})
    assert engine.copy_object(request) == "fallback-etag"
    assert fallback.requests == [request]


def test_response_etag_and_200_error_body():
    engine = crt()
    ok = (
        b'<?xml version="1.0"?><CopyObjectResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        b"<LastModified>2026-01-01T00:00:00Z</LastModified><ETag>&quot;abc&quot;</ETag></CopyObjectResult>"
    )
    assert engine._etag(ok, 200) == "abc"
    error = b"<Error><Code>SlowDown</Code><Message>Please reduce</Message></Error>"
    with pytest.raises(Exception) as info:
        engine._etag(error, 200)
    assert (info.value.code, info.value.retryable) == ("SlowDown", True)
    with pytest.raises(Exception) as info:
        engine._etag(b"", 200)
    assert info.value.retryable


def test_copy_engine_setting():
    base = {"MYSQL_URL": "mysql://u:p@h/db"}
    assert load(base).copy_engine in ("boto3", "crt")
    assert load({**base, "COPY_ENGINE": "boto3"}).copy_engine == "boto3"
    assert load({**base, "COPY_ENGINE": "CRT"}).copy_engine == "crt"
    with pytest.raises(ConfigError, match="COPY_ENGINE"):
        load({**base, "COPY_ENGINE": "obstore"})


def test_no_secret_in_the_engine_repr():
    engine = crt()
    assert "secret-example" not in repr(vars(engine))


def stubbed_client():
    """A real botocore S3 client whose requests are answered by botocore's Stubber: it validates every
    parameter against the service model and checks them against what the test expects, and no request
    leaves the process."""
    return boto3.client(
        "s3",
        endpoint_url="http://127.0.0.1:9",
        region_name="eu-west-3",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret-example-0123456789",
        config=botocore.config.Config(s3={"addressing_style": "path"}),
    )


def test_the_boto3_engine_sends_one_copy_pinned_to_the_source_etag():
    client = stubbed_client()
    extra = {
        "StorageClass": "STANDARD_IA",
        "ServerSideEncryption": "AES256",
        "MetadataDirective": "REPLACE",
        "ContentType": "image/png",
        "Metadata": {"owner": "42"},
    }
    with Stubber(client) as stub:
        stub.add_response(
            "copy_object",
            {"CopyObjectResult": {"ETag": '"0123456789abcdef0123456789abcdef"'}},
            expected_params={
                "Bucket": "new-bucket",
                "Key": "a b/+c.png",
                "CopySource": {"Bucket": "old-bucket", "Key": "old/ k+%.png"},
                "CopySourceIfMatch": '"etag1"',
                **extra,
            },
        )
        etag = Boto3Engine(client).copy_object(
            CopyRequest("old-bucket", "old/ k+%.png", "etag1", "new-bucket", "a b/+c.png", extra)
        )
        stub.assert_no_pending_responses()
    assert etag == "0123456789abcdef0123456789abcdef"  # quotes stripped, as the crt engine returns it


@pytest.mark.parametrize(
    "code, status, expected",
    [
        ("PreconditionFailed", 412, SourceChanged),
        ("SlowDown", 503, ("SlowDown", True)),
        ("NoSuchKey", 404, ("NoSuchKey", False)),
        ("AccessDenied", 403, ("AccessDenied", False)),
    ],
)
def test_both_engines_sort_an_s3_error_alike(code, status, expected):
    """The same S3 answer, whichever engine received it, is the same error with the same code and
    retryability: the crt engine from the S3ResponseError awscrt raises for it, the boto3 one from
    botocore's ClientError."""
    from awscrt.s3 import S3ResponseError

    client = stubbed_client()
    with Stubber(client) as stub:
        stub.add_client_error("copy_object", service_error_code=code, http_status_code=status)
        with pytest.raises(CopyError) as boto3_error:
            Boto3Engine(client).copy_object(CopyRequest("old", "k", "e", "new", "k"))
    body = f"<Error><Code>{code}</Code><Message>m</Message></Error>".encode()
    crt_error = crt()._failure(
        S3ResponseError(
            code=14343,
            name="AWS_ERROR_S3_INVALID_RESPONSE_STATUS",
            message="Invalid response status from request",
            status_code=status,
            body=body,
            operation_name="CopyObject",
        ),
        [],
    )
    for error in (boto3_error.value, crt_error):
        if expected is SourceChanged:
            assert type(error) is SourceChanged
        else:
            assert type(error) is CopyError and (error.code, error.retryable) == expected
