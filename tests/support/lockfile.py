"""The image's lock files (compose/*.lock, written by `make lock`) read as pip reads them in
--require-hashes mode: one requirement per logical line, each with its hashes; and the closure of
a project's requirements as pip would install it on the image's Python and platform."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import re
from collections.abc import Iterable
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

COMPOSE = Path(__file__).resolve().parents[2] / "compose"
RUNTIME_LOCK = COMPOSE / "requirements.lock"
BUILD_TOOLS_LOCK = COMPOSE / "build-tools.lock"

HASH = re.compile(r"\s--hash=(\S+)")
SHA256 = re.compile(r"sha256:[0-9a-f]{64}")
# What `make lock` resolves for (--python-version 3.11 --python-platform x86_64-unknown-linux-gnu):
# the image's interpreter, whatever machine the tests run on.
IMAGE_MARKERS = {
    **default_environment(),
    "python_version": "3.11",
    "python_full_version": "3.11.0",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "os_name": "posix",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
}


@dataclasses.dataclass(frozen=True)
class Pin:
    requirement: Requirement
    hashes: tuple[str, ...]

    @property
    def version(self) -> str | None:
        """The exact version when the line pins one with `==` and nothing else."""
        (spec, *more) = list(self.requirement.specifier) or [None]
        if spec is None or more or spec.operator != "==" or "*" in spec.version:
            return None
        return spec.version


def pins(path: Path) -> dict[str, Pin]:
    """Canonical name -> pin. A line pip would read as an option, not a requirement, fails here."""
    found: dict[str, Pin] = {}
    text = re.sub(r"\\\n", " ", path.read_text())  # continuation lines joined, as pip does
    for line in text.splitlines():
        line = re.sub(r"(^|\s)#.*", "", line).strip()
        if not line:
            continue
        hashes = tuple(HASH.findall(" " + line))
        requirement = Requirement(HASH.sub("", " " + line).strip())
        found[canonicalize_name(requirement.name)] = Pin(requirement, hashes)
    return found


def applies(requirement: Requirement, extras: Iterable[str]) -> bool:
    """Whether pip installs this requirement on the image, for a requirer asked with these extras."""
    if requirement.marker is None:
        return True
    return any(requirement.marker.evaluate({**IMAGE_MARKERS, "extra": extra}) for extra in (*extras, ""))


def closure(top: Iterable[Requirement]) -> dict[str, list[tuple[str | None, Requirement]]]:
    """Every distribution `pip install` pulls in for these requirements, read from the installed
    distributions' metadata: canonical name -> (the requirer's canonical name, None for `top`; the
    requirement) for each requirement that asked for it."""
    asked: dict[str, list[tuple[str | None, Requirement]]] = {}
    extras_of: dict[str, set[str]] = {}
    todo: list[tuple[str | None, Requirement]] = [(None, r) for r in top if applies(r, ())]
    while todo:
        requirer, requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        new_extras = set(requirement.extras) - extras_of.get(name, set())
        first = name not in asked
        asked.setdefault(name, []).append((requirer, requirement))
        extras_of.setdefault(name, set()).update(requirement.extras)
        if not first and not new_extras:
            continue
        try:
            distribution = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            raise LookupError(f"{name} is not installed in this environment: `make venv` installs it") from None
        for line in distribution.requires or []:
            child = Requirement(line)
            if applies(child, extras_of[name]):
                todo.append((name, child))
    return asked
