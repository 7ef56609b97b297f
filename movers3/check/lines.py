"""One check, one line: ok, problem, or unknown (could not be proven either way)."""

from __future__ import annotations

import dataclasses

OK, PROBLEM, UNKNOWN = "ok", "problem", "unknown"


@dataclasses.dataclass(frozen=True)
class Check:
    name: str
    status: str  # OK, PROBLEM or UNKNOWN
    detail: str

    def as_dict(self) -> dict[str, str]:
        return dataclasses.asdict(self)
