"""tests/support/promql.py, which the dashboard's checks and its picture rely on: what it parses, what
it refuses, and its arithmetic on small hand-computed series."""

import math

import pytest

from tests.support import promql
from tests.support.promql import Aggregation, Binary, Call, Number, Samples, Selector


def test_parses_the_dashboards_kinds_of_queries():
    tree = promql.parse('sum(max by (state) (m{state=~"a|b", x!="y"})) / sum(rate(c_total[2m]))')
    assert tree == Binary(
        "/",
        Aggregation(
            "sum", (), Aggregation("max", ("state",), Selector("m", (("state", "=~", "a|b"), ("x", "!=", "y"))))
        ),
        Aggregation("sum", (), Call("rate", (Selector("c_total", (), 120.0),))),
    )
    quantile = promql.parse("histogram_quantile(0.99, sum(rate(h_bucket[1m])) by (le))")
    assert quantile == Call(
        "histogram_quantile",
        (Number(0.99), Aggregation("sum", ("le",), Call("rate", (Selector("h_bucket", (), 60.0),)))),
    )
    assert list(promql.groupings(quantile)) == [(("le",), [Selector("h_bucket", (), 60.0)])]
    assert promql.parse("count(g < 60)") == Aggregation("count", (), Binary("<", Selector("g"), Number(60.0)))


@pytest.mark.parametrize(
    "text", ["topk(3, m)", "m offset 5m", 'm{a~"b"}', "sum(m", "rate(m[1m]) and m", "sum without (a) (m)"]
)
def test_refuses_what_it_does_not_know(text):
    with pytest.raises(promql.PromQLError):
        promql.parse(text)


def test_rate_and_increase_handle_a_reset_and_extrapolate_as_prometheus_does():
    samples = Samples()
    for t, v in [(0, 0), (10, 10), (20, 20), (30, 5), (40, 15)]:  # restarted between 20 and 30
        samples.add(t, "c_total", {"instance": "a"}, v)
    # Started from zero at t=0: nothing to extrapolate before it, and the last sample is at the end.
    (increase,) = promql.evaluate(promql.parse("increase(c_total[1m])"), samples, 40).values()
    assert increase == pytest.approx(10 + 10 + 5 + 10)
    (rate,) = promql.evaluate(promql.parse("rate(c_total[60s])"), samples, 40).values()
    assert rate == pytest.approx(35 / 60)  # per second of the window, as Prometheus divides
    # Window (15, 45]: samples 20..40 (delta 5 + 10 = 15, one every 10 s); 5 s to the start and to the
    # end, each under 1.1 intervals, so extrapolated over 30 s of 20 sampled: 15 * 30 / 20.
    (later,) = promql.evaluate(promql.parse("increase(c_total[30s])"), samples, 45).values()
    assert later == pytest.approx(22.5)
    assert promql.evaluate(promql.parse("rate(c_total[5s])"), samples, 40) == {}  # one sample: no rate


def test_aggregations_filters_and_staleness():
    samples = Samples()
    samples.add(0, "g", {"instance": "a", "state": "done"}, 3)
    samples.add(0, "g", {"instance": "b", "state": "done"}, 3)
    samples.add(0, "g", {"instance": "b", "state": "failed"}, 70)
    by_state = promql.evaluate(promql.parse("max by (state) (g)"), samples, 1)
    assert by_state == {frozenset({("state", "done")}): 3.0, frozenset({("state", "failed")}): 70.0}
    assert promql.evaluate(promql.parse("count(g < 60)"), samples, 1) == {frozenset(): 2.0}
    assert promql.evaluate(promql.parse("sum(g) / 2"), samples, 1) == {frozenset(): 38.0}
    samples.mark_stale(5, {"instance": "b"})
    assert promql.evaluate(promql.parse("count(g)"), samples, 6) == {frozenset(): 1.0}
    assert promql.evaluate(promql.parse("count(g)"), samples, 4) == {frozenset(): 3.0}  # before it went stale
    empty = promql.evaluate(promql.parse('sum(g) / sum(g{state="x"})'), samples, 1)
    assert empty == {}  # no right-hand side: no result, as in Prometheus


def test_histogram_quantile_interpolates_within_the_bucket():
    samples = Samples()
    # 10 observations: 4 under 0.1, 4 between 0.1 and 0.5, 2 between 0.5 and 1.
    for le, count in (("0.1", 4), ("0.5", 8), ("1.0", 10), ("+Inf", 10)):
        samples.add(0, "h_bucket", {"le": le}, 0)
        samples.add(10, "h_bucket", {"le": le}, count)
    q = "histogram_quantile({}, sum by (le) (rate(h_bucket[1m])))"
    assert promql.evaluate(promql.parse(q.format(0.5)), samples, 10) == {frozenset(): pytest.approx(0.2)}
    assert promql.evaluate(promql.parse(q.format(0.2)), samples, 10) == {frozenset(): pytest.approx(0.05)}
    assert promql.evaluate(promql.parse(q.format(0.9)), samples, 10) == {frozenset(): pytest.approx(0.75)}
    assert math.isinf(promql.evaluate(promql.parse("1 / 0"), samples, 0))
