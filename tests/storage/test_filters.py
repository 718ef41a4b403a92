from __future__ import annotations

import datetime as dt

import pytest

from chainsight.storage.filters import FilterError, parse_duration, parse_filter
from chainsight.storage.query import TraceFilter

NOW = 1_700_000_000_000_000_000


def test_full_syntax() -> None:
    f = parse_filter(
        'status:error model:gpt-4o cost>0.01 user:alice session:s1 tag:prod name:rag '
        'latency>2s since:1h "free text" bare words',
        now_ns=NOW,
    )
    assert f == TraceFilter(
        status="error", model="gpt-4o", min_cost=0.01, user_id="alice", session_id="s1",
        tag="prod", name="rag", min_latency_s=2.0, since_ns=NOW - 3600 * 10**9,
        text="free text bare words",
    )


def test_values() -> None:
    assert parse_filter("latency>500ms").min_latency_s == pytest.approx(0.5)
    assert parse_filter("latency>=1.5m").min_latency_s == pytest.approx(90.0)
    assert parse_filter("since:2d", now_ns=NOW).since_ns == NOW - 2 * 86400 * 10**9
    iso = parse_filter("since:2024-05-01T12:00:00+00:00").since_ns
    assert iso == int(dt.datetime(2024, 5, 1, 12, tzinfo=dt.UTC).timestamp()) * 10**9
    assert parse_filter('name:"my chain"').name == "my chain"
    assert parse_filter('"status:error"').text == "status:error"  # quoted is text
    assert parse_filter("").text is None
    assert parse_duration("3") == 3.0


@pytest.mark.parametrize(
    ("text", "token", "column", "words"),
    [
        ("status:error modle:x", "modle:x", 14, "unknown field 'modle' at column 14; known: status"),
        ("latency>fast", "latency>fast", 1, "not a duration"),
        ("cost>cheap", "cost>cheap", 1, "not a cost"),
        ("a since:yesterday", "since:yesterday", 3, "not a time"),
        ("status:weird", "status:weird", 1, "status must be one of"),
        ("user>3", "user>3", 1, "only works with cost and latency"),
        ("cost:3", "cost:3", 1, "use cost>VALUE"),
        ("model:", "model:", 1, "missing value"),
        ('x "open', '"open', 3, "unclosed quote at column 3"),
    ],
)
def test_errors_name_token_and_column(text: str, token: str, column: int, words: str) -> None:
    with pytest.raises(FilterError) as info:
        parse_filter(text)
    assert words in str(info.value)
    assert f"column {column}" in str(info.value)
    assert info.value.column == column and info.value.token == token
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(("text", "seconds"), [
    ("1.5", 1.5), ("500ms", 0.5), ("2s", 2.0), ("1.5m", 90.0), ("2H", 7200.0), ("1h30m", 5400.0),
    ("7d", 604800.0), ("1w", 604800.0), (" 30m ", 1800.0),
])
def test_one_duration_grammar_for_since_filters_and_configuration(text: str, seconds: float) -> None:
    from chainsight.framework.commands import parse_duration as command_duration
    from chainsight.framework.units import parse_duration as core_duration

    assert core_duration(text) == parse_duration(text) == command_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "m", "1x", "1h-30m", "-5s", "nan", "inf", "1e3s"])
def test_what_is_not_a_duration(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)
