"""What each contender asks of the S3 server: one untimed run per contender through a forwarding proxy
on loopback (tests/support/faultproxy.py with no fault), every request sorted into its S3 operation
(from the method, the query string and the headers), plus the headers that make the server work
harder and the TCP connections the contender opened. Printed per object, contenders side by side."""

from __future__ import annotations

import collections
import dataclasses
from urllib.parse import parse_qs, unquote, urlsplit

from tests.bench import tools
from tests.bench.harness import Bench, Workload
from tests.support.faultproxy import FaultProxy

# Headers whose presence (or value) costs the server something beyond the operation itself.
VALUED = ("x-amz-metadata-directive", "x-amz-tagging-directive", "x-amz-sdk-checksum-algorithm", "expect")
PRESENT = (
    "x-amz-copy-source-if-match",
    "x-amz-copy-source-range",
    "content-md5",
    "x-amz-acl",
    "x-amz-tagging",
    "x-amz-storage-class",
    "range",
)


def operation(method: str, target: str, headers: dict[str, str]) -> str:
    """The S3 operation of a path-style request (every contender here addresses 127.0.0.1, so no
    virtual-hosted bucket names)."""
    parts = urlsplit(target)
    query = parse_qs(parts.query, keep_blank_values=True)
    bucket, _, key = unquote(parts.path).lstrip("/").partition("/")
    copy = "x-amz-copy-source" in headers
    if not bucket:
        return "ListBuckets" if method == "GET" else f"{method} /"
    if not key:
        by_query = {
            "GET": (
                ("list-type", "ListObjectsV2"),
                ("location", "GetBucketLocation"),
                ("uploads", "ListMultipartUploads"),
                ("versions", "ListObjectVersions"),
                ("versioning", "GetBucketVersioning"),
            ),
            "POST": (("delete", "DeleteObjects"),),
            "PUT": (),
        }.get(method, ())
        for name, op in by_query:
            if name in query:
                return op
        return {"GET": "ListObjects (v1)", "HEAD": "HeadBucket", "PUT": "CreateBucket", "DELETE": "DeleteBucket"}.get(
            method, f"{method} bucket"
        )
    if method == "GET":
        for name, op in (
            ("tagging", "GetObjectTagging"),
            ("acl", "GetObjectAcl"),
            ("uploadId", "ListParts"),
            ("attributes", "GetObjectAttributes"),
        ):
            if name in query:
                return op
        return "GetObject"
    if method == "HEAD":
        return "HeadObject"
    if method == "PUT":
        if "tagging" in query:
            return "PutObjectTagging"
        if "acl" in query:
            return "PutObjectAcl"
        if "partNumber" in query:
            return "UploadPartCopy" if copy else "UploadPart"
        return "CopyObject" if copy else "PutObject"
    if method == "POST":
        if "uploads" in query:
            return "CreateMultipartUpload"
        if "uploadId" in query:
            return "CompleteMultipartUpload"
    if method == "DELETE":
        if "uploadId" in query:
            return "AbortMultipartUpload"
        return "DeleteObjectTagging" if "tagging" in query else "DeleteObject"
    return f"{method} object?{'&'.join(sorted(query))}"


def costly_headers(headers: dict[str, str]) -> list[str]:
    found = [f"{name}: {headers[name]}" for name in VALUED if name in headers]
    found += [name for name in PRESENT if name in headers]
    found += sorted(name for name in headers if name.startswith("x-amz-checksum-"))
    payload = headers.get("x-amz-content-sha256", "")
    if payload and payload != "UNSIGNED-PAYLOAD" and not payload.startswith("STREAMING-"):
        # A signed payload hash: the server hashes the body to check it (free for an empty body).
        if int(headers.get("content-length") or 0) > 0:
            found.append("x-amz-content-sha256 of a body")
    elif payload:
        found.append(f"x-amz-content-sha256: {payload}")
    return found


@dataclasses.dataclass
class Counted:
    tool: tools.Tool
    objects: int
    present: int
    operations: collections.Counter[str]
    headers: collections.Counter[str]
    connections: int
    note: str


def count(bench: Bench, tool: tools.Tool, workload: Workload) -> Counted:
    proxy = FaultProxy(bench.s3.url).start()
    try:
        result = bench.run(tool, workload, 0, endpoint=proxy.url)
    finally:
        proxy.stop()
    operations: collections.Counter[str] = collections.Counter()
    headers: collections.Counter[str] = collections.Counter()
    for method, target, sent in proxy.seen:
        operations[operation(method, target, sent)] += 1
        headers.update(costly_headers(sent))
    return Counted(tool, workload.count, result.present, operations, headers, proxy.connections, result.note)


def table(workload: Workload, counted: list[Counted]) -> list[str]:
    def row(label: str, values: list[str]) -> str:
        return f"{label:<44}" + "".join(f" {v:>11}" for v in values)

    def per_object(counter_of, key: str) -> list[str]:
        # Listing pages are a thousandth of a request per object: more digits below 0.01.
        values = [counter_of(c)[key] / c.objects for c in counted]
        return [("-" if not v else f"{v:.2f}" if v >= 0.01 else f"{v:.4f}") for v in values]

    lines = [
        f"S3 requests per object, {workload.label} (one untimed run per contender through a counting "
        f"proxy on loopback):",
        row("request (per object)", [c.tool.column for c in counted]),
    ]
    ops = sorted(
        {op for c in counted for op in c.operations}, key=lambda op: (-max(c.operations[op] for c in counted), op)
    )
    lines += [row(op, per_object(lambda c: c.operations, op)) for op in ops]
    lines.append(row("all requests", [f"{sum(c.operations.values()) / c.objects:.2f}" for c in counted]))
    lines.append(row("TCP connections opened (in all)", [str(c.connections) for c in counted]))
    lines.append(row("objects present after the run", [f"{c.present}/{c.objects}" for c in counted]))
    names = sorted({h for c in counted for h in c.headers})
    lines += [row(f"with {h}"[:44], per_object(lambda c: c.headers, h)) for h in names]
    lines.append("  columns: " + "; ".join(f"{c.tool.column} = {c.tool.name}" for c in counted))
    lines += [f"  ! {c.tool.name}: {c.note}" for c in counted if c.note]
    return lines
