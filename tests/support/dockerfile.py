"""compose/Dockerfile read as a list of stages and instructions, for the tests that check it and run
its build stage without Docker."""

from __future__ import annotations

import dataclasses
import re
import shlex
from pathlib import Path

DOCKERFILE = Path(__file__).resolve().parents[2] / "compose" / "Dockerfile"


@dataclasses.dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]]

    def all(self, instruction: str) -> list[str]:
        return [args for name, args in self.instructions if name == instruction]

    def one(self, instruction: str) -> str:
        (args,) = self.all(instruction)
        return args


def stages(path: Path = DOCKERFILE) -> list[Stage]:
    text = re.sub(r"\\\n\s*", " ", path.read_text())  # continuation lines joined
    found: list[Stage] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, rest = line.partition(" ")
        instruction, rest = instruction.upper(), rest.strip()
        if instruction == "FROM":
            base, _, name = rest.partition(" AS ")
            found.append(Stage(base.strip(), name.strip() or None, []))
        elif found:
            found[-1].instructions.append((instruction, rest))
    return found


def env_pairs(args: str) -> dict[str, str]:
    """`ENV A=1 B="two words"` as a dict."""
    return dict(pair.split("=", 1) for pair in shlex.split(args))


def global_args(path: Path = DOCKERFILE) -> dict[str, str]:
    """The defaults of the ARGs declared before the first FROM (the ones a FROM line can use)."""
    found: dict[str, str] = {}
    for line in path.read_text().splitlines():
        instruction, _, rest = line.strip().partition(" ")
        if instruction.upper() == "FROM":
            break
        if instruction.upper() == "ARG" and "=" in rest:
            name, _, value = rest.strip().partition("=")
            found[name] = value
    return found
