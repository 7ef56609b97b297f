"""Where AWS credentials come from when no keys are given, imitated on loopback: the ECS container
endpoint, the EC2 instance metadata service (IMDSv2) and STS's AssumeRoleWithWebIdentity (EKS), all
served by one small HTTP server, plus the shared files of a named profile. Each hands out the keys of a
SeaweedFS identity of the test stack, whichever `issue` says is current, and logs what it handed out.

`clean_env` is the base of every test environment here: no inherited AWS_* variable, the instance
metadata service off, and the shared files pointed at a test's own, so that botocore never reaches
169.254.169.254, a real STS or a developer's ~/.aws.

The session token handed out is empty: SeaweedFS 4.48 reads any X-Amz-Security-Token as a session of
its own STS (a JWT it signed) and answers InvalidAccessKeyId for a plain identity's keys with any
other token (weed/s3api/auth_signature_v4.go, verifyV4Signature). botocore and awscrt then send no
token header, as for long-term keys; the expiry, which is what rotation is about, is kept.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import threading
import time
import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from xml.sax.saxutils import escape

ROLE = "movers3-worker-role"
ROLE_ARN = f"arn:aws:iam::123456789012:role/{ROLE}"
CONTAINER_PATH = "/v2/credentials/movers3-task"
AUTH_TOKEN = "container-auth-token-0123456789"
WEB_IDENTITY_TOKEN = "eyJhbGciOiJSUzI1NiJ9.web-identity.0123456789"
IMDS_TOKEN = "imds-session-token-0123456789"


@dataclasses.dataclass(frozen=True)
class Issued:
    access_key: str
    secret_key: str
    expiration: datetime.datetime
    token: str = ""


@dataclasses.dataclass(frozen=True)
class Handed:
    """One set of credentials handed out: when, by which protocol, which key."""

    at: float
    via: str
    access_key: str


class CredentialServer:
    """ECS, IMDSv2 and STS on one loopback port. `issue()` gives the credentials current now."""

    def __init__(self, issue: Callable[[], Issued]) -> None:
        self.issue = issue
        self.handed: list[Handed] = []
        self.refused: list[str] = []  # requests refused (a missing token, a wrong path): each a line
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_PUT(self) -> None:
                if self.path == "/latest/api/token" and self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
                    self._send(200, IMDS_TOKEN, "text/plain")
                else:
                    self._refuse(f"PUT {self.path}")

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == CONTAINER_PATH:
                    if self.headers.get("Authorization") != AUTH_TOKEN:
                        return self._refuse("container endpoint without its authorization token")
                    creds = server._hand("container")
                    return self._send(200, json.dumps({**_json(creds), "RoleArn": ROLE_ARN}))
                prefix = "/latest/meta-data/iam/security-credentials/"
                if path.startswith(prefix):
                    if self.headers.get("X-aws-ec2-metadata-token") != IMDS_TOKEN:
                        return self._refuse("IMDS without an IMDSv2 session token")
                    if path == prefix:
                        return self._send(200, ROLE, "text/plain")
                    if path == prefix + ROLE:
                        creds = server._hand("imds")
                        stamp = _stamp(datetime.datetime.now(datetime.UTC))
                        body = {"Code": "Success", "LastUpdated": stamp, "Type": "AWS-HMAC", **_json(creds)}
                        return self._send(200, json.dumps(body))
                self._refuse(f"GET {path}")

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = urllib.parse.parse_qs(self.rfile.read(length).decode())
                field = {k: v[0] for k, v in form.items()}
                if field.get("Action") != "AssumeRoleWithWebIdentity":
                    return self._refuse(f"POST {field.get('Action')}")
                if field.get("RoleArn") != ROLE_ARN or field.get("WebIdentityToken") != WEB_IDENTITY_TOKEN:
                    return self._refuse("AssumeRoleWithWebIdentity with another role or token")
                creds = server._hand("sts")
                self._send(200, _sts_xml(creds, field.get("RoleSessionName", "")), "text/xml")

            def _send(self, status: int, body: str, kind: str = "application/json") -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _refuse(self, what: str) -> None:
                with server._lock:
                    server.refused.append(what)
                self._send(403, json.dumps({"message": what}))

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="credservers", daemon=True)

    def _hand(self, via: str) -> Issued:
        creds = self.issue()
        with self._lock:
            self.handed.append(Handed(time.monotonic(), via, creds.access_key))
        return creds

    def __enter__(self) -> CredentialServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def keys_handed(self) -> list[str]:
        """The access keys handed out, in order, each change once."""
        with self._lock:
            keys = [h.access_key for h in self.handed]
        return [k for i, k in enumerate(keys) if i == 0 or keys[i - 1] != k]

    # -- the environment of each source ---------------------------------------------------------

    def container_env(self) -> dict[str, str]:
        return {
            "AWS_CONTAINER_CREDENTIALS_FULL_URI": self.url + CONTAINER_PATH,
            "AWS_CONTAINER_AUTHORIZATION_TOKEN": AUTH_TOKEN,
        }

    def imds_env(self) -> dict[str, str]:
        # The one environment that leaves the metadata service on: its endpoint is this server.
        return {"AWS_EC2_METADATA_DISABLED": "false", "AWS_EC2_METADATA_SERVICE_ENDPOINT": self.url + "/"}

    def web_identity_env(self, folder: Path) -> dict[str, str]:
        token = folder / "web-identity-token"
        token.write_text(WEB_IDENTITY_TOKEN)
        # botocore's web identity provider builds its STS client like any other client, so the
        # service-specific endpoint variable sends AssumeRoleWithWebIdentity here.
        return {
            "AWS_WEB_IDENTITY_TOKEN_FILE": str(token),
            "AWS_ROLE_ARN": ROLE_ARN,
            "AWS_ROLE_SESSION_NAME": "movers3-test",
            "AWS_ENDPOINT_URL_STS": self.url,
        }


def clean_env(folder: Path, base: dict[str, str] | None = None) -> dict[str, str]:
    """`base` (default: this process's environment) without any AWS_* variable, with the metadata
    service off and empty shared files of `folder`, so that only what a test adds is found."""
    env = {k: v for k, v in (os.environ if base is None else base).items() if not k.startswith("AWS_")}
    config, credentials = folder / "aws-config", folder / "aws-credentials"
    for path in (config, credentials):
        if not path.exists():
            path.write_text("")
    env.update(
        {
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": str(config),
            "AWS_SHARED_CREDENTIALS_FILE": str(credentials),
        }
    )
    return env


def profile_env(folder: Path, profile: str, access_key: str, secret_key: str, region: str) -> dict[str, str]:
    """A named profile (not `default`) in the shared credentials file, its region in the config file,
    chosen with AWS_PROFILE."""
    (folder / "aws-credentials").write_text(
        f"[default]\naws_access_key_id = not-this-one\naws_secret_access_key = not-this-one\n\n"
        f"[{profile}]\naws_access_key_id = {access_key}\naws_secret_access_key = {secret_key}\n"
    )
    (folder / "aws-config").write_text(f"[default]\nregion = eu-north-1\n\n[profile {profile}]\nregion = {region}\n")
    return {"AWS_PROFILE": profile}


def _stamp(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _json(creds: Issued) -> dict[str, str]:
    return {
        "AccessKeyId": creds.access_key,
        "SecretAccessKey": creds.secret_key,
        "Token": creds.token,
        "Expiration": _stamp(creds.expiration),
    }


def _sts_xml(creds: Issued, session: str) -> str:
    return (
        '<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
        "<AssumeRoleWithWebIdentityResult>"
        f"<Credentials><AccessKeyId>{escape(creds.access_key)}</AccessKeyId>"
        f"<SecretAccessKey>{escape(creds.secret_key)}</SecretAccessKey>"
        f"<SessionToken>{escape(creds.token)}</SessionToken>"
        f"<Expiration>{_stamp(creds.expiration)}</Expiration></Credentials>"
        f"<AssumedRoleUser><Arn>{ROLE_ARN}/{escape(session)}</Arn><AssumedRoleId>AROA0:{escape(session)}"
        "</AssumedRoleId></AssumedRoleUser>"
        "<SubjectFromWebIdentityToken>system:serviceaccount:movers3:worker</SubjectFromWebIdentityToken>"
        "</AssumeRoleWithWebIdentityResult>"
        "<ResponseMetadata><RequestId>00000000-0000-0000-0000-000000000000</RequestId></ResponseMetadata>"
        "</AssumeRoleWithWebIdentityResponse>"
    )
