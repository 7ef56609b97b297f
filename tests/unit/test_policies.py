"""The shipped IAM policy documents (compose/policies/) are the ones the docs show, and the ECS task role
is the worker's: no second copy that can drift. What they grant is tested against SeaweedFS and the
requests each role sends in tests/acceptance/test_policies.py."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
POLICIES = ROOT / "compose" / "policies"
PERMISSIONS_DOC = ROOT / "docs" / "permissions.md"


def documents() -> dict[str, dict]:
    return {path.stem: json.loads(path.read_text()) for path in sorted(POLICIES.glob("*.json"))}


def test_one_document_per_role():
    assert set(documents()) == {"seeder", "worker", "worker-minimal", "verifier", "deleter"}
    for name, policy in documents().items():
        assert policy["Version"] == "2012-10-17", name
        for statement in policy["Statement"]:
            assert statement["Effect"] == "Allow", name
            resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            assert all(r.startswith(("arn:aws:s3:::legacy-s3", "arn:aws:s3:::production-s3")) for r in resources)


def test_the_docs_show_each_document_as_it_is():
    """Every JSON block of docs/permissions.md is one of the files, and every file is shown."""
    blocks = [json.loads(b) for b in re.findall(r"```json\n(.*?)```", PERMISSIONS_DOC.read_text(), re.DOTALL)]
    shown = [name for name, policy in documents().items() if policy in blocks]
    assert sorted(shown) == sorted(documents())
    assert all(block in documents().values() for block in blocks)
    text = PERMISSIONS_DOC.read_text()
    assert all(f"compose/policies/{name}.json" in text for name in documents())


def test_the_ecs_task_role_is_the_workers_document():
    assert (ROOT / "compose" / "ecs" / "task-role-policy.json").read_bytes() == (POLICIES / "worker.json").read_bytes()
