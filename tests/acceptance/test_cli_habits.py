"""The command line's habits, as an operator meets them: the summaries of seed, retry, verify and
delete-source as JSON (the same numbers and exit codes as their lines), errors as one JSON object on
stderr with --json (the same exit code, no secret), the global flags before the command, and a boolean
flag (--no-copy-tags) that turns its setting off in a real copy."""

from __future__ import annotations

import json
import re

import pytest

from tests.support.helpers import json_events, run_cli
from tests.support.services import DB_ROLES, S3_IDENTITIES

pytestmark = pytest.mark.acceptance

SECRETS = [spec["secret"] for spec in S3_IDENTITIES.values()] + [password for password, _ in DB_ROLES.values()]


def as_json(result) -> dict:
    """The one JSON object a --json command prints on stdout."""
    (line,) = result.stdout.splitlines()
    return json.loads(line)


def test_each_summary_as_json_says_what_its_line_says(route, env):
    seeder = route.env("seeder", "m3_seeder")
    for i in range(6):
        route.put(f"{i}.txt", f"body {i}".encode())
    route.put("gone.txt", b"listed, then deleted")

    first = as_json(run_cli("seed", "--json", env=seeder))
    assert first == {
        "source": f"{route.old_bucket}/{route.old_folder}",
        "round": first["round"],
        "manifest": None,
        "listed": 7,
        "added": 7,
        "changed": 0,
        "older": 0,
        "skipped": 0,
    }
    text = run_cli("seed", env=seeder).stdout.strip()
    again = as_json(run_cli("seed", "--json", env=seeder))
    assert re.search(r": 7 listed, 0 added, 0 changed, 0 skipped by this process$", text), text
    assert [again[k] for k in ("listed", "added", "changed", "skipped")] == [7, 0, 0, 0]
    assert again["round"] == first["round"] + 2

    admin = route.stack.s3.client()
    admin.delete_object(Bucket=route.old_bucket, Key=route.old("gone.txt"))
    run_cli("worker", "--exit-when-done", env={**env, "MAX_ATTEMPTS": "1"})
    assert route.states() == {"done": 6, "failed": 1}

    # verify: one copy tampered with after the copy.
    admin.put_object(Bucket=route.new_bucket, Key=route.new("3.txt"), Body=b"tampered")
    verifier = {**env, "AWS_ACCESS_KEY_ID": "admin", "AWS_SECRET_ACCESS_KEY": route.stack.s3.credentials("admin")[1]}
    text = run_cli("verify", "--sample", "0", env=verifier, check=False)
    result = run_cli("verify", "--sample", "0", "--json", env=verifier, check=False)
    assert text.returncode == result.returncode == 1
    summary = as_json(result)
    assert text.stdout.splitlines()[-1] == "verified 6 done rows: 5 ok, 1 mismatched"
    assert (summary["checked"], summary["ok"], summary["mismatched"], summary["marked_failed"]) == (6, 5, 1, 0)
    (mismatch,) = summary["mismatches"]
    assert mismatch["new"] == f"{route.new_bucket}/{route.new('3.txt')}"
    assert any(p.startswith("size ") for p in mismatch["problems"])
    assert f"MISMATCH id={mismatch['id']} " in text.stdout

    # retry: the failed row back to pending; a second retry finds none.
    assert as_json(run_cli("retry", "--json", env=env)) == {"pending_again": 1, "kept_failed": 0}
    assert route.states() == {"done": 6, "pending": 1}
    assert run_cli("retry", env=env).stdout.strip() == "0 failed rows are pending again"
    assert as_json(run_cli("retry", "--json", env=env)) == {"pending_again": 0, "kept_failed": 0}

    # delete-source: the dry run in both forms, then a run stopped by its guard.
    deleter = route.env("deleter", "m3_deleter")
    text = run_cli("delete-source", "--max-deletes", "100", "--dry-run", env=deleter, check=False)
    result = run_cli("delete-source", "--max-deletes", "100", "--dry-run", "--json", env=deleter, check=False)
    assert text.returncode == result.returncode == 1  # the tampered copy is skipped
    dry = as_json(result)
    assert dry["dry_run"] is True and dry["would_delete"] == 5 and dry["deleted"] == 0
    skipped = ", ".join(f"{n:,} {reason}" for reason, n in dry["skipped"].items())
    assert text.stdout.strip() == (
        f"would delete 5 source objects under {dry['source']}; {dry['already_gone']} already gone; skipped: {skipped}"
    )
    assert sum(dry["skipped"].values()) == 1
    result = run_cli("delete-source", "--max-deletes", "2", "--json", env=deleter, check=False)
    bounded = as_json(result)
    # The tampered row is skipped if this run reached it before its guard: exit 1 then, as in text.
    assert result.returncode == (1 if bounded["skipped"] else 0)
    assert (bounded["deleted"], bounded["guard_reached"], bounded["max_deletes"], bounded["dry_run"]) == (
        2,
        True,
        2,
        False,
    )
    remaining = admin.list_objects_v2(Bucket=route.old_bucket, Prefix=route.old_folder).get("KeyCount")
    assert remaining == 6 - 2


