"""A fault-injecting TCP proxy between a MySQL/MariaDB client and a real server, on loopback.

It exists to produce the one failure a retried transaction must survive: "the outcome of the COMMIT is
unknown". The client sends COMMIT, the server commits, and the connection drops before the client reads
the OK. A real network can do this at any moment; this proxy does it on demand and only there, so that a
test can assert what a retry does next (the work was done once, not twice, and not lost).

Bytes pass through unchanged, one upstream connection per client connection, two threads per connection
(one per direction). The proxy frames the client's stream into protocol packets (a 3-byte little-endian
payload length, a 1-byte sequence id, the payload; a payload of 0xFFFFFF bytes continues in the next
packet) to recognise commands, and frames the server's answer only while it swallows a reply.

How commands are told from the handshake: the sequence id starts at 0 with every command and nowhere
else from the client. The server's greeting is packet 0, the client's handshake response is packet 1 and
its answers to an authentication switch are odd packets after that, so "a client packet with sequence id
0" is a command, whatever its first byte. (The one exception, a LOAD DATA LOCAL upload of more than 255
packets, whose sequence id wraps, is not a case movers3 has.) A client that asks for TLS or compression
(CLIENT_SSL, CLIENT_COMPRESS in its first packet) makes its stream opaque: it is forwarded, never inspected,
and no fault fires on it.

Faults, armed from the test's thread, taken by the first connection that meets them:
- `drop_after_commit(times, match)`: the next `times` COM_QUERY packets whose SQL ends with COMMIT (and
  contains `match`, a substring or a compiled regex, when given) go to the server; the proxy reads the
  server's whole reply (all results of a multi-statement query, up to the OK/ERR without
  SERVER_MORE_RESULTS_EXISTS), so the COMMIT has run, discards it, and resets the client's connection
  (RST, no FIN) and closes the server's. The client sees "Lost connection" (2013) with its COMMIT applied.
- `drop_next_query(match, times)`: the next matching COM_QUERY is forwarded and the client's connection is
  reset at once, and the server's closed, without waiting: the statement may not have started, may be
  running, or may be done.

Bounded: a fixed 64 KiB buffer per direction, at most `max_connections` client connections (more are
refused: accepted and closed), at most 1 MiB of a query's text kept for `match` (plus its last 64 bytes
for the COMMIT test); `stop()` closes every socket and joins every thread with a timeout."""

from __future__ import annotations

import re
import socket
import struct
import threading
import time
from dataclasses import dataclass

from tests.support.services import free_port

COM_QUERY = 0x03
MAX_PAYLOAD = 0xFFFFFF  # a payload this long continues in the next packet
CLIENT_COMPRESS = 0x0020
CLIENT_SSL = 0x0800
CLIENT_DEPRECATE_EOF = 1 << 24
MARIADB_CLIENT_CACHE_METADATA = 1 << 4  # in MariaDB's extended capabilities (bytes 28-31 of the response)
SERVER_MORE_RESULTS_EXISTS = 0x0008
PROGRESS_ERROR_CODE = 0xFFFF  # MariaDB's progress report travels as an ERR packet; it ends nothing

CHUNK = 64 * 1024
QUERY_HEAD_LIMIT = 1024 * 1024
QUERY_TAIL = 64
REPLY_HEAD = 32  # an OK or EOF packet's status flags lie within its first 21 bytes

# COMMIT as the last word: before optional whitespace and one ';', after whitespace or ';' (or at the start
# of the whole text). The boundary keeps "SET AUTOCOMMIT = 0" and names ending in "commit" out.
_COMMIT_AT_END = re.compile(rb"[\s;]commit\s*;?\s*$", re.IGNORECASE)


def ends_with_commit(sql: bytes, *, whole: bool = True) -> bool:
    """Whether SQL text ends with a COMMIT statement; `whole=False`: only its tail is given, so the
    tail's start is no statement boundary."""
    return _COMMIT_AT_END.search((b" " if whole else b"") + sql) is not None


