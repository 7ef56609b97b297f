"""The Kubernetes manifests under compose/kubernetes/, checked without a cluster: every object is valid
against the API schemas of a pinned Kubernetes version (kubernetes-validate, offline, unknown fields
rejected), and the objects agree with movers3: the variables are settings it reads, the secret comes
from a Secret, the grace period outlasts the drain, the probes and the scrape annotations name the
metrics port and a path the worker serves, the Jobs retry only what may pass, the pods run as the
image's unprivileged user."""

import json
import re
import urllib.error
import urllib.request
from pathlib import PurePosixPath

import kubernetes_validate
import pytest
import yaml

from movers3.exceptions import (
    EXIT_CONFIG,
    EXIT_FAILED_ROWS,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_LEDGER,
    EXIT_SCHEMA,
    EXIT_STORAGE,
)
from movers3.settings import OPTION_BY_ENV, load
from movers3.worker import loop as worker_loop
from movers3.worker.health import Heartbeat
from tests.support import dockerfile
from tests.unit.test_compose import COMPOSE, OPERATIONS_DOC, WORKER_EXIT_SECONDS

MANIFESTS = COMPOSE / "kubernetes"
README = COMPOSE.parent / "README.md"
# The oldest Kubernetes the manifests are written for: podFailurePolicy is GA from 1.31.
KUBERNETES_VERSION = "1.31.0"
LEDGER_SECRET = "movers3-ledger"
# A value for MYSQL_URL when the settings are loaded here: the real one is in the Secret.
EXAMPLE_MYSQL_URL = "mysql+pymysql://movers3_worker:p@db:3306/sketch"
CLUSTER_SCOPED = {"Namespace"}
WORKLOADS = {"movers3-init", "movers3-seed", "movers3-worker"}
# Room above STREAM_MEMORY's part buffers for the interpreter, boto3 and the copy threads.
WORKER_MEMORY_ABOVE_BUFFERS = 256 * 2**20
QUANTITY = re.compile(r"^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T|m)?$")
UNITS = {None: 1, "m": 0.001, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
UNITS |= {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def documents() -> list[tuple[str, dict]]:
    found = []
    for path in sorted(MANIFESTS.glob("*.yaml")):
        found += [(path.name, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return found


def ident(item: tuple[str, dict] | None) -> str:
    if item is None:
        return "none"
    name, doc = item
    return f"{name}:{doc['kind']}/{doc['metadata']['name']}"


@pytest.fixture(scope="module")
def objects() -> dict[tuple[str, str], dict]:
    return {(doc["kind"], doc["metadata"]["name"]): doc for _, doc in documents()}


def pods(objects) -> dict[str, dict]:
    """The pod spec of each workload, by its object's name."""
    workloads = {name: doc for (kind, name), doc in objects.items() if kind in ("Job", "Deployment")}
    assert set(workloads) == WORKLOADS  # so that no check below passes over nothing
    return {name: doc["spec"]["template"]["spec"] for name, doc in workloads.items()}


def container(pod: dict) -> dict:
    (only,) = pod["containers"]
    return only


def quantity(text: str | int) -> float:
    number, unit = QUANTITY.match(str(text)).groups()
    return float(number) * UNITS[unit]


def settings_of(objects, pod: dict):
    """The settings one container loads: the ConfigMaps it reads, then its own variables (a secret
    one given an example value)."""
    env: dict[str, str] = {}
    box = container(pod)
    for source in box.get("envFrom", []):
        env |= objects["ConfigMap", source["configMapRef"]["name"]]["data"]
    for var in box.get("env", []):
        env[var["name"]] = var.get("value", EXAMPLE_MYSQL_URL if var["name"] == "MYSQL_URL" else "")
    return env, load(env)


@pytest.mark.parametrize("item", documents() or [None], ids=ident)
def test_every_object_is_valid_against_the_kubernetes_schemas(item):
    """Strict: a misspelt or misplaced field is an error here, as `kubectl apply` would make it one."""
    assert item is not None, f"no manifest in {MANIFESTS}"
    _, doc = item
    problem = None
    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        problem = f"{'.'.join(map(str, exc.path))}: {exc.message}"
    assert problem is None, problem


def test_the_folder_holds_the_objects_the_docs_describe_in_the_namespace_it_creates(objects):
    assert sorted(objects) == [
        ("ConfigMap", "movers3-settings"),
        ("Deployment", "movers3-worker"),
        ("Job", "movers3-init"),
        ("Job", "movers3-seed"),
        ("Namespace", "movers3"),
        ("PodDisruptionBudget", "movers3-worker"),
        ("ServiceAccount", "movers3-seeder"),
        ("ServiceAccount", "movers3-worker"),
    ]
    # `kubectl apply -f compose/kubernetes/` reads the files in name order: the namespace first.
    first_file, first = documents()[0]
    assert first["kind"] == "Namespace", first_file
    for (kind, name), doc in objects.items():
        if kind not in CLUSTER_SCOPED:
            assert doc["metadata"]["namespace"] == "movers3", f"{kind}/{name}"
    # The pods meet the restricted Pod Security Standard (checked below); the namespace enforces it.
    assert objects["Namespace", "movers3"]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_every_variable_given_to_movers3_is_a_setting_it_reads_and_loads(objects):
    data = objects["ConfigMap", "movers3-settings"]["data"]
    unknown = sorted(k for k in data if k not in OPTION_BY_ENV)
    assert not unknown, f"not settings movers3 knows: {unknown}"
    for name, pod in pods(objects).items():
        box = container(pod)
        given = [v["name"] for v in box.get("env", [])]
        assert set(given) <= set(OPTION_BY_ENV), f"{name}: {set(given) - set(OPTION_BY_ENV)}"
        _, settings = settings_of(objects, pod)
        # AWS's own endpoint for the region, credentials from the service account: no keys anywhere.
        assert settings.source.url is None and settings.source.access_key is None, name
        assert settings.source.region == data["AWS_REGION"] and settings.log_format == "json"


def test_no_secret_value_is_shipped_and_mysql_url_comes_from_the_secret(objects):
    assert not [key for key in objects if key[0] == "Secret"], "secret values are never shipped"
    data = objects["ConfigMap", "movers3-settings"]["data"]
    assert not [k for k in data if OPTION_BY_ENV[k].secret], "a secret setting in the ConfigMap"
    keys = {}
    for name, pod in pods(objects).items():
        env = {v["name"]: v for v in container(pod).get("env", [])}
        for var, spec in env.items():
            if OPTION_BY_ENV[var].secret:
                assert "value" not in spec, f"{name}: {var} given as a literal"
        ref = env["MYSQL_URL"]["valueFrom"]["secretKeyRef"]
        assert ref["name"] == LEDGER_SECRET and not ref.get("optional", False), name
        keys[name] = ref["key"]
    # One database account per role (docs/permissions.md).
    assert keys == {
        "movers3-init": "migrator-mysql-url",
        "movers3-seed": "seeder-mysql-url",
        "movers3-worker": "worker-mysql-url",
    }
    # The commented example creates that Secret with exactly those keys.
    text = (MANIFESTS / "02-settings.yaml").read_text()
    assert f"create secret generic {LEDGER_SECRET}" in text
    assert set(re.findall(r"--from-literal=([\w.-]+)=", text)) == set(keys.values())


def test_the_workers_are_daemons_given_longer_than_their_drain(objects):
    deployment = objects["Deployment", "movers3-worker"]
    pod = deployment["spec"]["template"]["spec"]
    # A Deployment restarts whatever exits: the worker never exits on its own (no --exit-when-done).
    assert container(pod)["args"] == ["worker"]
    assert pod["terminationGracePeriodSeconds"] > WORKER_EXIT_SECONDS > worker_loop.DRAIN_SECONDS
    assert f"exits 0 within {WORKER_EXIT_SECONDS} s" in OPERATIONS_DOC.read_text()


def test_the_probes_and_the_scrape_annotations_name_the_metrics_port(objects):
    template = objects["Deployment", "movers3-worker"]["spec"]["template"]
    box = container(template["spec"])
    _, settings = settings_of(objects, template["spec"])
    assert settings.metrics_port and settings.metrics_host not in ("127.0.0.1", "localhost", "::1")
    ports = {p["name"]: p["containerPort"] for p in box["ports"]}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        check = box[probe]["httpGet"]
        assert check["path"] == "/healthz", probe
        assert ports.get(check["port"], check["port"]) == settings.metrics_port, probe
    annotations = template["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(settings.metrics_port)
    assert annotations["prometheus.io/path"] == "/metrics"
    # Liveness gives up no sooner than the heartbeat itself: HEALTH_MAX_AGE forgives a slow loop.
    live = box["livenessProbe"]
    assert live["periodSeconds"] * live["failureThreshold"] <= settings.health_max_age


def test_the_worker_serves_the_probes_path_while_its_loop_passes():
    """The probes' path, asked of the worker's own metrics server on loopback: 200 while the loop
    passes, 503 once it has stopped."""
    from movers3.worker.metrics import Metrics, MetricsServer

    deployment = next(doc for _, doc in documents() if doc["kind"] == "Deployment")
    box = container(deployment["spec"]["template"]["spec"])
    (path,) = {box[probe]["httpGet"]["path"] for probe in ("startupProbe", "livenessProbe", "readinessProbe")}
    heartbeat = Heartbeat(None)
    heartbeat.worker_started("k8s-test")
    server = MetricsServer(Metrics(), "127.0.0.1", 0, heartbeat).start()
    url = "http://{}:{}".format(*server.address) + path
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            assert answer.status == 200 and json.load(answer)["healthy"] is True
        heartbeat.worker_stopped()
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url, timeout=5)
        assert refused.value.code == 503
    finally:
        server.stop()


def test_the_pods_run_as_the_images_user_on_a_read_only_root(objects):
    image_user = dockerfile.stages()[-1].one("USER").split(":")[0]
    for name, pod in pods(objects).items():
        context = pod["securityContext"]
        assert context["runAsNonRoot"] is True and str(context["runAsUser"]) == image_user, name
        assert context["seccompProfile"]["type"] == "RuntimeDefault", name
        box = container(pod)
        assert box["securityContext"] == {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        }, name
        # The only writable place is an emptyDir at /tmp, where HEALTH_FILE lives.
        volumes = {v["name"]: v for v in pod["volumes"]}
        mounts = {m["mountPath"]: volumes[m["name"]] for m in box["volumeMounts"]}
        assert "emptyDir" in mounts["/tmp"], name
        env, _ = settings_of(objects, pod)
        health = PurePosixPath(env["HEALTH_FILE"])
        assert any(health.is_relative_to(p) and "emptyDir" in v for p, v in mounts.items()), name
        # Every container states what it needs and caps its memory.
        resources = box["resources"]
        assert {"cpu", "memory"} <= set(resources["requests"]) and "memory" in resources["limits"], name
        assert quantity(resources["requests"]["memory"]) <= quantity(resources["limits"]["memory"]), name


def test_the_workers_memory_limit_holds_their_part_buffers(objects):
    pod = objects["Deployment", "movers3-worker"]["spec"]["template"]["spec"]
    _, settings = settings_of(objects, pod)
    limit = quantity(container(pod)["resources"]["limits"]["memory"])
    assert limit >= settings.stream_memory + WORKER_MEMORY_ABOVE_BUFFERS


def test_every_pod_runs_the_image_of_the_ecs_example(objects):
    task = json.loads((COMPOSE / "ecs" / "task-definition.json").read_text())
    (ecs,) = task["containerDefinitions"]
    for name, pod in pods(objects).items():
        box = container(pod)
        assert box["image"] == ecs["image"], name
        assert "command" not in box, f"{name}: the image's ENTRYPOINT is movers3; give only args"


def test_the_jobs_retry_what_may_pass_and_fail_at_once_on_what_would_repeat(objects):
    commands, failing = {}, {}
    for name in ("movers3-init", "movers3-seed"):
        job = objects["Job", name]["spec"]
        pod = job["template"]["spec"]
        commands[name] = container(pod)["args"]
        assert pod["restartPolicy"] == "Never", name  # podFailurePolicy needs it
        rules = job["podFailurePolicy"]["rules"]
        ignored = [r for r in rules if r["action"] == "Ignore"]
        assert [c["type"] for r in ignored for c in r["onPodConditions"]] == ["DisruptionTarget"], name
        (fail,) = [r for r in rules if r["action"] == "FailJob"]
        on = fail["onExitCodes"]
        assert on["operator"] == "In" and on["containerName"] == container(pod)["name"], name
        codes = failing[name] = set(on["values"])
        # Bad settings and bugs stay bad; an outage, a missing grant or right, an interruption may pass.
        assert {EXIT_CONFIG, EXIT_INTERNAL} <= codes <= {EXIT_FAILED_ROWS, EXIT_CONFIG, EXIT_SCHEMA, EXIT_INTERNAL}, (
            name
        )
        assert not codes & {EXIT_LEDGER, EXIT_STORAGE, EXIT_INTERRUPTED}, name
        assert job["backoffLimit"] >= 3, name
    assert commands == {"movers3-init": ["init"], "movers3-seed": ["seed"]}
    # The seed may start before init has made the schema (the folder applied at once): 4 is retried.
    assert EXIT_SCHEMA not in failing["movers3-seed"]


def test_each_pod_has_the_aws_role_of_its_own_role_and_no_more(objects):
    roles = {}
    for name, pod in pods(objects).items():
        account = pod.get("serviceAccountName")
        if name == "movers3-init":
            # init touches no S3: no AWS role, no API token.
            assert account is None and pod["automountServiceAccountToken"] is False
            continue
        annotations = objects["ServiceAccount", account]["metadata"]["annotations"]
        roles[name] = annotations["eks.amazonaws.com/role-arn"]
        assert re.fullmatch(r"arn:aws:iam::\d{12}:role/[\w+=,.@-]+", roles[name]), name
    assert roles["movers3-seed"].endswith("/movers3-seeder") and roles["movers3-worker"].endswith("/movers3-worker")
    text = (MANIFESTS / "01-serviceaccounts.yaml").read_text()
    for policy in ("compose/policies/seeder.json", "compose/policies/worker.json"):
        assert policy in text and (COMPOSE.parent / policy).exists()


def test_the_disruption_budget_covers_the_workers(objects):
    deployment = objects["Deployment", "movers3-worker"]["spec"]
    budget = objects["PodDisruptionBudget", "movers3-worker"]["spec"]
    assert budget["selector"] == deployment["selector"]
    labels = deployment["template"]["metadata"]["labels"]
    assert budget["selector"]["matchLabels"].items() <= labels.items()


def test_the_docs_say_how_to_apply_scale_resume_and_watch():
    doc = OPERATIONS_DOC.read_text()
    section = doc.split("## On Kubernetes (EKS)", 1)[1].split("\n## ", 1)[0]
    kubectl = r"kubectl -n movers3 "
    assert re.search(kubectl + r"scale deployment/movers3-worker --replicas=\d+", section)
    assert re.search(kubectl + r"rollout\s+restart deployment/movers3-worker", section)
    rerun = r"delete job movers3-seed && kubectl apply -f compose/kubernetes/11-seed-job.yaml"
    assert re.search(kubectl + rerun, section)
    assert re.search(kubectl + r"exec .*deploy/movers3-worker -- movers3 status", section)
    for path in sorted(MANIFESTS.glob("*.yaml")):
        assert path.name in section, path.name
    assert "docs/operations.md#on-kubernetes-eks" in README.read_text()


def test_the_validator_rejects_an_unknown_field():
    """The strict schemas do refuse what they don't know (or the first test proves nothing)."""
    _, deployment = next(item for item in documents() if item[1]["kind"] == "Deployment")
    broken = json.loads(json.dumps(deployment))
    broken["spec"]["template"]["spec"]["terminationGracePeriod"] = 40
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)
