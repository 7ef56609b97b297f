"""The AWS SDKs' conventions against the real servers: the endpoint named by AWS_ENDPOINT_URL_S3 or
AWS_ENDPOINT_URL when URL_ENDPOINT is unset, on both copy engines; the region a profile names; a profile
that doesn't exist stopped with one line. (Where URL_ENDPOINT=aws leads is checked offline in
tests/unit/test_sdk_conventions.py: nothing here may leave the machine.)"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support.helpers import run_cli

pytestmark = pytest.mark.acceptance

# Every test clears what boto3 could read from this machine: its files, its instance metadata.
QUIET = {"AWS_EC2_METADATA_DISABLED": "true"}


def sdk_env(route, tmp_path, s3_identity, db_role, variable, **extra):
    env = route.env(s3_identity, db_role, **QUIET, **extra)
    del env["URL_ENDPOINT"]
    env[variable] = route.stack.s3.url
    env["AWS_CONFIG_FILE"] = env["AWS_SHARED_CREDENTIALS_FILE"] = str(tmp_path / "absent")
    return env


@pytest.mark.parametrize(
    ("engine", "variable"), [("crt", "AWS_ENDPOINT_URL_S3"), ("boto3", "AWS_ENDPOINT_URL"), ("crt", "AWS_ENDPOINT_URL")]
)
def test_the_sdk_endpoint_variables_lead_both_engines_to_the_server(route, tmp_path, engine, variable):
    for i in range(5):
        route.put(f"sdk/{i}.txt", f"body {i}".encode(), ContentType="text/plain")
    seeded = run_cli("seed", env=sdk_env(route, tmp_path, "seeder", "m3_seeder", variable))
    assert "5 listed, 5 added" in seeded.stdout, seeded.stdout + seeded.stderr
    worker = sdk_env(route, tmp_path, "worker", "m3_worker", variable, COPY_ENGINE=engine)
    done = run_cli("worker", "--exit-when-done", env=worker)
    assert done.returncode == 0, done.stderr
    assert route.states() == {"done": 5}
    for i in range(5):
        got = route.read_new(f"sdk/{i}.txt")
        assert (got["Body"].read(), got["ContentType"]) == (f"body {i}".encode(), "text/plain")


def test_a_profile_that_is_not_there_stops_with_one_line(route, tmp_path):
    env = route.env("worker", "m3_worker", **QUIET, AWS_PROFILE="nowhere")
    env["AWS_CONFIG_FILE"] = env["AWS_SHARED_CREDENTIALS_FILE"] = str(tmp_path / "absent")
    result = run_cli("worker", "--exit-when-done", env=env, check=False)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [
        "movers3: error: AWS_PROFILE: no profile 'nowhere' in the shared AWS config or credentials file"
    ], result.stderr


def test_the_region_comes_from_the_profile_when_no_variable_names_one(route, tmp_path):
    config = tmp_path / "config"
    config.write_text("[profile migration]\nregion = eu-central-1\n[default]\nregion = ap-south-1\n")
    env = route.env("worker", "m3_worker", **QUIET, AWS_CONFIG_FILE=str(config))
    code = (
        "import os; from movers3 import settings; from movers3.transfer import s3;"
        " print(s3.region(settings.load(os.environ).dest))"
    )

    def region(**extra):
        out = subprocess.run([sys.executable, "-c", code], env={**env, **extra}, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    assert region() == "ap-south-1"
    assert region(AWS_PROFILE="migration") == "eu-central-1"
    assert region(AWS_PROFILE="migration", AWS_DEFAULT_REGION="eu-west-3") == "eu-west-3"
    assert region(AWS_PROFILE="migration", AWS_DEFAULT_REGION="eu-west-3", AWS_REGION="us-west-2") == "us-west-2"
