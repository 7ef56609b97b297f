"""compose/docker-compose.yml's one-shot `init` run as the file writes it, without a Docker engine:
its entrypoint and command, interpolated as Compose does, run by /bin/sh with the environment the
container would have (the image's ENV and the service's `environment`), the service names `mariadb`
and `s3proxy` leading to the test's MariaDB and SeaweedFS, and `movers3` on PATH as the installed
console script. The workers wait for `service_completed_successfully`: the script's exit code is the
one they see."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from tests.support import dockerfile
from tests.support.compose import interpolate
from tests.support.helpers import Route, run_cli
from tests.support.services import DATABASE, DB_ROLES

pytestmark = pytest.mark.acceptance

COMPOSE_FILE = Path(__file__).resolve().parents[2] / "compose" / "docker-compose.yml"
CONSOLE_SCRIPT = Path(sys.executable).parent / "movers3"
# `init` runs as the database's own user in compose (the mariadb image's MARIADB_USER, which owns the
# database): the test account that may create the schema and write rows.
DB_ACCOUNT = "m3_init"


def compose_init() -> tuple[list[str], dict[str, str], dict]:
    model = yaml.safe_load(COMPOSE_FILE.read_text())
    init = model["services"]["init"]
    return [*init["entrypoint"], *init["command"]], dict(init["environment"]), model


def image_env() -> dict[str, str]:
    """The ENV of the image's last stage, PATH aside (the console script is put on PATH below)."""
    found: dict[str, str] = {}
    for args in dockerfile.stages()[-1].all("ENV"):
        found.update(dockerfile.env_pairs(args))
    found.pop("PATH", None)
    return found


def run_init(route: Route, host: dict[str, str]) -> subprocess.CompletedProcess:
    """The `init` container's command under `docker compose up`, started from a shell holding `host`."""
    argv, environment, _ = compose_init()
    # Compose's DNS gives each service's name its container's address: here, the test's services.
    services = {
        "mariadb:3306": f"127.0.0.1:{route.stack.db.port}",
        "s3proxy:8080": urlsplit(route.stack.s3.url).netloc,
    }
    container = {**image_env()}
    used = set()
    for name, value in environment.items():
        value = interpolate(str(value), host)
        for service, address in services.items():
            if service in value:
                used.add(service)
                value = value.replace(service, address)
        container[name] = value
    assert used == set(services), f"the compose file no longer reaches {set(services) - used} by name"
    container["PATH"] = f"{CONSOLE_SCRIPT.parent}:/usr/bin:/bin"
    if "PYTHONPATH" in os.environ:  # a checkout run ahead of the installed package, as for run_cli
        container["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return subprocess.run(
        [interpolate(arg, host) for arg in argv],
        env=container,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )


def compose_host(route: Route, **changes: str) -> dict[str, str]:
    """The shell `docker compose up` runs in: the variables the compose file reads, set to the test's
    buckets, folders and accounts; everything else (LOAD_FILES, SAMPLE_COUNT, ...) at its default."""
    identity, credential = route.stack.s3.credentials("admin")
    return {
        "S3_IDENTITY": identity,
        "S3_CREDENTIAL": credential,
        "OLD_BUCKET": route.old_bucket,
        "OLD_PREFIX": route.old_prefix,
        "NEW_BUCKET": route.new_bucket,
        "NEW_PREFIX": route.new_prefix,
        "DB_USER": DB_ACCOUNT,
        "DB_PASSWORD": DB_ROLES[DB_ACCOUNT][0],
        "DB_NAME": DATABASE,
        **changes,
    }


def events(text: str) -> list[dict]:
    """The JSON log events of the script's output (the commands' summary lines are plain text)."""
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_the_workers_wait_for_init_to_succeed():
    _, _, model = compose_init()
    assert model["services"]["worker"]["depends_on"]["init"] == {"condition": "service_completed_successfully"}
    assert (
        model["services"]["init"]["entrypoint"] == ["/bin/sh", "-c"] and len(model["services"]["init"]["command"]) == 1
    )
    assert CONSOLE_SCRIPT.is_file(), CONSOLE_SCRIPT


def test_compose_init_succeeds_when_the_seed_skips_a_key_and_says_which(route, tmp_path):
    # A destination folder longer than the source's (`route` empties the ledger): one key fits the
    # source (1024 bytes) and not the destination, so a seed must skip it.
    tag = "t" + uuid.uuid4().hex[:10]
    longer = Route(route.stack, old_prefix=f"{tag}/images", new_prefix=f"{tag}/a-much-longer-destination-folder")
    long_key = "/".join(["k" * 200] * 4) + "/" + "z" * (1024 - len(longer.old("").encode()) - 805)
    assert len(longer.old(long_key).encode()) <= 1024 < len(longer.new(long_key).encode())
    longer.put(long_key)

    result = run_init(longer, compose_host(longer))

    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]  # what service_completed_successfully requires
    # The defaults ran: the schema, 500 sample objects (LOAD_FILES=true), then the seed.
    assert "ledger schema is at version" in result.stdout, output[-4000:]
    assert "put 500 sample objects" in result.stdout, output[-4000:]
    assert "501 listed, 500 added, 0 changed, 1 skipped by this process" in result.stdout, output[-4000:]
    logged = events(output)
    skipped = [e for e in logged if e["event"] == "key_skipped"]
    assert [(e["key"], e["level"]) for e in skipped] == [(longer.old(long_key), "warning")], skipped
    assert "1024" in skipped[0]["reason"], skipped
    (summary,) = [e for e in logged if e["event"] == "seed_finished_with_skipped_keys"]
    assert summary["skipped"] == 1 and summary["level"] == "warning", summary
    # ... and the skip stays visible after the log: `status` counts it with its seed.
    status = json.loads(run_cli("status", "--json", env=longer.env("worker", "m3_worker")).stdout)
    (seed,) = [s for s in status["seeds"] if s["old_prefix"].strip("/") == longer.old_prefix]
    assert (seed["listed"], seed["added"], seed["skipped"]) == (501, 500, 1), seed
    assert longer.states() == {"pending": 500}
    # ... and in the sign-off report.
    page = tmp_path / "summary.html"
    run_cli("report", "--summary", str(page), env=longer.env("worker", "m3_worker"))
    assert "The seeds skipped 1 keys they cannot map" in page.read_text()


def test_compose_init_fails_and_holds_the_workers_back_when_a_command_fails(route):
    result = run_init(route, compose_host(route, DB_PASSWORD="not-the-password"))
    assert result.returncode == 3, result.stdout + result.stderr  # `set -e`: movers3 init's ledger error
    assert "put " not in result.stdout and "seeded " not in result.stdout