@dataclass
class _Packet:
    """A logical packet (its physical parts joined): its first sequence id, length and kept bytes."""

    seq: int
    length: int
    head: bytes
    tail: bytes


class _Framer:
    """Cuts a byte stream into logical packets, keeping at most `keep` bytes of each payload's start and
    `tail` bytes of its end, whatever its size: the stream itself is forwarded by the caller."""

    def __init__(self, keep: int, tail: int = 0) -> None:
        self._keep = keep
        self._tail_size = tail
        self._header = bytearray()
        self._left = 0  # payload bytes still to come in the current physical packet
        self._in_payload = False
        self._continued = False  # the current physical packet is MAX_PAYLOAD long: the logical one goes on
        self._seq = 0
        self._length = 0
        self._head = bytearray()
        self._tail = bytearray()

    def feed(self, data: memoryview) -> list[_Packet]:
        done: list[_Packet] = []
        at = 0
        while at < len(data):
            if not self._in_payload:
                need = 4 - len(self._header)
                self._header += data[at : at + need]
                at += min(need, len(data) - at)
                if len(self._header) < 4:
                    break
                length = int.from_bytes(self._header[:3], "little")
                if not self._continued:  # a new logical packet
                    self._seq = self._header[3]
                    self._length = 0
                    self._head.clear()
                    self._tail.clear()
                self._header.clear()
                self._continued = length == MAX_PAYLOAD
                self._left = length
                self._in_payload = length > 0
                if not self._in_payload and not self._continued:
                    done.append(self._finish())
                continue
            piece = data[at : at + self._left]
            at += len(piece)
            self._left -= len(piece)
            self._length += len(piece)
            if len(self._head) < self._keep:
                self._head += piece[: self._keep - len(self._head)]
            if self._tail_size:
                self._tail += piece[-self._tail_size :]
                del self._tail[: -self._tail_size]
            if self._left == 0:
                self._in_payload = False
                if not self._continued:
                    done.append(self._finish())
        return done

    def _finish(self) -> _Packet:
        return _Packet(self._seq, self._length, bytes(self._head), bytes(self._tail))


def _lenenc(data: bytes, at: int) -> tuple[int, int]:
    """A length-encoded integer at `at`: its value and the offset after it."""
    first = data[at]
    if first < 0xFB:
        return first, at + 1
    size = {0xFC: 2, 0xFD: 3, 0xFE: 8}[first]
    return int.from_bytes(data[at + 1 : at + 1 + size], "little"), at + 1 + size


def _ok_status(head: bytes) -> int:
    """The status flags of an OK packet (header 0x00, or 0xFE when it ends a result set)."""
    _, at = _lenenc(head, 1)  # affected rows
    _, at = _lenenc(head, at)  # last insert id
    return int.from_bytes(head[at : at + 2], "little")


class _ReplyEnd:
    """Follows the server's reply to one COM_QUERY, packet by packet, to tell when its last result has
    come: an OK or end-of-rows without SERVER_MORE_RESULTS_EXISTS, or an ERR (which ends a multi-statement
    query). A result set is a column count, column definitions (skipped with MariaDB's metadata cache),
    an EOF (not with CLIENT_DEPRECATE_EOF), rows, then an EOF, or an OK with header 0xFE."""

    def __init__(self, deprecate_eof: bool, cache_metadata: bool) -> None:
        self.deprecate_eof = deprecate_eof
        self.cache_metadata = cache_metadata
        self.state = "result"
        self.columns = 0

    def packet(self, p: _Packet) -> bool:
        first = p.head[0] if p.head else None
        if self.state == "result":
            if first == 0x00:
                return not _ok_status(p.head) & SERVER_MORE_RESULTS_EXISTS
            if first == 0xFF:
                return int.from_bytes(p.head[1:3], "little") != PROGRESS_ERROR_CODE
            if first == 0xFB:  # LOCAL INFILE request: the client uploads, then the server answers with an OK
                return False
            self.columns, at = _lenenc(p.head, 0)
            with_metadata = not self.cache_metadata or p.head[at : at + 1] != b"\x00"
            if not with_metadata:
                self.state = "rows"
            elif self.columns:
                self.state = "columns"
            else:
                self.state = "rows" if self.deprecate_eof else "columns_eof"
            return False
        if self.state == "columns":
            self.columns -= 1
            if not self.columns:
                self.state = "rows" if self.deprecate_eof else "columns_eof"
            return False
        if self.state == "columns_eof":
            self.state = "rows"
            return False
        # rows: a text row starting with 0xFE holds a value of 2^24 bytes or more, so its packet is full size
        if first == 0xFE and p.length < MAX_PAYLOAD and (p.length < 9 or self.deprecate_eof):
            status = _ok_status(p.head) if self.deprecate_eof else int.from_bytes(p.head[3:5], "little")
            self.state = "result"
            return not status & SERVER_MORE_RESULTS_EXISTS
        return first == 0xFF


