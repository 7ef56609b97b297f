"""One side of S3 as `check` sees it: an endpoint, its credentials and where they come from (never the
secret), and each request's answer; after an answer that says the credentials or the endpoint fail,
that side asks no more."""

from __future__ import annotations

import dataclasses
from typing import Any

import botocore.exceptions
from botocore.client import BaseClient

from movers3.exceptions import ConfigError
from movers3.settings import Endpoint
from movers3.transfer import s3

# Answers that say the credentials or the endpoint fail, whatever the request: the other requests of
# that side are not made.
_REFUSED = frozenset(
    {
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "InvalidToken",
        "ExpiredToken",
        "TokenRefreshRequired",
        "AuthorizationHeaderMalformed",
        "AccountProblem",
        "AllAccessDisabled",
    }
)
_HINTS = {
    "InvalidAccessKeyId": "wrong access key id",
    "SignatureDoesNotMatch": "wrong secret key",
    "AuthorizationHeaderMalformed": "wrong region?",
    "EndpointConnectionError": "is the endpoint right and the server up?",
    "NoCredentialsError": "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or give boto3 a role",
}
_DENIED = ("AccessDenied", "403")
# botocore's Credentials.method, as an operator would name it.
_CREDENTIAL_SOURCES = {
    "env": "the environment (boto3's AWS_* variables)",
    "shared-credentials-file": "the shared credentials file",
    "config-file": "the AWS config file",
    "custom-process": "a credential_process of the AWS config",
    "assume-role": "an assumed role of the AWS config",
    "assume-role-with-web-identity": "a web identity role (e.g. an EKS service account)",
    "sso": "AWS IAM Identity Center (SSO)",
    "container-role": "the container's role (e.g. an ECS task role)",
    "iam-role": "the instance's role (EC2 instance profile)",
    "boto-config": "a boto config file",
}
# The methods whose credentials come from a profile of the shared AWS files.
_PROFILE_METHODS = ("shared-credentials-file", "config-file", "assume-role", "custom-process", "sso")


@dataclasses.dataclass(frozen=True)
class Answer:
    """One request's outcome: the response, or the error's code, HTTP status and message."""

    response: dict[str, Any] | None
    code: str = ""
    status: int = 200
    message: str = ""

    @property
    def denied(self) -> bool:
        return self.code in _DENIED

    def text(self) -> str:
        hint = _HINTS.get(self.code)
        said = f"{self.code}: {self.message}" if self.code else self.message
        return said + (f" ({hint})" if hint else "")


class Side:
    """One endpoint with one set of credentials; after an answer that says those fail, it asks no more."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.refused: Answer | None = None
        self.answered = False
        self.client: BaseClient | None = None
        try:
            self.client = s3.client(endpoint)
        except botocore.exceptions.BotoCoreError as exc:
            self.refused = Answer(None, type(exc).__name__, 0, str(exc))
        except ConfigError as exc:  # AWS_PROFILE names a profile the shared files lack
            self.refused = Answer(None, "", 0, str(exc))

    def ask(self, operation: str, **params: Any) -> Answer | None:
        """The answer to one request, or None when this side's credentials or endpoint already failed."""
        if self.client is None or self.refused is not None:
            return None
        try:
            response = getattr(self.client, operation)(**params)
            answer = Answer(response)
        except botocore.exceptions.ClientError as exc:
            error = exc.response.get("Error", {})
            answer = Answer(None, s3.error_code(exc), s3.status_code(exc), str(error.get("Message") or ""))
        except botocore.exceptions.BotoCoreError as exc:
            answer = Answer(None, type(exc).__name__, 0, str(exc))
        if answer.code in _REFUSED or answer.status == 0:
            self.refused = answer
            return None
        self.answered = True
        return answer

    def credentials(self) -> tuple[str | None, str]:
        """The access key id (never the secret) and where the credentials come from."""
        endpoint = self.endpoint
        if endpoint.access_key and endpoint.secret_key:
            token = "with a session token" if endpoint.session_token else "no session token"  # never the token
            return (
                endpoint.access_key,
                f"movers3's settings (AWS_ACCESS_KEY_ID, or OLD_/NEW_AWS_ACCESS_KEY_ID; {token})",
            )
        try:
            found = s3.credentials(endpoint)
            frozen = found.get_frozen_credentials() if found is not None else None
        except ConfigError as exc:  # AWS_PROFILE names a profile the shared files lack
            return None, str(exc)
        except botocore.exceptions.BotoCoreError as exc:
            return None, f"boto3's default chain failed: {type(exc).__name__}"
        if found is None or frozen is None:
            return None, "none found (boto3's default chain)"
        method = str(found.method or "")
        source = _CREDENTIAL_SOURCES.get(method, "boto3's default chain")
        if method in _PROFILE_METHODS:
            source += f", profile {endpoint.profile or s3.profile_name(endpoint)!r}"
        return frozen.access_key, f"{source} [{method}]"


def ownership(answer: Answer | None) -> str | None:
    """A bucket's object ownership (GetBucketOwnershipControls), or None when it could not be read."""
    if answer is None:
        return None
    if answer.code == "OwnershipControlsNotFoundError":
        return "not set (ACLs enabled)"
    if answer.response is None:
        return None
    rules = answer.response.get("OwnershipControls", {}).get("Rules", [])
    return str(rules[0].get("ObjectOwnership")) if rules else "not set (ACLs enabled)"
