"""Credentials from boto3's default chain, with no keys given: a named profile's shared files, the ECS
container endpoint, web identity (EKS) and the instance metadata service, each imitated on loopback
(tests/support/credservers.py) and handing out a SeaweedFS identity's keys, on both copy engines; and
temporary credentials that rotate while a worker copies, the old key removed from SeaweedFS once it
has expired."""

from __future__ import annotations

import datetime
import threading
import time

import pytest

from tests.support.credservers import CredentialServer, Issued, clean_env, profile_env
from tests.support.helpers import json_events, run_cli, signal_and_time, start_cli, wait_for

pytestmark = pytest.mark.acceptance

ENGINES = ["crt", "boto3"]
# How long each set of rotating credentials is handed out, and how long it stays valid after the next
# is handed out (AWS too serves the next set before the current one expires). botocore refreshes before
# every request once credentials expire within 10 minutes, so a minute or 20 s take the same path; 20 s
# keeps the test short.
GENERATION_SECONDS = 20.0
LINGER_SECONDS = 5.0
CREDENTIAL_CODES = ("ExpiredToken", "InvalidAccessKeyId", "InvalidToken", "TokenRefreshRequired")


def seed(route):
    return run_cli("seed", env=route.env("seeder", "m3_seeder"))


def chain_env(route, tmp_path, engine: str, **extra: str) -> dict[str, str]:
    """The worker's environment with no AWS_* variable at all (no keys), then `extra`."""
    env = clean_env(tmp_path, route.env("worker", "m3_worker"))
    env.update({"COPY_ENGINE": engine, "WORKER_THREADS": "4", **extra})
    return env


def worker_events(text: str) -> list[dict]:
    """A worker's JSON events from a log that also holds its stderr (the error line of a stop)."""
    return json_events("".join(line for line in text.splitlines(keepends=True) if line.startswith("{")))


def an_hour() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("source", ["profile", "container", "web-identity", "imds"])
def test_a_migration_with_credentials_from_the_default_chain(route, tmp_path, engine, source):
    route.put_many((f"{i}.bin", b"%d" % i * 50) for i in range(30))
    seed(route)
    key, secret = route.stack.s3.credentials("worker")
    with CredentialServer(lambda: Issued(key, secret, an_hour())) as server:
        extra = {
            "profile": lambda: profile_env(tmp_path, "migration", key, secret, "us-east-1"),
            "container": server.container_env,
            "web-identity": lambda: server.web_identity_env(tmp_path),
            "imds": server.imds_env,
        }[source]()
        env = chain_env(route, tmp_path, engine, **extra)
        assert "AWS_ACCESS_KEY_ID" not in env and "AWS_SECRET_ACCESS_KEY" not in env
        done = run_cli("worker", "--exit-when-done", env=env)
    assert route.states() == {"done": 30}, done.stderr[-2000:]
    assert {r["attempts"] for r in route.rows()} == {1}
    assert server.refused == []
    via = {"profile": set(), "container": {"container"}, "web-identity": {"sts"}, "imds": {"imds"}}[source]
    assert {h.via for h in server.handed} == via


