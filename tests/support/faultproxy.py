"""A fault-injecting HTTP proxy between the workers and a real S3 server, on loopback.

For a share of requests it answers 503 SlowDown or 500 InternalError itself, or a 200 whose body is an
<Error> (as S3 does when a copy fails after it began to answer), resets the connection,
delays the response, holds it past the client's read timeout, or forwards it and damages what comes
back (one byte of a body flipped, or one character of an ETag in an XML answer); the rest go through
untouched (the Host header is kept, so SigV4 signatures still verify upstream). It counts what it
injected, per kind, so that a test can report and assert on it. `rules` can also target requests by a
substring of their path and, optionally, their method (e.g. every GET of one key), and only rules can
`hang` a request: hold it, unanswered, until `release()` or `stop()` (a request stuck past any drain).
Every request received is kept in `seen` (method, path with its query, headers), for a test that
checks which S3 operations a command sent, whichever client sent them, and the client connections it
accepted are counted in `connections`."""

from __future__ import annotations

import collections
import http.client
import random
import re
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

from tests.support.services import free_port

KINDS = ("slowdown", "internal", "reset", "slow", "timeout", "corrupt", "error200")
HANG_LIMIT_SECONDS = 600
_ERROR_XML = (
    '<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>{message}</Message>'
    "<RequestId>faultproxy</RequestId></Error>"
)
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}


class _QuietServer(ThreadingHTTPServer):
    request_queue_size = 512  # clients that open hundreds of connections at once (s5cmd) are not refused

    def handle_error(self, _request, _client_address):  # a client that hung up (a timeout, a reset): expected
        pass


class FaultProxy:
    def __init__(
        self,
        upstream: str,
        *,
        rates: dict[str, float] | None = None,
        seed: int = 7,
        slow_seconds: float = 0.3,
        timeout_seconds: float = 4.0,
        only_methods: tuple[str, ...] = (),
    ) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname, parts.port)
        self.rates = dict(rates or {})
        # (substring of the unquoted path, or a compiled regex searched in it; kind[, method]): always injected
        self.rules: list[tuple] = []
        self.only_methods = only_methods
        self.slow_seconds = slow_seconds
        self.timeout_seconds = timeout_seconds
        self.injected: collections.Counter[str] = collections.Counter()
        self.forwarded = 0
        self.connections = 0  # TCP connections accepted from clients
        self.seen: list[tuple[str, str, dict[str, str]]] = []
        self._random = random.Random(seed)
        self._released = threading.Event()
        self._lock = threading.Lock()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server = _QuietServer(("127.0.0.1", self.port), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def hold(self) -> None:
        """Hang requests again (after a `release`)."""
        self._released.clear()

    def release(self) -> None:
        """Let every hanging request go (their connections are closed unanswered)."""
        self._released.set()

    def stop(self) -> None:
        self._released.set()
        self._server.shutdown()
        self._server.server_close()

    def _choose(self, method: str, path: str) -> str | None:
        target = unquote(path)
        for needle, kind, *only in self.rules:
            found = needle.search(target) if isinstance(needle, re.Pattern) else needle in target
            if found and (not only or only[0] == method):
                return kind
        if self.only_methods and method not in self.only_methods:
            return None
        with self._lock:
            roll = self._random.random()
        edge = 0.0
        for kind in KINDS:
            edge += self.rates.get(kind, 0.0)
            if roll < edge:
                return kind
        return None

    def _count(self, kind: str) -> None:
        with self._lock:
            self.injected[kind] += 1

    def _handler(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def setup(self):
                super().setup()
                with proxy._lock:
                    proxy.connections += 1

            def _any(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with proxy._lock:
                    proxy.seen.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()}))
                kind = proxy._choose(self.command, self.path)
                if kind:
                    proxy._count(kind)
                if kind == "slowdown":
                    return self._error(503, "SlowDown", "Please reduce your request rate.")
                if kind == "internal":
                    return self._error(500, "InternalError", "We encountered an internal error.")
                if kind == "error200":
                    return self._error(200, "InternalError", "We encountered an internal error.")
                if kind == "reset":
                    # RST instead of FIN: the client sees a connection reset.
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.close_connection = True
                    self.connection.close()
                    return
                if kind == "hang":
                    proxy._released.wait(HANG_LIMIT_SECONDS)
                    self.close_connection = True
                    return
                if kind == "timeout":
                    time.sleep(proxy.timeout_seconds)
                    self.close_connection = True
                    return
                if kind == "slow":
                    time.sleep(proxy.slow_seconds)
                self._forward(body, corrupt=kind == "corrupt")

            def _error(self, status, code, message):
                payload = _ERROR_XML.format(code=code, message=message).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _forward(self, body: bytes, corrupt: bool = False):
                upstream = http.client.HTTPConnection(*proxy.upstream, timeout=120)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                    upstream.request(self.command, self.path, body=body or None, headers=headers)
                    response = upstream.getresponse()
                    payload = response.read()
                finally:
                    upstream.close()
                with proxy._lock:
                    proxy.forwarded += 1
                if corrupt:
                    payload = damage(payload)
                self.send_response(response.status, response.reason)
                for key, value in response.getheaders():
                    if key.lower() not in _HOP_BY_HOP and key.lower() != "content-length":
                        self.send_header(key, value)
                # A HEAD answer has no body but tells the object's length.
                length = response.getheader("Content-Length") if self.command == "HEAD" else len(payload)
                self.send_header("Content-Length", str(length or 0))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _any

        return Handler


def damage(payload: bytes) -> bytes:
    """One ETag character changed in an XML answer (a copy that S3 'made wrong'), else one byte of the
    body flipped (bytes damaged on the way)."""
    marker = payload.find(b"<ETag>")
    if marker >= 0:
        at = marker + len(b"<ETag>")
        for quote in (b"&quot;", b'"'):
            if payload.startswith(quote, at):
                at += len(quote)
                break
        swapped = b"0" if payload[at : at + 1] != b"0" else b"1"
        return payload[:at] + swapped + payload[at + 1 :]
    if not payload:
        return payload
    middle = len(payload) // 2
    return payload[:middle] + bytes([payload[middle] ^ 0xFF]) + payload[middle + 1 :]
