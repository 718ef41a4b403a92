"""The filter-bar syntax, parsed into a :class:`~chainsight.storage.query.TraceFilter`.

    status:error model:gpt-4o cost>0.01 latency>2s user:alice session:s1
    tag:prod name:rag since:1h until:2024-05-01T12:00 "free text" bare words

``field:value`` (or ``field=value``) for equality-like fields, ``cost>``/
``cost>=`` and ``latency>``/``latency>=`` for thresholds; quoted phrases and
bare words are the free-text search (joined by spaces). ``since``/``until``
take a relative age (``30s``, ``15m``, ``1h``, ``2d``, ``1w``: that long ago)
or an ISO 8601 time (naive times are local). Durations: ``500ms``, ``2s``,
``1.5m``, ``1h`` (a bare number is seconds). Errors name the token and its
1-based column.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace
from typing import Any, Final

from chainsight.framework.units import parse_duration, parse_time
from chainsight.storage.query import TraceFilter

FIELDS: Final[dict[str, str]] = {
    "status": "status",
    "name": "name",
    "model": "model",
    "user": "user_id",
    "user_id": "user_id",
    "session": "session_id",
    "session_id": "session_id",
    "tag": "tag",
    "since": "since_ns",
    "until": "until_ns",
    "cost": "min_cost",
    "latency": "min_latency_s",
    "duration": "min_latency_s",
    "text": "text",
}
_THRESHOLDS: Final = frozenset({"min_cost", "min_latency_s"})
_FIELD_TOKEN = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(:|>=|>|=)(.*)$", re.S)
STATUSES: Final = ("ok", "error", "unset")


class FilterError(ValueError):
    """A filter string that cannot be parsed; the message names token and column."""

    def __init__(self, message: str, token: str = "", column: int = 0) -> None:
        super().__init__(message)
        self.token = token
        self.column = column


def _tokens(text: str) -> Iterator[tuple[str, int, bool]]:
    """(token, 1-based column, quoted) for each whitespace-separated token;
    double quotes group words, also inside a value (``name:"my chain"``)."""
    i, n = 0, len(text)
    while i < n:
        if text[i].isspace():
            i += 1
            continue
        start, out, quoted = i, [], False
        while i < n and not text[i].isspace():
            if text[i] == '"':
                end = text.find('"', i + 1)
                if end < 0:
                    raise FilterError(
                        f"unclosed quote at column {i + 1}", text[start:], i + 1
                    )
                out.append(text[i + 1 : end])
                quoted = True
                i = end + 1
            else:
                out.append(text[i])
                i += 1
        yield "".join(out), start + 1, quoted and text[start] == '"'


def _convert(field: str, op: str, value: str, now_ns: int | None) -> Any:
    if field in _THRESHOLDS:
        if op not in (">", ">="):
            raise ValueError(f"use {'cost' if field == 'min_cost' else 'latency'}>VALUE")
        if field == "min_cost":
            try:
                return float(value.lstrip("$"))
            except ValueError:
                raise ValueError(f"not a cost: {value!r} (use e.g. 0.01)") from None
        return parse_duration(value)
    if op not in (":", "="):
        raise ValueError(f"'{op}' only works with cost and latency")
    if not value:
        raise ValueError("missing value")
    if field in ("since_ns", "until_ns"):
        return parse_time(value, now_ns)
    if field == "status" and value.lower() not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}")
    return value.lower() if field == "status" else value


def parse_filter(text: str, *, now_ns: int | None = None) -> TraceFilter:
    """Parse the filter bar; raises :class:`FilterError` naming token and column."""
    result = TraceFilter()
    words: list[str] = []
    for token, column, quoted in _tokens(text):
        m = None if quoted else _FIELD_TOKEN.match(token)
        if m is None:
            words.append(token)
            continue
        key, op, value = m.group(1), m.group(2), m.group(3)
        field = FIELDS.get(key.lower())
        if field is None:
            known = ", ".join(dict.fromkeys(FIELDS))
            raise FilterError(
                f"unknown field '{key}' at column {column}; known: {known}", token, column
            )
        try:
            converted = _convert(field, op, value, now_ns)
        except ValueError as error:
            raise FilterError(f"bad filter '{token}' at column {column}: {error}", token, column) from None
        if field == "text":
            words.append(converted)
        else:
            result = replace(result, **{field: converted})
    if words:
        result = replace(result, text=" ".join(words))
    return result
