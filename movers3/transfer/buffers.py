"""Memory for streamed copies: a process-wide allowance of part buffers (`Budget`), the in-order MD5
of a whole object whose parts arrive out of order, and the allocator setting that gives freed
buffers back to the OS. Whatever the object's size, a worker holds at most STREAM_MEMORY of bytes."""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import threading
from collections.abc import Callable

import botocore.exceptions

from movers3.exceptions import CopyError, Interrupted
from movers3.transfer import s3
from movers3.values import MIB

# How often a copy thread waiting for buffer space looks at the stop flag.
WAIT_SLICE_SECONDS = 0.5
# Small slices: urllib3 reads each into a temporary bytes object before copying it over.
READ_SLICE = MIB

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter


def keep_buffers_out_of_the_heap() -> None:
    """Make every allocation of 1 MiB or more its own mapping, returned to the OS when freed.

    glibc raises its mmap threshold after the first big free, and from then on serves part buffers
    from per-thread heaps whose holes stay resident: streaming 1 GiB with a 64 MiB budget peaked
    115 MiB above a tiny copy that way, 82 MiB with the threshold fixed. No-op where libc has no
    mallopt (musl)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(M_MMAP_THRESHOLD, MIB)
    except (OSError, AttributeError):
        pass


class Budget:
    """Bytes of part buffers a worker process may hold at once. Parts of one object take their share
    in part order, so the part the in-order hash waits for never waits behind its successors."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._used = 0
        self._cond = threading.Condition()

    def acquire(self, amount: int, stopping: Callable[[], bool]) -> None:
        amount = min(amount, self.limit)
        with self._cond:
            while self._used + amount > self.limit:
                if stopping():
                    raise Interrupted("stopped while waiting for buffer space")
                self._cond.wait(WAIT_SLICE_SECONDS)
            self._used += amount

    def release(self, amount: int) -> None:
        with self._cond:
            self._used -= min(amount, self.limit)
            self._cond.notify_all()

    @property
    def used(self) -> int:
        return self._used


class OrderedMD5:
    """The MD5 of a whole object whose parts arrive out of order: a part waits (holding its budget)
    until the parts before it are hashed."""

    def __init__(self, budget: Budget) -> None:
        self._md5 = hashlib.md5()  # noqa: S324 (comparison with S3's ETag, not security)
        self._next = 1
        self._waiting: dict[int, bytes] = {}
        self._budget = budget
        self._lock = threading.Lock()

    def feed(self, number: int, data: bytes) -> None:
        with self._lock:
            self._waiting[number] = data
            while self._next in self._waiting:
                chunk = self._waiting.pop(self._next)
                self._md5.update(chunk)
                self._budget.release(len(chunk))
                self._next += 1

    def hexdigest(self) -> str:
        return self._md5.hexdigest()

    def close(self) -> None:
        """Give back the buffers of parts that will never be hashed (the upload failed)."""
        with self._lock:
            for chunk in self._waiting.values():
                self._budget.release(len(chunk))
            self._waiting.clear()


def read_exact(body, size: int, what: str) -> bytearray:
    """Read exactly `size` bytes into one buffer (no intermediate copies); a short or long body is a
    transient failure of the request."""
    buffer = bytearray(size)
    view = memoryview(buffer)
    filled = 0
    try:
        while filled < size:
            count = body.readinto(view[filled : filled + READ_SLICE])
            if not count:
                break
            filled += count
        extra = body.read(1) if filled == size else b""
    except botocore.exceptions.BotoCoreError as exc:
        raise s3.classify(exc, what) from exc
    except OSError as exc:  # a connection reset mid-body
        raise CopyError(f"{what}: {type(exc).__name__}: {exc}", code=type(exc).__name__, retryable=True) from exc
    finally:
        view.release()
        body.close()
    if filled != size or extra:
        raise CopyError(
            f"{what}: expected {size} bytes, got {filled}{'+' if extra else ''}", code="IncompleteBody", retryable=True
        )
    return buffer