class Rotation:
    """Hands out the keys of rotation-a, then rotation-b, then rotation-a again (a new key each time),
    GENERATION_SECONDS each, each valid LINGER_SECONDS past its successor's start; a thread removes
    each key from SeaweedFS at its expiry, as an expired session stops working on AWS."""

    def __init__(self, s3, generations: int = 3) -> None:
        self.s3 = s3
        self.generations = generations
        self.started = time.monotonic()
        self.wall = datetime.datetime.now(datetime.UTC)
        self.keys = [
            (f"{who}-{n}", f"{who}-{n}-secret-0123456789", who)
            for n, who in enumerate(["rotation-a", "rotation-b"] * generations)
        ][:generations]
        self.removed: list[tuple[str, str]] = []
        self.failure: BaseException | None = None
        self.finished = threading.Event()
        for _, _, who in self.keys[:2]:
            self.s3.set_keys(who, [])
        self.s3.set_keys(self.keys[0][2], [self.keys[0][:2]])
        self._thread = threading.Thread(target=self._rotate, daemon=True)
        self._thread.start()

    def generation(self) -> int:
        return min(int((time.monotonic() - self.started) // GENERATION_SECONDS), self.generations - 1)

    def issue(self) -> Issued:
        n = self.generation()
        access, secret, _ = self.keys[n]
        expiry = self.wall + datetime.timedelta(seconds=(n + 1) * GENERATION_SECONDS + LINGER_SECONDS)
        return Issued(access, secret, expiry)

    def _rotate(self) -> None:
        try:
            for n in range(1, self.generations):
                # The next key exists before it is handed out; the old one goes at its expiry.
                access, secret, who = self.keys[n]
                self._sleep_until(n * GENERATION_SECONDS - 2)
                self.s3.set_keys(who, [(access, secret)])
                self._sleep_until(n * GENERATION_SECONDS + LINGER_SECONDS)
                old = self.keys[n - 1]
                self.s3.set_keys(old[2], [])
                self.removed.append(old[:2])
        except BaseException as exc:  # reported by the test
            self.failure = exc
        finally:
            self.finished.set()

    def _sleep_until(self, offset: float) -> None:
        time.sleep(max(0.0, self.started + offset - time.monotonic()))

    def restore(self) -> None:
        for who in ("rotation-a", "rotation-b"):
            self.s3.set_keys(who, [self.s3.credentials(who)])


def rotate_while_copying(route, tmp_path, env: dict[str, str]) -> tuple[Rotation, CredentialServer, list, int]:
    """A worker started with `env` (plus the rotation's container endpoint when it has no keys) copies
    objects seeded in waves until both switches and both removals have passed. Returns the rotation,
    the server, the worker's events and its exit code."""
    rotation = Rotation(route.stack.s3)
    try:
        with CredentialServer(rotation.issue) as server:
            if "AWS_ACCESS_KEY_ID" not in env:
                env = {**env, **server.container_env()}
            log = tmp_path / "worker.log"
            worker = start_cli("worker", env=env, log=log)
            wave = 0
            # Objects keep coming, so that copies are in flight at every switch and every removal.
            while not rotation.finished.is_set() and worker.poll() is None:
                route.put_many((f"w{wave}/{i}.bin", b"%d" % i * 20) for i in range(40))
                seed(route)
                wave += 1
                time.sleep(1)
            assert rotation.failure is None, rotation.failure
            route.put_many((f"last/{i}.bin", b"%d" % i * 20) for i in range(40))
            seed(route)
            if worker.poll() is None:
                wait_for(
                    lambda: set(route.states()) == {"done"} or worker.poll() is not None, timeout=60, what="all done"
                )
            code = worker.returncode if worker.poll() is not None else signal_and_time(worker)[0]
            return rotation, server, worker_events(log.read_text()), code
    finally:
        rotation.finished.wait(60)
        rotation.restore()


@pytest.mark.parametrize("engine", ENGINES)
def test_a_worker_copies_on_while_its_credentials_rotate(route, tmp_path, engine):
    env = chain_env(route, tmp_path, engine, LOG_LEVEL="debug")
    rotation, server, events, code = rotate_while_copying(route, tmp_path, env)

    assert code == 0, [e for e in events if e.get("level") in ("warning", "error")][-5:]
    rows = route.rows()
    assert {r["state"] for r in rows} == {"done"} and len(rows) >= 160
    assert {r["attempts"] for r in rows} == {1}, "an attempt was spent: " + str(
        [r["last_error"] for r in rows if r["attempts"] != 1][:3]
    )
    codes = {e.get("code") for e in events if e["event"] in ("copy_retrying", "copy_failed", "worker_misconfigured")}
    assert not codes.intersection(CREDENTIAL_CODES), codes
    # Both identities were handed out, in turn, and the keys handed out first are refused now.
    assert server.keys_handed() == [access for access, _, _ in rotation.keys], server.keys_handed()
    assert len(rotation.removed) == 2
    assert not any(route.stack.s3.key_known(key) for key in rotation.removed)
    # Rows were copied after each removal: by the keys still in SeaweedFS.
    print(
        f"CREDENTIALS {engine}: {len(rows)} rows, {len(server.handed)} credential fetches, keys {server.keys_handed()}"
    )


def test_static_keys_removed_under_a_worker_stop_it_with_no_row_failed(route, tmp_path):
    """What the rotation test guards against: keys that are not refreshed. The worker stops on the
    first InvalidAccessKeyId after its key is removed, and gives its rows back unfailed."""
    rotation = Rotation(route.stack.s3, generations=2)
    access, secret, _ = rotation.keys[0]
    env = chain_env(route, tmp_path, "crt", AWS_ACCESS_KEY_ID=access, AWS_SECRET_ACCESS_KEY=secret)
    log = tmp_path / "worker.log"
    route.put_many((f"{i}.bin", b"x") for i in range(20))
    seed(route)
    worker = start_cli("worker", env=env, log=log)
    try:
        wait_for(lambda: route.states() == {"done": 20}, timeout=30, what="the first copies")
        rotation.finished.wait(60)
        route.put_many((f"late/{i}.bin", b"x") for i in range(20))
        seed(route)
        code = worker.wait(60)
    finally:
        if worker.poll() is None:
            signal_and_time(worker)
        rotation.finished.wait(60)
        rotation.restore()
    text = log.read_text()  # the JSON events, then the error line on stderr
    events = worker_events(text)
    assert code != 0
    assert "InvalidAccessKeyId" in text.splitlines()[-1]
    assert route.states() == {"done": 20, "pending": 20}
    assert [e for e in events if e["event"] == "copy_failed"] == []
