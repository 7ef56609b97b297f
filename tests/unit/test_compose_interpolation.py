"""tests/support/compose.py against the Compose Specification's interpolation rules: the acceptance
test that runs compose's `init` command is only as faithful as this."""

import pytest

from tests.support.compose import InterpolationError, interpolate

ENV = {"SET": "value", "EMPTY": "", "FALLBACK": "fallback"}


@pytest.mark.parametrize(
    "text,expected",
    [
        ("plain", "plain"),
        ("$SET and ${SET}", "value and value"),
        ("${UNSET}|$UNSET|${EMPTY}", "||"),
        ("${SET:-d} ${EMPTY:-d} ${UNSET:-d}", "value d d"),
        ("${SET-d} ${EMPTY-d} ${UNSET-d}", "value  d"),
        ("${SET:+alt} ${EMPTY:+alt} ${UNSET:+alt}", "alt  "),
        ("${SET+alt} ${EMPTY+alt} ${UNSET+alt}", "alt alt "),
        ("${UNSET:-${FALLBACK}} ${UNSET:-${ALSO_UNSET:-deep}} ${UNSET:-$FALLBACK}", "fallback deep fallback"),
        ("${UNSET:-a default with spaces/and:colons}", "a default with spaces/and:colons"),
        ('if [ "$$LOAD_FILES" = "true" ]; then x; fi', 'if [ "$LOAD_FILES" = "true" ]; then x; fi'),
        ("$${SET} $$$SET $$$$", "${SET} $value $$"),
        ("${UNSET:-$$SET}", "$SET"),
        ("cost: $5, $ alone, $-x, trailing $", "cost: $5, $ alone, $-x, trailing $"),
        ("${SET}suffix $SET_MORE", "valuesuffix "),  # a bare name runs as far as name characters go
    ],
)
def test_interpolation_follows_the_compose_specification(text, expected):
    assert interpolate(text, ENV) == expected


@pytest.mark.parametrize(
    "text", ["${UNSET:?needed}", "${EMPTY:?needed}", "${UNSET?needed}", "${SET", "${1BAD}", "${SET/a/b}"]
)
def test_missing_required_values_and_bad_formats_are_refused(text):
    with pytest.raises(InterpolationError):
        interpolate(text, ENV)


def test_a_required_value_that_is_there_is_used():
    assert interpolate("${SET:?x} ${EMPTY?x}", ENV) == "value "
