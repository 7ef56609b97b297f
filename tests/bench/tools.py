"""The contenders and how each one is run: every peer from the venv's bin (PyPI packages), pointed at
127.0.0.1 only, with a private HOME and config so that no user or machine config (~/.aws, rclone.conf,
proxies) is read, and nothing that could reach outside is left on: instance metadata lookups are off,
and none of the peers has an update check or telemetry by default (s5cmd, rclone and awscli v1 were
checked; `--audit` traces every connect() to prove it)."""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
from pathlib import Path

BIN = Path(sys.executable).parent
NEW_BUCKET_ROLE = "worker"  # every contender uses the worker's least-privilege S3 identity

# rclone needs these to copy with credentials that cannot read the destination (shared notes); its
# default of 4 transfers and 8 checkers is raised to the concurrency the others use, so that it is
# not measured handicapped.
RCLONE_FLAGS = [
    "--no-check-dest",
    "--s3-no-check-bucket",
    "--s3-no-head",
    "--s3-no-head-object",
    "--transfers",
    "32",
    "--checkers",
    "32",
]


@dataclasses.dataclass(frozen=True)
class Tool:
    name: str  # as printed in the table
    kind: str  # s5cmd | rclone | aws | movers3
    args: tuple[str, ...] = ()
    engine: str = ""  # movers3 only
    workers: int = 0
    threads: int = 0
    extra_env: tuple[tuple[str, str], ...] = ()
    short: str = ""  # a column heading of at most 11 characters (the request counts)

    @property
    def column(self) -> str:
        return (self.short or self.name)[:11]


def binary(name: str) -> str:
    path = BIN / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    if not found:
        raise RuntimeError(f"{name} not found: run `make bench` (it installs the [bench] extra)")
    return found


def peers() -> list[Tool]:
    return [
        Tool("s5cmd --metadata-directive COPY", "s5cmd", ("--metadata-directive", "COPY"), short="s5cmd COPY"),
        Tool("s5cmd (defaults)", "s5cmd", short="s5cmd dflt"),
        Tool("rclone copy (server-side)", "rclone", tuple(RCLONE_FLAGS), short="rclone"),
        Tool("aws s3 cp --recursive (v1)", "aws", short="aws s3 cp"),
    ]


def clean_env(home: Path) -> dict[str, str]:
    """Only what a process needs: no proxy variables (they would route loopback traffic elsewhere),
    no AWS_* or RCLONE_* from the caller, a private HOME and temp dir."""
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "TERM")}
    keep.update(
        {
            "HOME": str(home),
            "TMPDIR": str(home),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_CACHE_HOME": str(home / ".cache"),
            "AWS_EC2_METADATA_DISABLED": "true",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
    )
    keep["PATH"] = f"{BIN}:{keep.get('PATH', '/usr/bin:/bin')}"
    return keep


def peer_command(
    tool: Tool, *, url: str, key: str, secret: str, home: Path, src: str, dst: str, old_bucket: str, new_bucket: str
) -> tuple[list[str], dict[str, str]]:
    env = clean_env(home)
    env.update(
        {
            "AWS_ACCESS_KEY_ID": key,
            "AWS_SECRET_ACCESS_KEY": secret,
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
    )
    if tool.kind == "s5cmd":
        # HOME is private, so s5cmd finds no ~/.aws files and reads only the environment's keys.
        argv = [
            binary("s5cmd"),
            "--endpoint-url",
            url,
            "--log",
            "error",
            "cp",
            *tool.args,
            f"s3://{old_bucket}/{src}/*",
            f"s3://{new_bucket}/{dst}/",
        ]
    elif tool.kind == "rclone":
        env.update(
            {
                "RCLONE_CONFIG": str(home / "empty"),
                "RCLONE_CONFIG_BENCH_TYPE": "s3",
                "RCLONE_CONFIG_BENCH_PROVIDER": "Other",
                "RCLONE_CONFIG_BENCH_ENV_AUTH": "false",
                "RCLONE_CONFIG_BENCH_ACCESS_KEY_ID": key,
                "RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY": secret,
                "RCLONE_CONFIG_BENCH_ENDPOINT": url,
                "RCLONE_CONFIG_BENCH_REGION": "us-east-1",
                "RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE": "true",
            }
        )
        argv = [
            binary("rclone"),
            "copy",
            f"bench:{old_bucket}/{src}",
            f"bench:{new_bucket}/{dst}",
            *tool.args,
            "--stats",
            "0",
            "--log-level",
            "ERROR",
        ]
    elif tool.kind == "aws":
        config = home / "aws-config"
        config.write_text("[default]\nregion = us-east-1\ns3 =\n  addressing_style = path\n")
        env.update(
            {"AWS_CONFIG_FILE": str(config), "AWS_SHARED_CREDENTIALS_FILE": str(home / "empty"), "AWS_PAGER": ""}
        )
        argv = [
            binary("aws"),
            "--endpoint-url",
            url,
            "s3",
            "cp",
            f"s3://{old_bucket}/{src}/",
            f"s3://{new_bucket}/{dst}/",
            "--recursive",
            "--only-show-errors",
            "--no-progress",
        ]
    else:
        raise ValueError(tool.kind)
    return argv, env
