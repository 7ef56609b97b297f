import botocore.exceptions
import pytest

from movers3.transfer import s3


def client_error(code, status, op="CopyObject"):
    return botocore.exceptions.ClientError(
        {"Error": {"Code": code, "Message": f"{code} happened"}, "ResponseMetadata": {"HTTPStatusCode": status}}, op
    )


@pytest.mark.parametrize(
    "code,status",
    [
        ("SlowDown", 503),
        ("InternalError", 500),
        ("ServiceUnavailable", 503),
        ("RequestTimeout", 400),
        ("Whatever", 502),
        ("TooManyRequests", 429),
    ],
)
def test_transient_errors_are_retryable(code, status):
    err = s3.classify(client_error(code, status), "CopyObject")
    assert err.retryable and err.code == code


@pytest.mark.parametrize(
    "code,status",
    [
        ("NoSuchKey", 404),
        ("AccessDenied", 403),
        ("InvalidObjectState", 403),
        ("InvalidRequest", 400),
        ("NoSuchBucket", 404),
    ],
)
def test_permanent_errors_are_not(code, status):
    err = s3.classify(client_error(code, status), "CopyObject")
    assert not err.retryable
    assert code in str(err)


@pytest.mark.parametrize(
    "exc",
    [
        botocore.exceptions.EndpointConnectionError(endpoint_url="http://127.0.0.1:1"),
        botocore.exceptions.ConnectionClosedError(endpoint_url="http://127.0.0.1:1"),
        botocore.exceptions.ReadTimeoutError(endpoint_url="http://127.0.0.1:1"),
    ],
)
def test_network_failures_are_retryable(exc):
    assert s3.classify(exc, "CopyObject").retryable


def test_wrong_credentials_are_systemic():
    assert "InvalidAccessKeyId" in s3.SYSTEMIC_CODES and "SignatureDoesNotMatch" in s3.SYSTEMIC_CODES
    assert "AccessDenied" not in s3.SYSTEMIC_CODES  # may be one object's ACL or KMS key


def test_non_botocore_errors_are_not_swallowed():
    with pytest.raises(KeyError):
        s3.classify(KeyError("bug"), "CopyObject")


@pytest.mark.parametrize(
    "exc",
    [
        botocore.exceptions.CredentialRetrievalError(provider="container-role", error_msg="timed out"),
        botocore.exceptions.MetadataRetrievalError(error_msg="503"),
    ],
)
def test_credentials_that_could_not_be_refreshed_are_retryable(exc):
    err = s3.classify(exc, "CopyObject")
    assert err.retryable and err.code not in s3.SYSTEMIC_CODES


def test_a_failed_crt_credentials_delegate_is_retryable_like_boto3():
    from movers3.transfer import copy_object

    class CrtError(Exception):
        name = "AWS_AUTH_CREDENTIALS_PROVIDER_DELEGATE_FAILURE"

    err = s3.classify(copy_object._transport_error(CrtError(), "http://127.0.0.1:1"), "CopyObject")
    assert err.retryable and err.code == "CredentialRetrievalError"
