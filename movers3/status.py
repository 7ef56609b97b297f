"""`movers3 status`: counts and bytes per state, the rate of the last minute, the ETA, each seed's
progress, and the commonest error codes of failed rows (for `status --watch`)."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

from movers3 import routes
from movers3.ledger.reads import Counts
from movers3.ledger.schema import STATES

# "CopyObject: NoSuchKey: The specified key...", "HeadObject on the source: SlowDown: ...",
# "internal error: ValueError: ...": the error code is the second clause.
ERROR_CODE = re.compile(r"^[^:]{1,80}: ([A-Za-z][\w .-]{0,40}): ")


def status_dict(counts: Counts) -> dict:
    rate = counts.objects_per_second
    remaining = counts.rows["pending"] + counts.rows["in_progress"]
    return {
        "total": counts.total,
        **{state: counts.rows[state] for state in STATES},
        "bytes": {state: counts.bytes[state] for state in STATES},
        "bytes_total": sum(counts.bytes.values()),
        # done rows whose source `delete-source` removed: moved, not only copied
        "source_deleted": counts.source_deleted,
        "objects_per_second_last_minute": round(rate, 2),
        "bytes_per_second_last_minute": round(counts.bytes_per_second, 1),
        "eta_seconds": round(remaining / rate) if rate > 0 and remaining else None,
        "seeds": counts.seeds,
    }


def render_status(status: dict) -> str:
    lines = [f"{'state':<12} {'objects':>12} {'bytes':>16}"]
    for state in STATES:
        lines.append(f"{state:<12} {status[state]:>12,} {status['bytes'][state]:>16,}")
        if state == "done" and status.get("source_deleted"):
            lines.append(f"{'':<12} {status['source_deleted']:>12,}  of all rows: source deleted by delete-source")
    lines.append(f"{'total':<12} {status['total']:>12,} {status['bytes_total']:>16,}")
    eta = status["eta_seconds"]
    lines.append(
        f"rate (last minute): {status['objects_per_second_last_minute']} objects/s; "
        f"ETA: {duration(eta) if eta is not None else '-'}"
    )
    for seed in status["seeds"]:
        lines.append(
            f"seed {routes.route(seed['old_bucket'], seed['old_prefix'])}: {seed['state']}"
            f"{_seed_detail(seed)}, {seed['listed']:,} listed, {seed['added']:,} added"
            f"{_nonzero(seed, 'changed')}{_nonzero(seed, 'skipped')}{_nonzero(seed, 'vanished')}"
        )
    return "\n".join(lines)


def _seed_detail(seed: dict) -> str:
    parts = f", {seed.get('parts_finished', 0)}/{seed['parts']} parts" if seed.get("parts") else ""
    return f" (round {seed.get('round', 1)}{parts})"


def _nonzero(seed: dict, name: str) -> str:
    return f", {seed[name]:,} {name}" if seed.get(name) else ""


def error_code_of(message: str) -> str:
    """The error code in a recorded `last_error`, or its first clause when it names none."""
    match = ERROR_CODE.match(message)
    if match:
        return match.group(1)
    return message.split(": ", 1)[0][:60] or "(no message)"


def top_error_codes(errors: Iterable[tuple[str, int]], limit: int) -> list[tuple[str, int]]:
    """(last_error, count) pairs summed by error code, commonest first."""
    totals: Counter[str] = Counter()
    for message, count in errors:
        totals[error_code_of(message)] += count
    return totals.most_common(limit)


def duration(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"
