"""`load-samples`: make the buckets if they are missing and put N sample objects under OLD_PREFIX
with counter names (1.png, 2.png, ...), each with a Content-Type, Cache-Control and user metadata so
that a migration shows they survive."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor

import botocore.exceptions
import structlog
from botocore.client import BaseClient

from movers3 import routes
from movers3.settings import Settings
from movers3.transfer import s3

log = structlog.get_logger(__name__)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
THREADS = 16


def sample_body(index: int) -> bytes:
    """Deterministic bytes of 1-8 KiB, different for every index."""
    size = 1024 + (index * 2654435761) % (7 * 1024)
    block = hashlib.sha256(str(index).encode()).digest()
    return (PNG_SIGNATURE + block * (size // len(block) + 1))[:size]


def sample_key(prefix: str, index: int) -> str:
    return f"{routes.folder(prefix)}{index}.png"


def ensure_bucket(client: BaseClient, bucket: str, region: str) -> bool:
    """Create the bucket if it does not exist; True when it was created."""
    try:
        client.head_bucket(Bucket=bucket)
        return False
    except botocore.exceptions.ClientError as exc:
        if s3.status_code(exc) != 404:
            raise s3.storage_error(exc, f"HeadBucket {bucket!r}") from exc
    except botocore.exceptions.BotoCoreError as exc:
        raise s3.storage_error(exc, f"HeadBucket {bucket!r}") from exc
    params: dict = {"Bucket": bucket}
    if region != "us-east-1":
        params["CreateBucketConfiguration"] = {"LocationConstraint": region}
    try:
        client.create_bucket(**params)
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
        if s3.error_code(exc) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise s3.storage_error(exc, f"CreateBucket {bucket!r}") from exc
    log.info("bucket_created", bucket=bucket)
    return True


def load_samples(client: BaseClient, dest_client: BaseClient, settings: Settings, count: int) -> int:
    ensure_bucket(client, settings.old_bucket, client.meta.region_name)
    ensure_bucket(dest_client, settings.new_bucket, dest_client.meta.region_name)

    def put(index: int) -> None:
        try:
            client.put_object(
                Bucket=settings.old_bucket,
                Key=sample_key(settings.old_prefix, index),
                Body=sample_body(index),
                ContentType="image/png",
                CacheControl="max-age=86400",
                Metadata={"sample-index": str(index), "origin": "movers3-samples"},
            )
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            raise s3.storage_error(exc, f"PutObject sample {index}") from exc

    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(put, range(1, count + 1)))
    log.info("samples_loaded", bucket=settings.old_bucket, prefix=settings.old_prefix, count=count)
    return count
