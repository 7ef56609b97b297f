"""Debian's headless Chromium (`make system-deps` installs it), kept off the network: a page opened
from a file, a screenshot or its DOM, and proof that the page asked nothing of the network.

Every request Chromium makes goes to a proxy on loopback that this module holds: it records what was
asked and answers nothing, so no request leaves the machine, and names resolve to nothing outside it.
Chromium 156 asks its own services (update.googleapis.com, accounts.google.com) for a component
update and an account check even with --disable-background-networking and --disable-component-update:
those are trapped like the rest and told apart from the page's own requests, of which there must be none."""

from __future__ import annotations

import re
import socket
import subprocess
import threading
from html.parser import HTMLParser
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
WINDOW = (1200, 2000)
# Hosts of Chromium's own background requests (trapped, never sent): not the page's.
_CHROMIUM_OWN = re.compile(r"(^|\.)(google\.com|googleapis\.com|gvt1\.com|gstatic\.com)$")
_REQUEST_HOST = re.compile(rb"^[A-Z]+ (?:[a-z]+://)?\[?([^/:\]\s]+)")


class _Trap:
    """A proxy on loopback that records the host each connection asks for and closes it. Each
    connection is read on its own thread, so that an idle one cannot hold back the next; a connection
    that sends nothing before Chromium closes it (Chromium opens spare connections to its proxy ahead
    of need) asked for nothing and is not recorded."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.hosts: list[str] = []
        self.readers: list[threading.Thread] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return  # closed
            reader = threading.Thread(target=self._read, args=(conn,), daemon=True)
            self.readers.append(reader)
            reader.start()

    def _read(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            try:
                first = conn.recv(4096)
            except OSError:
                first = b""
        if first:
            found = _REQUEST_HOST.match(first)
            self.hosts.append(found.group(1).decode("ascii", "replace") if found else repr(first[:60]))

    def close(self) -> None:
        self.sock.close()
        self.thread.join(timeout=10)
        for reader in self.readers:
            reader.join(timeout=10)


def render(page: Path, profile: Path, *, screenshot: Path | None = None) -> str:
    """Open `page` headless: write a screenshot when asked, and return the DOM Chromium built. Fails
    when the page made any request (Chromium's own are trapped and allowed)."""
    trap = _Trap()
    try:
        args = [
            CHROMIUM,
            "--headless",
            "--no-sandbox",  # root in a container: Chromium's sandbox needs user namespaces
            "--disable-gpu",
            f"--user-data-dir={profile}",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-default-apps",
            "--disable-extensions",
            "--disable-sync",
            "--disable-domain-reliability",
            "--disable-client-side-phishing-detection",
            "--disable-features=NetworkTimeServiceQuerying,OptimizationHints,MediaRouter",
            "--no-pings",
            f"--proxy-server=127.0.0.1:{trap.port}",
            "--proxy-bypass-list=<-loopback>",  # loopback through the trap too
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",  # only the trap is reachable
            "--hide-scrollbars",
            f"--window-size={WINDOW[0]},{WINDOW[1]}",
            *([f"--screenshot={screenshot}"] if screenshot else ["--dump-dom"]),
            page.resolve().as_uri(),
        ]
        result = subprocess.run(args, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    finally:
        trap.close()
    assert result.returncode == 0, result.stderr[-3000:]
    asked = [host for host in trap.hosts if not _CHROMIUM_OWN.search(host)]
    assert not asked, f"{page} made network requests (trapped on loopback): {asked}"
    return result.stdout


class Text(HTMLParser):
    """A DOM's text, a space between elements, and the names of its elements."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        self.parts.append(" ")

    def handle_endtag(self, tag):
        self.parts.append(" ")

    def handle_data(self, data):
        self.parts.append(data)

    def text(self) -> str:
        return " ".join("".join(self.parts).split())
