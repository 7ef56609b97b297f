"""What goes on the wire when credentials rotate: both copy engines sign each CopyObject with the keys
and session token current at that moment. SeaweedFS refuses session tokens it did not issue itself
(tests/support/credservers.py), so the tokens are checked here against a loopback server that records
every request's headers and answers each CopyObject."""

from __future__ import annotations

import datetime
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import botocore.config
import botocore.credentials
import botocore.session
import pytest

from movers3.settings import Endpoint
from movers3.transfer.copy_object import Boto3Engine, CopyRequest, CrtEngine

pytestmark = pytest.mark.integration

ANSWER = b'<CopyObjectResult><ETag>"0123456789abcdef0123456789abcdef"</ETag></CopyObjectResult>'


class Recorder:
    def __init__(self) -> None:
        self.headers: list[dict[str, str]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            # Keep-alive, as S3 does: under HTTP/1.0 the server closes each connection after its answer,
            # and a client that reuses it first (awscrt does) meets a closed connection, not a signature.
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_PUT(self) -> None:
                recorder.headers.append({k.lower(): v for k, v in self.headers.items()})
                self.send_response(200)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(ANSWER)))
                self.end_headers()
                self.wfile.write(ANSWER)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


class Rotating:
    """Temporary credentials whose source hands out generation `n` until told otherwise."""

    def __init__(self) -> None:
        self.n = 0

    def current(self) -> dict[str, str]:
        # Within botocore's mandatory refresh window (10 min): refreshed before every signing.
        expiry = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=90)
        return {
            "access_key": f"ASIAGEN{self.n}",
            "secret_key": f"secret-of-generation-{self.n}",
            "token": f"session-token-of-generation-{self.n}",
            "expiry_time": expiry.isoformat(),
        }

    def credentials(self) -> botocore.credentials.RefreshableCredentials:
        return botocore.credentials.RefreshableCredentials.create_from_metadata(
            self.current(), refresh_using=self.current, method="container-role"
        )


class Provider(botocore.credentials.CredentialProvider):
    def __init__(self, credentials: botocore.credentials.Credentials) -> None:
        self.credentials = credentials

    def load(self) -> botocore.credentials.Credentials:
        return self.credentials


def boto3_engine(url: str, credentials: botocore.credentials.Credentials) -> Boto3Engine:
    core = botocore.session.Session()
    core.get_component("credential_provider").insert_before("env", Provider(credentials))
    client = boto3.session.Session(botocore_session=core).client(
        "s3",
        endpoint_url=url,
        region_name="us-east-1",
        config=botocore.config.Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": 1}),
    )
    return Boto3Engine(client)


def crt_engine(url: str, credentials: botocore.credentials.Credentials) -> CrtEngine:
    endpoint = Endpoint(url=url, access_key=None, secret_key=None, region="us-east-1", addressing_style="path")
    return CrtEngine(endpoint, credentials, fallback=boto3_engine(url, credentials))


@pytest.mark.parametrize("build", [crt_engine, boto3_engine], ids=["crt", "boto3"])
def test_each_copy_is_signed_with_the_credentials_current_then(build):
    recorder, source = Recorder(), Rotating()
    engine = build(recorder.url, source.credentials())
    try:
        for n in (0, 0, 1, 1, 2):
            source.n = n
            engine.copy_object(CopyRequest("old", f"k{n}", "e", "new", f"k{n}"))
    finally:
        recorder.server.shutdown()
        recorder.server.server_close()
    tokens = [h.get("x-amz-security-token") for h in recorder.headers]
    keys = [h["authorization"].split("Credential=", 1)[1].split("/", 1)[0] for h in recorder.headers]
    assert tokens == [f"session-token-of-generation-{n}" for n in (0, 0, 1, 1, 2)]
    assert keys == [f"ASIAGEN{n}" for n in (0, 0, 1, 1, 2)]
