"""The image is built from pinned inputs only: every dependency pip installs in it is in a lock file
with `==` and hashes, the Dockerfile installs from those locks and nothing else, and every base or
service image is an exact release. tests/acceptance/test_image.py runs the install itself."""

import configparser
import importlib.metadata
import json
import re
import shlex
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

import movers3
from tests.support import dockerfile, lockfile

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose"
# A release: 10.11.19, v3.5.0, 3.11.16-slim-bookworm; never latest, a bare major or major.minor.
EXACT_TAG = re.compile(r"^v?\d+\.\d+\.\d+([.-][\w.-]+)?$")
KEEP_A_CHANGELOG_TYPES = {"Added", "Changed", "Deprecated", "Removed", "Fixed", "Security"}
REFERENCE = re.compile(r"^(?P<name>[^@\s]+?)(?::(?P<tag>[\w][\w.-]*))?(?:@(?P<digest>sha256:[0-9a-f]{64}))?$")


def setup_cfg() -> configparser.ConfigParser:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    return config


def requirement_lines(value: str) -> list[Requirement]:
    return [Requirement(line) for line in value.splitlines() if line.strip() and not line.startswith("#")]


def runtime_requirements() -> list[Requirement]:
    """What `pip install movers3[metrics]` asks for, from setup.cfg (the image installs that extra)."""
    config = setup_cfg()
    return requirement_lines(config["options"]["install_requires"]) + requirement_lines(
        config["options.extras_require"]["metrics"]
    )


def build_requirements() -> list[Requirement]:
    """What building the wheel needs (pyproject.toml's build-system) and pip, which runs it."""
    build_system = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]
    return [Requirement(r) for r in build_system["requires"]] + [Requirement("pip")]


def check_lock_covers(lock_path: Path, top: list[Requirement]) -> None:
    pins = lockfile.pins(lock_path)
    assert pins, f"{lock_path.name} pins nothing"
    for name, pin in pins.items():
        assert pin.version, f"{lock_path.name}: {pin.requirement} is not pinned with =="
        assert pin.hashes and all(lockfile.SHA256.fullmatch(h) for h in pin.hashes), f"{name} has no sha256 hash"
        assert pin.requirement.marker is None, f"{name}: the lock is for one platform, markers are resolved"
    needed = lockfile.closure(top)
    missing = sorted(set(needed) - set(pins))
    assert not missing, f"{lock_path.name} lacks {missing}: run `make lock`"
    extra = sorted(set(pins) - set(needed))
    assert not extra, f"{lock_path.name} pins {extra}, which nothing asks for: run `make lock`"
    checked = 0
    for name, asked in needed.items():
        version = pins[name].version
        for requirer, requirement in asked:
            # setup.cfg's requirements bind the lock; a dependency's own metadata binds it where the
            # version installed here is the one locked (this environment may have moved on since).
            if requirer is not None and importlib.metadata.version(requirer) != pins[requirer].version:
                continue
            checked += 1
            assert requirement.specifier.contains(version, prereleases=True), (
                f"{lock_path.name} pins {name}=={version}, but {requirer or 'movers3'} asks for {requirement}:"
                " run `make lock`"
            )
    assert checked >= len(top)


def test_the_runtime_lock_pins_every_dependency_of_movers3_metrics_with_hashes():
    check_lock_covers(lockfile.RUNTIME_LOCK, runtime_requirements())


def test_the_build_tools_lock_pins_pip_and_the_build_system_with_hashes():
    check_lock_covers(lockfile.BUILD_TOOLS_LOCK, build_requirements())


def test_the_locks_are_made_for_the_images_python_and_by_make_lock():
    (base,) = {stage.base for stage in dockerfile.stages()}
    image = dockerfile.global_args()[base.strip("${}")]
    match = REFERENCE.match(image)
    assert match and match["name"] == "python", image
    minor = ".".join(match["tag"].split(".")[:2])
    makefile = (ROOT / "Makefile").read_text()
    assert f"--python-version {minor} " in makefile and "--python-platform x86_64-unknown-linux-gnu" in makefile
    assert minor in SpecifierSet(setup_cfg()["options"]["python_requires"])
    for lock_path in (lockfile.RUNTIME_LOCK, lockfile.BUILD_TOOLS_LOCK):
        assert "#    make lock\n" in lock_path.read_text(), f"{lock_path.name} was not written by `make lock`"
        assert f"-o compose/{lock_path.name}" in makefile


def commands(run: str) -> list[list[str]]:
    """A RUN line's commands, split at `&&`."""
    return [shlex.split(part) for part in run.split("&&")]