@dataclass
class _Fault:
    kind: str  # "after_commit" or "query"
    times: int
    match: str | re.Pattern[str] | None

    def matches(self, text: str) -> bool:
        if self.match is None:
            return True
        if isinstance(self.match, re.Pattern):
            return self.match.search(text) is not None
        return self.match in text


class _Connection:
    """One client connection and its upstream: the two pumps, and what the server's side must do with
    the reply now coming (pass it on, swallow it then reset, or discard it)."""

    def __init__(self, proxy: SqlProxy, client: socket.socket) -> None:
        self.proxy = proxy
        self.client = client
        self.upstream: socket.socket | None = None
        self.lock = threading.Lock()
        self.mode = "pass"  # "swallow": read the reply to its end, then reset; "doomed": reset is under way
        self.reply: _ReplyEnd | None = None
        self.killed = False
        self.opaque = False
        self.deprecate_eof = False
        self.cache_metadata = False
        self._running = 0

    # -- life -------------------------------------------------------------------------------------------

    def serve(self) -> None:
        """The client-to-server pump's thread: connect upstream, start the other pump, then pump."""
        try:
            upstream = socket.create_connection(self.proxy.upstream, timeout=self.proxy.connect_timeout)
            upstream.settimeout(None)
            upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            self._reset_client_now()
            self.proxy._forget(self)
            return
        with self.lock:
            self.upstream = upstream
            if self.killed:  # stop() came while connecting
                self._close()
                self.proxy._forget(self)
                return
            self._running = 2
        threading.Thread(target=self._server_to_client, name=f"{self.proxy.name}-s2c", daemon=True).start()
        self._client_to_server()

    def kill(self) -> None:
        """End both sides now, the client's with an RST and nothing before it: SO_LINGER 0, and SHUT_RD, which
        wakes a pump blocked in recv without sending anything; the last pump out closes, which resets."""
        with self.lock:
            if self.killed:
                return
            self.killed = True
            upstream = self.upstream
        try:
            self.client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.client.shutdown(socket.SHUT_RD)
        except OSError:
            pass
        if upstream is not None:
            try:
                upstream.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _reset_client_now(self) -> None:
        try:
            self.client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.client.close()

    def _pump_done(self) -> None:
        # Sockets are closed by the last pump out only: closing one that the other pump is blocked on
        # would neither wake it nor (on Linux) release the socket.
        with self.lock:
            self._running -= 1
            last = self._running == 0
            if last:
                self._close()
        if last:
            self.proxy._forget(self)

    def _close(self) -> None:
        self.client.close()
        if self.upstream is not None:
            self.upstream.close()

    # -- client to server -------------------------------------------------------------------------------

    def _client_to_server(self) -> None:
        assert self.upstream is not None
        buffer = bytearray(CHUNK)
        framer = _Framer(QUERY_HEAD_LIMIT, QUERY_TAIL)
        first = True
        try:
            while True:
                n = self.client.recv_into(buffer)
                if n == 0:
                    break
                data = memoryview(buffer)[:n]
                drop = None
                if not self.opaque:
                    for packet in framer.feed(data):
                        if first:
                            first = False
                            self._handshake(packet)
                            if self.opaque:
                                break
                        elif packet.seq == 0 and packet.head[:1] == bytes([COM_QUERY]):
                            # Decided before the query's last bytes go out, so that the reply can't
                            # overtake the decision.
                            drop = drop or self._on_query(packet)
                self.upstream.sendall(data)
                if drop == "query":
                    self.kill()
                    break
        except OSError:
            pass
        finally:
            # The client is done sending (COM_QUIT, then FIN): tell the server the same way.
            self._half_close(self.upstream)

    def _half_close(self, sock: socket.socket) -> None:
        """One direction ended: pass its end on (FIN) unless the proxy killed the pair; then, once both
        have ended, close the connection."""
        with self.lock:
            killed = self.killed
        if not killed:
            try:
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        self._pump_done()

    def _handshake(self, packet: _Packet) -> None:
        """The client's first packet: its handshake response, or the start of a TLS request. Its
        capability flags say how results will be framed, or that the stream can't be read."""
        head = packet.head
        capabilities = int.from_bytes(head[:4], "little") if len(head) >= 4 else 0
        self.opaque = bool(capabilities & (CLIENT_SSL | CLIENT_COMPRESS))
        self.deprecate_eof = bool(capabilities & CLIENT_DEPRECATE_EOF)
        extended = int.from_bytes(head[28:32], "little") if len(head) >= 32 else 0
        self.cache_metadata = bool(extended & MARIADB_CLIENT_CACHE_METADATA)

    def _on_query(self, packet: _Packet) -> str | None:
        head = packet.head[1:]
        truncated = packet.length > len(packet.head)
        text = head.decode("utf-8", "replace")
        if truncated:
            text += "\n" + packet.tail.decode("utf-8", "replace")
        is_commit = ends_with_commit(packet.tail, whole=False) if truncated else ends_with_commit(head)
        fault = self.proxy._take(text, is_commit)
        self.proxy._count("queries")
        if fault is None:
            return None
        with self.lock:
            if fault == "after_commit":
                self.mode = "swallow"
                self.reply = _ReplyEnd(self.deprecate_eof, self.cache_metadata)
            else:
                self.mode = "doomed"
        if fault == "query":
            self.proxy._count("queries_dropped")
        return fault

    # -- server to client -------------------------------------------------------------------------------

    def _server_to_client(self) -> None:
        assert self.upstream is not None
        buffer = bytearray(CHUNK)
        framer = _Framer(REPLY_HEAD)
        try:
            while True:
                n = self.upstream.recv_into(buffer)
                if n == 0:
                    break
                data = memoryview(buffer)[:n]
                with self.lock:
                    mode, reply = self.mode, self.reply
                if mode == "pass":
                    self.client.sendall(data)
                    continue
                if mode == "doomed" or reply is None:
                    continue
                # Swallowing: a query is answered before the next one is sent, so these bytes are all
                # the reply's; whatever follows its end in this read is nothing the client asked for.
                try:
                    ended = any(reply.packet(p) for p in framer.feed(data))
                except (IndexError, KeyError):  # a packet this reader can't follow: end here rather than hang
                    ended = True
                if ended:
                    self.proxy._count("commits_dropped")
                    self.kill()
                    break
        except OSError:
            pass
        finally:
            self._half_close(self.client)  # the server hung up: so does the proxy, in the same polite way


