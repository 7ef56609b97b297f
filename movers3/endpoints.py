"""Where an S3 endpoint URL leads: the service it names, however it is written (scheme and host in any
case, default port or not, trailing slash or not, and on AWS any of the names of one region's S3),
so that the same physical bucket written two ways is never taken for two."""

from __future__ import annotations

import dataclasses
import re
from urllib.parse import urlsplit

from movers3 import values
from movers3.exceptions import ConfigError

# AWS's S3 host names (https://docs.aws.amazon.com/general/latest/gr/s3.html): one service per region,
# written in several ways, with a bucket's name possibly in front (virtual-hosted style).
_REGION = r"[a-z]{2}(?:-[a-z]+)+-\d+"
_AWS_S3_HOST = re.compile(
    r"(?:s3|s3-external-1)\.amazonaws\.com"  # the global endpoint: us-east-1
    rf"|s3(?:-fips)?(?:\.dualstack)?\.(?P<region>{_REGION})\.amazonaws\.com(?P<cn>\.cn)?"
    rf"|s3-(?P<legacy>{_REGION})\.amazonaws\.com"
    r"|(?P<accelerate>s3-accelerate)(?:\.dualstack)?\.amazonaws\.com"
)
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclasses.dataclass(frozen=True)
class Service:
    """Where an endpoint URL leads, however it is written: scheme and host in any case, default port
    or not, trailing slash or not, and on AWS any of the names of one region's S3."""

    # Equal for the same service: ("aws", partition, region), or else (scheme, host, port, path).
    identity: tuple[str | int, ...]
    # Whose bucket names these are. AWS's are unique across a partition, so a bucket is one bucket
    # through any region's endpoint; elsewhere two services are two namespaces.
    namespace: tuple[str | int, ...]
    bucket: str | None  # a bucket the URL itself names on AWS (in its host, or its path's first segment)
    bare_url: str  # the URL without that bucket

    @classmethod
    def aws(cls, region: str | None) -> Service:
        """AWS's own endpoint for a region (None: the one the profile names, the same on both sides)."""
        if not region:
            return cls(("aws", "aws", ""), ("aws", "aws"), None, "")
        return cls.of(f"https://s3.{region}.amazonaws.com" + (".cn" if region.startswith("cn-") else ""))

    @classmethod
    def of(cls, url: str) -> Service:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        host = (parts.hostname or "").rstrip(".")  # hostname is lowercased
        port = parts.port or _DEFAULT_PORTS.get(scheme, 0)
        path = parts.path.rstrip("/")
        labels = host.split(".")
        for i in range(len(labels)):  # the longest AWS host name at the end: what is left in front is a bucket
            aws = _AWS_S3_HOST.fullmatch(".".join(labels[i:]))
            if aws:
                break
        else:
            identity = (scheme, host, port, path)
            return cls(identity, identity, None, url)
        region = aws["region"] or aws["legacy"] or ("accelerate" if aws["accelerate"] else "us-east-1")
        partition = "aws-cn" if aws["cn"] else "aws-us-gov" if region.startswith("us-gov-") else "aws"
        in_host = ".".join(labels[:i])
        in_path = path.lstrip("/").split("/")[0]
        netloc = ".".join(labels[i:]) + (f":{parts.port}" if parts.port else "")
        return cls(("aws", partition, region), ("aws", partition), in_host or in_path or None, f"{scheme}://{netloc}")


def _service_url(name: str, text: str) -> str | None:
    """An endpoint is a service; the buckets are OLD_BUCKET and NEW_BUCKET, which boto3 adds to it.
    None (the text empty, or AWS_KEYWORD): AWS's own endpoint for the region, which boto3 knows."""
    if text.strip().lower() in ("", AWS_KEYWORD):
        return None
    url = values.endpoint_url(name, text)
    service = Service.of(url)
    if service.bucket:
        buckets = {"OLD": "OLD_BUCKET", "NEW": "NEW_BUCKET"}.get(name.split("_")[0], "OLD_BUCKET and NEW_BUCKET")
        raise ConfigError(
            f"{name}: names the bucket {service.bucket!r} (got {url!r}): give the service URL "
            f"{service.bare_url} here and the bucket in {buckets}"
        )
    return url


AWS_KEYWORD = "aws"
SERVICE_URL = dataclasses.replace(values.URL, read=_service_url, accepts="http:// or https:// URL, or aws")