def test_the_image_installs_from_the_locks_only():
    build, final = dockerfile.stages()
    copied = [shlex.split(args) for args in build.all("COPY")]
    lock_names = {Path(p).name: p for *sources, _ in copied for p in sources if p.endswith(".lock")}
    assert lock_names == {
        "requirements.lock": "compose/requirements.lock",
        "build-tools.lock": "compose/build-tools.lock",
    }
    installs = []
    for run in build.all("RUN"):
        for command in commands(run):
            if "pip" in command and "install" in command:
                installs.append(command)
            if "pip" in command and "wheel" in command:
                # Building the wheel neither fetches an unpinned build-system nor any dependency.
                assert {"--no-deps", "--no-build-isolation"} <= set(command), command
    from_locks = {}
    for command in installs:
        if "-r" in command:
            lock = command[command.index("-r") + 1]
            assert "--require-hashes" in command and "--only-binary" in command, command
            target = command[command.index("--python") + 1] if "--python" in command else command[0]
            from_locks[lock] = target
        else:
            # Only movers3's own wheel, and without dependencies: they all came from the lock.
            assert "--no-deps" in command and command[-1].startswith("$(ls") and "movers3-" in command[-1], command
            assert command[command.index("--python") + 1] == "$VENV/bin/python", command
    assert from_locks == {"build-tools.lock": "$TOOLS/bin/python", "requirements.lock": "$VENV/bin/python"}
    assert len(installs) == 3, installs
    assert not [run for run in final.all("RUN") if "pip" in run]


def image_references() -> list[tuple[str, str]]:
    """(where, image) for every image the project runs: the Dockerfile's bases (ARG defaults
    resolved), each compose service not built from the Dockerfile, the ECS task definition's."""
    args = dockerfile.global_args()
    found = [
        ("compose/Dockerfile FROM", re.sub(r"\$\{(\w+)\}", lambda m: args[m[1]], s.base)) for s in dockerfile.stages()
    ]

    class Loader(yaml.SafeLoader):
        pass

    def untagged(loader, _suffix, node):  # compose's !override and !reset
        if isinstance(node, yaml.MappingNode):
            return loader.construct_mapping(node, deep=True)
        if isinstance(node, yaml.SequenceNode):
            return loader.construct_sequence(node, deep=True)
        return loader.construct_scalar(node)

    Loader.add_multi_constructor("!", untagged)

    def walk(where, value):
        if isinstance(value, dict):
            if isinstance(value.get("image"), str) and "build" not in value:
                found.append((where, value["image"]))
            for child in value.values():
                walk(where, child)
        elif isinstance(value, list):
            for child in value:
                walk(where, child)

    for path in sorted(COMPOSE.glob("*.yml")):
        walk(f"compose/{path.name}", yaml.load(path.read_text(), Loader=Loader))
    for path in sorted(COMPOSE.glob("ecs/*.json")):
        walk(f"compose/ecs/{path.name}", json.loads(path.read_text()))
    return found


def test_every_image_is_an_exact_release():
    references = image_references()
    where = {w for w, _ in references}
    assert {"compose/Dockerfile FROM", "compose/docker-compose.yml", "compose/ecs/task-definition.json"} <= where
    assert len([r for w, r in references if w == "compose/docker-compose.yml"]) >= 3  # mariadb, s3proxy, prometheus
    loose = []
    for where_, reference in references:
        match = REFERENCE.match(reference)
        if not match or not (match["digest"] or (match["tag"] and EXACT_TAG.match(match["tag"]))):
            loose.append(f"{where_}: {reference}")
    assert not loose, f"images not pinned to an exact release: {loose}"


@pytest.mark.parametrize(
    "reference", ["mariadb:10.11", "mariadb", "s3proxy:latest", "python:3-slim", "prom/prometheus:v3"]
)
def test_a_loose_tag_is_refused(reference):
    match = REFERENCE.match(reference)
    assert match and not match["digest"] and not (match["tag"] and EXACT_TAG.match(match["tag"]))


def test_the_ecs_example_runs_this_release():
    task = json.loads((COMPOSE / "ecs" / "task-definition.json").read_text())
    assert task["containerDefinitions"][0]["image"].endswith(f"/movers3:{movers3.__version__}")


def test_license_and_changelog():
    config = setup_cfg()
    assert config["metadata"]["license"] == "MIT" and config["metadata"]["license_files"].split() == ["LICENSE"]
    license_text = (ROOT / "LICENSE").read_text()
    assert license_text.startswith("MIT License\n") and "Copyright (c) 2026 the movers3 authors" in license_text
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert "keepachangelog.com" in changelog
    # Keep a Changelog's sections; what is not released yet is under Unreleased, named by its version.
    sections = re.split(r"^## ", changelog, flags=re.MULTILINE)[1:]
    assert sections and sections[0].startswith("[Unreleased]\n"), "the first section is [Unreleased]"
    versions = [s.split("]", 1)[0].strip("[") for s in sections]
    assert f"Version {movers3.__version__} " in sections[0] or movers3.__version__ in versions
    for section in sections:
        assert set(re.findall(r"^### (.+)$", section, re.MULTILINE)) <= KEEP_A_CHANGELOG_TYPES, section[:40]