class SqlProxy:
    """`SqlProxy(host, port).start()`, then connect clients to 127.0.0.1:`proxy.port`; arm faults with
    `drop_after_commit` and `drop_next_query`; read `commits_dropped`, `queries_dropped`, `queries` (COM_QUERY
    packets seen) and `connections` (accepted); `stop()` at the end, or use it as a context manager."""

    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        *,
        max_connections: int = 64,
        connect_timeout: float = 5.0,
    ) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.max_connections = max_connections
        self.connect_timeout = connect_timeout
        self.host = "127.0.0.1"
        self.port = 0
        self.name = "sqlproxy"
        self.commits_dropped = 0
        self.queries_dropped = 0
        self.queries = 0
        self.connections = 0
        self._faults: list[_Fault] = []
        self._live: set[_Connection] = set()
        self._lock = threading.Lock()
        self._stopping = False
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None

    def start(self, port: int = 0) -> SqlProxy:
        """Listen on a free loopback port, or on `port`: where a stopped proxy listened, for a ledger
        that comes back where it was."""
        for _ in range(20):  # free_port() only says the port was free a moment ago
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            candidate = port or free_port()
            try:
                listener.bind((self.host, candidate))
            except OSError:
                listener.close()
                if port:
                    time.sleep(0.1)
                continue
            listener.listen(64)
            self._listener, self.port = listener, candidate
            break
        else:
            raise RuntimeError("sqlproxy: no free loopback port")
        self.name = f"sqlproxy-{self.port}"
        self._acceptor = threading.Thread(target=self._accept, name=f"{self.name}-accept", daemon=True)
        self._acceptor.start()
        return self

    def __enter__(self) -> SqlProxy:
        return self if self._listener else self.start()

    def __exit__(self, *_exc) -> None:
        self.stop()

    # -- faults -----------------------------------------------------------------------------------------

    def drop_after_commit(self, times: int = 1, match: str | re.Pattern[str] | None = None) -> None:
        """Let the next `times` queries ending with COMMIT (and containing `match`) run, swallow their
        reply and reset the client's connection. Faults armed together are tried in the order armed."""
        self._arm(_Fault("after_commit", times, match))

    def drop_next_query(self, match: str | re.Pattern[str], times: int = 1) -> None:
        """Forward the next `times` queries containing `match`, then reset the client's connection at once."""
        self._arm(_Fault("query", times, match))

    def disarm(self) -> None:
        with self._lock:
            self._faults.clear()

    def armed(self) -> int:
        """How many faults are still to fire."""
        with self._lock:
            return sum(f.times for f in self._faults)

    def _arm(self, fault: _Fault) -> None:
        if fault.times < 1:
            raise ValueError("times must be at least 1")
        with self._lock:
            self._faults.append(fault)

    def _take(self, text: str, is_commit: bool) -> str | None:
        """The fault this query fires, if any, counted off under the lock so that two connections can't
        both take the last one."""
        with self._lock:
            for fault in self._faults:
                if (fault.kind == "query" or is_commit) and fault.matches(text):
                    fault.times -= 1
                    if not fault.times:
                        self._faults.remove(fault)
                    return fault.kind
        return None

    def _count(self, counter: str) -> None:
        with self._lock:
            setattr(self, counter, getattr(self, counter) + 1)

    # -- connections ------------------------------------------------------------------------------------

    def _accept(self) -> None:
        assert self._listener is not None
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # stop() shut the listener down
                return
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            connection = _Connection(self, client)
            with self._lock:
                self.connections += 1
                refused = self._stopping or len(self._live) >= self.max_connections
                if not refused:
                    self._live.add(connection)
                    thread = threading.Thread(target=connection.serve, name=f"{self.name}-c2s", daemon=True)
            if refused:
                connection._reset_client_now()
                continue
            thread.start()

    def _forget(self, connection: _Connection) -> None:
        with self._lock:
            self._live.discard(connection)

    def threads(self) -> list[threading.Thread]:
        """This proxy's threads still alive."""
        return [t for t in threading.enumerate() if t.name.startswith(f"{self.name}-")]

    def stop(self, timeout: float = 5.0) -> None:
        """Close the listener and every connection (the server's sides closed, the clients' reset), and
        join every thread; raise if one is still alive after `timeout` seconds."""
        with self._lock:
            self._stopping = True
            live = list(self._live)
            self._faults.clear()
        if self._listener is not None:
            try:
                self._listener.shutdown(socket.SHUT_RDWR)  # wakes accept() on Linux; close() alone doesn't
            except OSError:
                pass
            self._listener.close()
        for connection in live:
            connection.kill()
        deadline = time.monotonic() + timeout
        for thread in self.threads():
            thread.join(max(0.0, deadline - time.monotonic()))
        left = self.threads()
        if left:
            raise RuntimeError(f"sqlproxy: threads still alive after stop(): {[t.name for t in left]}")
