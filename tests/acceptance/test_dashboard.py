"""compose/grafana's dashboard asks only for what the workers export: a real worker (least-privilege
accounts, a fault proxy so that retries happen, lost sources so that failures do) copies a small
migration and its /metrics is scraped; every metric, label matcher and `by` label of every panel's
query must be there, and the ledger gauges the progress and ETA panels use must agree with the ledger."""

import json
import os
import signal
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.acceptance.test_operations import get, start_metered_worker
from tests.support import promql
from tests.support.helpers import run_cli, wait_for

pytestmark = pytest.mark.acceptance

COMPOSE = Path(__file__).resolve().parents[2] / "compose"
DASHBOARD = COMPOSE / "grafana" / "dashboards" / "movers3.json"


def target_labels() -> dict[str, set[str]]:
    """The labels Prometheus adds to every scraped series (compose/prometheus.yml's jobs), with the
    values it gives them: `instance` is host:port, whatever the target."""
    config = yaml.safe_load((COMPOSE / "prometheus.yml").read_text())
    return {"job": {job["job_name"] for job in config["scrape_configs"]}, "instance": set()}


def dashboard_queries() -> list[tuple[str, str]]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [(panel["title"], target["expr"]) for panel in panels for target in panel["targets"]]


def exported(text: str) -> dict[str, dict[str, set[str]]]:
    """Every sample name of an exposition (`_total`, `_bucket`, `_count`, `_sum` included) with each of
    its labels and the values seen."""
    names: dict[str, dict[str, set[str]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = names.setdefault(sample.name, {})
            for key, value in sample.labels.items():
                labels.setdefault(key, set()).add(value)
    return names


def unknown_in(expr: str, names: dict[str, dict[str, set[str]]]) -> list[str]:
    """What `expr` asks for that the exposition (plus Prometheus's target labels) does not have."""
    added = target_labels()
    problems = []
    tree = promql.parse(expr)
    for selector in promql.selectors(tree):
        if selector.name not in names:
            problems.append(f"metric {selector.name}")
            continue
        labels = {**names[selector.name], **added}
        for label, op, value in selector.matchers:
            if label not in labels:
                problems.append(f"label {label} of {selector.name}")
            elif op in ("=", "=~") and labels[label]:
                # Each alternative of `state=~"done|failed"` must be a value the workers give.
                for wanted in value.split("|") if op == "=~" else [value]:
                    if not any(promql.matches(v, op, wanted) for v in labels[label]):
                        problems.append(f"value {label}={wanted!r} of {selector.name}")
    for by, under in promql.groupings(tree):
        for selector in under:
            have = set(names.get(selector.name, {})) | set(added)
            problems.extend(f"by ({label}) over {selector.name}" for label in by if label not in have)
    return problems


def test_every_metric_and_label_the_dashboard_queries_is_one_the_workers_export(route, env, tmp_path):
    count, lost = 80, 4
    route.put_many((f"{i}.bin", os.urandom(500 + i)) for i in range(count))
    run_cli("seed", env=route.env("seeder", "m3_seeder"))
    client = route.stack.s3.client()
    for i in range(lost):
        client.delete_object(Bucket=route.old_bucket, Key=route.old(f"{i}.bin"))
    worker, proxy, port = start_metered_worker(route, env, tmp_path / "w.log", slowdown=0.2)
    try:
        wait_for(lambda: route.states() == {"done": count - lost, "failed": lost}, timeout=120, what="the migration")
        # The counters are written with the outcomes; the ledger gauges are read every few seconds.
        text = wait_for(
            lambda: (
                (r := get(f"http://127.0.0.1:{port}/metrics"))[0] == 200
                and f"movers3_objects_copied_total {float(count - lost)}" in r[1]
                and (
                    f'movers3_ledger_rows{{state="done"}} {float(count - lost)}' in r[1]
                    or "movers3_ledger_rows" not in r[1]  # no such gauge: the comparison below says so
                )
                and r[1]
            ),
            timeout=30,
            what="the metrics to catch up with the ledger",
        )
    finally:
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(60)
        proxy.stop()
    assert code == 0, (tmp_path / "w.log").read_text()[-3000:]
    assert proxy.injected["slowdown"] > 0  # so that the retries' `code` label was exported
    names = exported(text)
    queries = dashboard_queries()
    assert len(queries) >= 12
    problems = {f"{title}: {expr}": found for title, expr in queries if (found := unknown_in(expr, names))}
    assert not problems, problems
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }
    assert samples[("movers3_ledger_rows", (("state", "failed"),))] == lost
    assert samples[("movers3_ledger_rows", (("state", "pending"),))] == 0
    assert samples[("movers3_ledger_bytes", (("state", "done"),))] == sum(500 + i for i in range(lost, count))


def test_the_check_finds_what_the_workers_do_not_export():
    """The comparison itself: a misspelt metric, an unknown label, a `by` label the series lack and a
    state that does not exist are each reported."""
    text = (
        "# TYPE movers3_ledger_rows gauge\n"
        'movers3_ledger_rows{state="done"} 3.0\n'
        "# TYPE movers3_copy_duration_seconds histogram\n"
        'movers3_copy_duration_seconds_bucket{le="+Inf"} 1.0\n'
        "movers3_copy_duration_seconds_count 1.0\n"
        "movers3_copy_duration_seconds_sum 0.1\n"
    )
    names = exported(text)
    assert unknown_in('max by (state) (movers3_ledger_rows{state="done"})', names) == []
    assert unknown_in("sum by (le) (rate(movers3_copy_duration_seconds_bucket[1m]))", names) == []
    assert unknown_in("sum by (instance) (movers3_ledger_rows)", names) == []  # Prometheus adds instance
    assert unknown_in("movers3_ledger_row", names) == ["metric movers3_ledger_row"]
    assert unknown_in('movers3_ledger_rows{code="x"}', names) == ["label code of movers3_ledger_rows"]
    assert unknown_in('movers3_ledger_rows{state=~"done|gone"}', names) == ["value state='gone' of movers3_ledger_rows"]
    assert unknown_in("sum by (code) (movers3_copy_duration_seconds_count)", names) == [
        "by (code) over movers3_copy_duration_seconds_count"
    ]
    assert unknown_in("movers3_copy_duration_seconds", names) == ["metric movers3_copy_duration_seconds"]
