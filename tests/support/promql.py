"""The part of PromQL that compose/grafana's dashboard uses: a parser, for the test that checks every
metric and label the dashboard asks for is one the workers export, and an evaluator over scraped
samples, for the picture of the dashboard (`make dashboard-png`).

What it knows: selectors with label matchers (`=`, `!=`, `=~`, `!~`) and a range (`[1m]`), numbers,
`sum`/`max`/`min`/`avg`/`count` with `by (...)`, `rate`, `increase`, `histogram_quantile`, and the
binary operators `+ - * /` and the comparisons, which filter as in Prometheus. Anything else is a
syntax error, so a query the dashboard gains beyond this fails the test rather than slipping past it.

The evaluator follows Prometheus: `rate` and `increase` are the counter's increase between the first
and last samples of the window (resets handled), extrapolated towards the window's edges as
Prometheus's extrapolatedRate does, `rate` per second of the window; an instant selector takes the
last sample within five minutes, unless the series went stale (its target stopped answering) since.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections import defaultdict
from collections.abc import Iterator

AGGREGATIONS = ("sum", "max", "min", "avg", "count")
FUNCTIONS = {"rate": 1, "increase": 1, "histogram_quantile": 2}
COMPARISONS = ("==", "!=", "<=", ">=", "<", ">")
LOOKBACK_SECONDS = 300.0
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_TOKEN = re.compile(
    r"""\s*(?:
      (?P<number>\d+(?:\.\d+)?(?:e[+-]?\d+)?)(?![\w])
    | (?P<duration>\[\d+(?:ms|s|m|h|d)\])
    | (?P<string>"(?:[^"\\]|\\.)*")
    | (?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)
    | (?P<op>=~|!~|==|!=|<=|>=|[-+*/<>=(){},])
    )""",
    re.VERBOSE,
)

Labels = frozenset  # of (name, value) pairs, without __name__
Vector = dict  # Labels -> float


class PromQLError(ValueError):
    pass


@dataclasses.dataclass(frozen=True)
class Number:
    value: float


@dataclasses.dataclass(frozen=True)
class Selector:
    name: str
    matchers: tuple[tuple[str, str, str], ...] = ()  # (label, op, value)
    range: float | None = None  # seconds, for a range selector


@dataclasses.dataclass(frozen=True)
class Aggregation:
    op: str
    by: tuple[str, ...]
    expr: object


@dataclasses.dataclass(frozen=True)
class Call:
    function: str
    args: tuple


@dataclasses.dataclass(frozen=True)
class Binary:
    op: str
    lhs: object
    rhs: object


# -- parsing --------------------------------------------------------------------------------


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens, at = [], 0
    text = text.rstrip()
    while at < len(text):
        m = _TOKEN.match(text, at)
        if not m or m.end() == at:
            raise PromQLError(f"cannot read {text[at:]!r}")
        kind = m.lastgroup
        assert kind is not None
        tokens.append((kind, m.group(kind)))
        at = m.end()
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.at = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def take(self, value: str | None = None, kind: str | None = None) -> str:
        token = self.peek()
        if token is None or (value is not None and token[1] != value) or (kind is not None and token[0] != kind):
            raise PromQLError(f"{self.text!r}: expected {value or kind}, found {token}")
        self.at += 1
        return token[1]

    def parse(self) -> object:
        node = self.comparison()
        if self.peek() is not None:
            raise PromQLError(f"{self.text!r}: unexpected {self.peek()}")
        return node

    def comparison(self) -> object:
        node = self.additive()
        while (t := self.peek()) and t[0] == "op" and t[1] in COMPARISONS:
            node = Binary(self.take(), node, self.additive())
        return node

    def additive(self) -> object:
        node = self.multiplicative()
        while (t := self.peek()) and t[1] in ("+", "-"):
            node = Binary(self.take(), node, self.multiplicative())
        return node

    def multiplicative(self) -> object:
        node = self.primary()
        while (t := self.peek()) and t[1] in ("*", "/"):
            node = Binary(self.take(), node, self.primary())
        return node

    def primary(self) -> object:
        kind, value = self.peek() or ("", "")
        if kind == "number":
            self.take()
            return Number(float(value))
        if value == "(":
            self.take("(")
            node = self.comparison()
            self.take(")")
            return node
        if kind != "name":
            raise PromQLError(f"{self.text!r}: unexpected {value!r}")
        self.take()
        if value in AGGREGATIONS:
            by = self.by()
            self.take("(")
            expr = self.comparison()
            self.take(")")
            return Aggregation(value, by or self.by(), expr)
        if value in FUNCTIONS:
            self.take("(")
            args = [self.comparison()]
            while self.peek() == ("op", ","):
                self.take(",")
                args.append(self.comparison())
            self.take(")")
            if len(args) != FUNCTIONS[value]:
                raise PromQLError(f"{self.text!r}: {value} takes {FUNCTIONS[value]} arguments")
            return Call(value, tuple(args))
        return self.selector(value)

    def by(self) -> tuple[str, ...]:
        if self.peek() != ("name", "by"):
            return ()
        self.take("by")
        self.take("(")
        labels = [self.take(kind="name")]
        while self.peek() == ("op", ","):
            self.take(",")
            labels.append(self.take(kind="name"))
        self.take(")")
        return tuple(labels)

    def selector(self, name: str) -> Selector:
        matchers = []
        if self.peek() == ("op", "{"):
            self.take("{")
            while self.peek() != ("op", "}"):
                label = self.take(kind="name")
                op = self.take(kind="op")
                if op not in ("=", "!=", "=~", "!~"):
                    raise PromQLError(f"{self.text!r}: {op!r} is no label matcher")
                matchers.append((label, op, self.take(kind="string")[1:-1]))
                if self.peek() == ("op", ","):
                    self.take(",")
            self.take("}")
        window = None
        if (t := self.peek()) and t[0] == "duration":
            amount, unit = re.fullmatch(r"\[(\d+)(\w+)\]", self.take()).groups()  # type: ignore[union-attr]
            window = int(amount) * _UNITS[unit]
        return Selector(name, tuple(matchers), window)


def parse(text: str) -> object:
    return _Parser(text).parse()


def _children(node: object) -> tuple:
    if isinstance(node, Aggregation):
        return (node.expr,)
    if isinstance(node, Call):
        return node.args
    if isinstance(node, Binary):
        return (node.lhs, node.rhs)
    return ()


def selectors(node: object) -> Iterator[Selector]:
    if isinstance(node, Selector):
        yield node
    for child in _children(node):
        yield from selectors(child)


def groupings(node: object) -> Iterator[tuple[tuple[str, ...], list[Selector]]]:
    """Each `by (...)` with the selectors under it: the labels it groups by must be theirs."""
    if isinstance(node, Aggregation) and node.by:
        yield node.by, list(selectors(node.expr))
    for child in _children(node):
        yield from groupings(child)


# -- evaluation -----------------------------------------------------------------------------


class Samples:
    """Scraped samples: per series (name and labels), its (time, value) points in time order; a value
    of None is a staleness marker (the series' target stopped answering)."""

    def __init__(self) -> None:
        self.series: dict[tuple[str, Labels], list[tuple[float, float | None]]] = defaultdict(list)

    def add(self, t: float, name: str, labels: dict[str, str], value: float | None) -> None:
        self.series[(name, Labels(labels.items()))].append((t, value))

    def mark_stale(self, t: float, where: dict[str, str]) -> None:
        """Every series with these labels that has a value ends at `t`."""
        for (_name, labels), points in self.series.items():
            if set(where.items()) <= labels and points and points[-1][1] is not None:
                points.append((t, None))

    def matching(self, selector: Selector) -> Iterator[tuple[Labels, list[tuple[float, float | None]]]]:
        for (name, labels), points in self.series.items():
            if name == selector.name and all(matches(dict(labels).get(k, ""), op, v) for k, op, v in selector.matchers):
                yield labels, points


def matches(actual: str, op: str, wanted: str) -> bool:
    if op == "=":
        return actual == wanted
    if op == "!=":
        return actual != wanted
    found = re.fullmatch(wanted, actual) is not None
    return found if op == "=~" else not found


def evaluate(node: object, samples: Samples, t: float) -> Vector | float:
    if isinstance(node, Number):
        return node.value
    if isinstance(node, Selector):
        result = {}
        for labels, points in samples.matching(node):
            last = [(pt, v) for pt, v in points if pt <= t and pt > t - LOOKBACK_SECONDS]
            if last and last[-1][1] is not None:
                result[labels] = last[-1][1]
        return result
    if isinstance(node, Call):
        if node.function == "histogram_quantile":
            q = evaluate(node.args[0], samples, t)
            buckets = evaluate(node.args[1], samples, t)
            assert isinstance(q, float) and isinstance(buckets, dict)
            return _quantile(q, buckets)
        (arg,) = node.args
        if not isinstance(arg, Selector) or arg.range is None:
            raise PromQLError(f"{node.function} needs a range selector")
        result = {}
        for labels, points in samples.matching(arg):
            window = [(pt, v) for pt, v in points if t - arg.range < pt <= t and v is not None]
            increase = _increase(window, t - arg.range, t)
            if increase is not None:
                result[labels] = increase / arg.range if node.function == "rate" else increase
        return result
    if isinstance(node, Aggregation):
        inner = evaluate(node.expr, samples, t)
        assert isinstance(inner, dict)
        groups: dict[Labels, list[float]] = defaultdict(list)
        for labels, value in inner.items():
            groups[Labels((k, v) for k, v in labels if k in node.by)].append(value)
        combine = {"sum": sum, "max": max, "min": min, "count": len, "avg": lambda vs: sum(vs) / len(vs)}[node.op]
        return {labels: float(combine(values)) for labels, values in groups.items()}
    if isinstance(node, Binary):
        return _binary(node.op, evaluate(node.lhs, samples, t), evaluate(node.rhs, samples, t))
    raise PromQLError(f"cannot evaluate {node!r}")


def _increase(points: list, start: float, end: float) -> float | None:
    """Prometheus's extrapolatedRate for a counter, before the division by the window."""
    if len(points) < 2:
        return None
    delta, previous = 0.0, points[0][1]
    for _, value in points[1:]:
        delta += value - previous if value >= previous else value  # a reset starts from zero
        previous = value
    (first_t, first_v), last_t = points[0], points[-1][0]
    sampled = last_t - first_t
    average = sampled / (len(points) - 1)
    to_start, to_end = first_t - start, end - last_t
    if delta > 0 and first_v >= 0:
        to_start = min(to_start, sampled * (first_v / delta))  # a counter does not go below zero
    threshold = average * 1.1
    interval = sampled + (to_start if to_start < threshold else average / 2)
    interval += to_end if to_end < threshold else average / 2
    return delta * interval / sampled


def _quantile(q: float, buckets: Vector) -> Vector:
    """Prometheus's histogram_quantile: linear within the bucket the rank falls in."""
    histograms: dict[Labels, list[tuple[float, float]]] = defaultdict(list)
    for labels, value in buckets.items():
        le = dict(labels)["le"]
        histograms[Labels((k, v) for k, v in labels if k != "le")].append((float(le), value))
    result = {}
    for labels, pairs in histograms.items():
        pairs.sort()
        total = pairs[-1][1]
        if not math.isinf(pairs[-1][0]) or total <= 0:
            continue
        rank, lower, below = q * total, 0.0, 0.0
        for upper, count in pairs:
            if count >= rank:
                if math.isinf(upper):
                    result[labels] = lower  # the highest finite bound, as Prometheus answers
                else:
                    result[labels] = lower + (upper - lower) * (
                        (rank - below) / (count - below) if count > below else 0
                    )
                break
            lower, below = upper, count
    return result


def _apply(op: str, a: float, b: float) -> float | None:
    if op in COMPARISONS:
        keep = {"==": a == b, "!=": a != b, "<": a < b, ">": a > b, "<=": a <= b, ">=": a >= b}[op]
        return a if keep else None
    if op == "/":
        return a / b if b else (math.nan if a == 0 else math.copysign(math.inf, a))
    return {"+": a + b, "-": a - b, "*": a * b}[op]


def _binary(op: str, lhs: Vector | float, rhs: Vector | float) -> Vector | float:
    if isinstance(lhs, float) and isinstance(rhs, float):
        value = _apply(op, lhs, rhs)
        return math.nan if value is None else value
    result = {}
    if isinstance(lhs, dict) and isinstance(rhs, dict):
        pairs = [(labels, value, rhs[labels]) for labels, value in lhs.items() if labels in rhs]
    elif isinstance(lhs, dict):
        pairs = [(labels, value, rhs) for labels, value in lhs.items()]
    else:
        assert isinstance(rhs, dict)
        pairs = [(labels, lhs, value) for labels, value in rhs.items()]
    for labels, a, b in pairs:
        value = _apply(op, float(a), float(b))
        if value is not None:
            result[labels] = value
    return result