@pytest.mark.parametrize(
    "command", [["seed"], ["retry"], ["verify"], ["delete-source", "--max-deletes", "1"], ["status"], ["plan"]]
)
def test_with_json_a_wrong_ledger_password_is_a_json_error_with_code_3_and_no_secret(route, command):
    wrong = "Wr0ng-but-secret-pass-json"
    role = (
        "m3_seeder"
        if command[0] in ("seed", "plan")
        else "m3_deleter"
        if command[0] == "delete-source"
        else "m3_worker"
    )
    env = route.env("admin", role)
    env["MYSQL_URL"] = env["MYSQL_URL"].replace(DB_ROLES[role][0], wrong)
    result = run_cli(*command, "--json", env=env, check=False, timeout=60)
    assert result.returncode == 3, result.stderr
    answer = json.loads(result.stderr.splitlines()[-1])
    assert answer["code"] == 3 and answer["type"] in ("LedgerError", "LedgerUnavailable")
    assert "wrong user or password" in answer["error"]
    assert result.stdout == "" and "Traceback" not in result.stderr
    for secret in [*SECRETS, wrong]:
        assert secret not in result.stdout + result.stderr


@pytest.mark.parametrize(
    "change,code,kind",
    [
        ({"AWS_SECRET_ACCESS_KEY": "Wr0ng-secret-key-json"}, 5, "StorageError"),
        ({"OLD_PREFIX": "../images"}, 2, "ConfigError"),
        ({"MYSQL_URL": "mysql+pymysql://u:Wr0ng-secret-key-json@127.0.0.1:99999/sketch"}, 2, "ConfigError"),
    ],
)
def test_with_json_settings_and_s3_errors_are_json_with_their_exit_code(route, change, code, kind):
    env = {**route.env("seeder", "m3_seeder"), **change}
    result = run_cli("seed", "--json", env=env, check=False, timeout=120)
    assert result.returncode == code, result.stderr
    answer = json.loads(result.stderr.splitlines()[-1])
    assert answer["code"] == code and answer["type"] == kind, answer
    assert result.stdout == "" and "Wr0ng-secret-key-json" not in result.stderr


def test_with_json_a_usage_error_is_json_with_code_2(env):
    result = run_cli("delete-source", "--json", env=env, check=False)  # --max-deletes is required
    assert result.returncode == 2
    assert json.loads(result.stderr) == {
        "error": "the following arguments are required: --max-deletes",
        "code": 2,
        "type": "UsageError",
    }


def test_global_flags_before_the_command_and_no_copy_tags_in_a_real_copy(route, env):
    route.put("tagged.txt", b"tagged", Tagging="team=web&kind=avatar")
    run_cli("seed", env=route.env("seeder", "m3_seeder"))
    admin = route.stack.s3.client()
    # The variable says true; the flag after the command says no; the log level before the command.
    result = run_cli(
        "--log-level", "debug", "worker", "--exit-when-done", "--no-copy-tags", env={**env, "COPY_TAGS": "true"}
    )
    assert route.states() == {"done": 1}
    assert admin.get_object_tagging(Bucket=route.new_bucket, Key=route.new("tagged.txt"))["TagSet"] == []
    assert "object_copied" in {e["event"] for e in json_events(result.stdout)}  # debug: one per object

    # And the other way round: --copy-tags over COPY_TAGS=false, a level after the command.
    route.put("tagged-too.txt", b"tagged", Tagging="team=web&kind=avatar")
    run_cli("seed", env=route.env("seeder", "m3_seeder"))
    result = run_cli(
        "worker", "--exit-when-done", "--copy-tags", "--log-level", "warning", env={**env, "COPY_TAGS": "false"}
    )
    assert route.states() == {"done": 2}
    tags = admin.get_object_tagging(Bucket=route.new_bucket, Key=route.new("tagged-too.txt"))["TagSet"]
    assert {t["Key"]: t["Value"] for t in tags} == {"team": "web", "kind": "avatar"}
    assert "object_copied" not in {e["event"] for e in json_events(result.stdout)}
