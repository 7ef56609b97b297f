"""Docker Compose's variable interpolation, for the tests that run what a compose file says without a
Docker engine. The rules are the Compose Specification's ("Interpolation"): `$$` is a literal `$`;
`$NAME` and `${NAME}` are the variable's value, or empty when it is unset; `${NAME:-default}` (unset
or empty) and `${NAME-default}` (unset) give a default; `${NAME:?message}` and `${NAME?message}`
refuse a missing value; `${NAME:+other}` and `${NAME+other}` give `other` when it is set; defaults,
messages and alternatives are interpolated themselves (`${A:-${B:-c}}`). A `$` that starts none of
these is kept as it is."""

from __future__ import annotations

import re
from collections.abc import Mapping

NAME = re.compile(r"[_a-zA-Z][_a-zA-Z0-9]*")
# After a braced name: the operator, longest first (`:-` before `-`).
OPERATORS = (":-", ":?", ":+", "-", "?", "+")


class InterpolationError(ValueError):
    """A required variable is missing, or a `${` is never closed."""


def interpolate(text: str, environ: Mapping[str, str]) -> str:
    out, i = [], 0
    while i < len(text):
        char = text[i]
        if char != "$":
            out.append(char)
            i += 1
            continue
        following = text[i + 1 : i + 2]
        if following == "$":
            out.append("$")
            i += 2
        elif following == "{":
            end = _closing_brace(text, i + 2)
            out.append(_braced(text[i + 2 : end], environ))
            i = end + 1
        elif match := NAME.match(text, i + 1):
            out.append(environ.get(match.group(0), ""))
            i = match.end()
        else:
            out.append("$")
            i += 1
    return "".join(out)


def _closing_brace(text: str, start: int) -> int:
    """The index of the `}` that closes a `${` whose body starts at `start`; nested `${...}` count,
    `$$` does not open one."""
    depth, i = 1, start
    while i < len(text):
        if text.startswith("$$", i):
            i += 2
            continue
        if text.startswith("${", i):
            depth += 1
            i += 2
            continue
        if text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise InterpolationError(f"unclosed ${{ in {text!r}")


def _braced(body: str, environ: Mapping[str, str]) -> str:
    match = NAME.match(body)
    if match is None:
        raise InterpolationError(f"invalid interpolation format: ${{{body}}}")
    name, rest = match.group(0), body[match.end() :]
    value = environ.get(name)
    if not rest:
        return value or ""
    operator = next((op for op in OPERATORS if rest.startswith(op)), None)
    if operator is None:
        raise InterpolationError(f"invalid interpolation format: ${{{body}}}")
    operand = rest[len(operator) :]
    present = bool(value) if operator.startswith(":") else value is not None
    kind = operator[-1]
    if kind == "-":
        return value if present and value is not None else interpolate(operand, environ)
    if kind == "?":
        if present and value is not None:
            return value
        raise InterpolationError(f"required variable {name} is missing a value: {interpolate(operand, environ)}")
    return interpolate(operand, environ) if present else ""  # "+"
