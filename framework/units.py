"""Durations and times read from users, and number formats shared by every
reader (CLI and TUI), so they agree."""

from __future__ import annotations

import datetime as dt
import math
import re
import time

DASH = "—"

_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0, "y": 31536000.0}
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h|d|w|y))+|\d+(?:\.\d+)?")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")


def parse_duration(text: str) -> float:
    """Seconds in a duration: a number of seconds (``1.5``), or number-unit
    parts as Prometheus writes them (``500ms``, ``2s``, ``1.5m``, ``1h30m``,
    ``7d``, ``1w``, ``1y``), in any case. The one grammar of ``--since``, the
    filter language and the configuration; ValueError otherwise."""
    cleaned = text.strip().lower()
    if not _DURATION.fullmatch(cleaned):
        raise ValueError(f"not a duration: {text!r} (use e.g. 500ms, 2s, 30m, 1h30m, 7d)")
    if cleaned[-1].isdigit():
        return float(cleaned)
    return sum(float(n) * _UNIT_S[unit] for n, unit in _DURATION_PART.findall(cleaned))


def parse_time(text: str, now_ns: int | None = None) -> int:
    """Nanoseconds since the epoch (the unit of every stored time) for a
    duration back from now (``15m``, ``2d``) or an ISO 8601 date or time
    (``2025-01-31``, ``2025-01-31T12:00``; local time unless it has an
    offset); ValueError otherwise."""
    now_ns = time.time_ns() if now_ns is None else now_ns
    try:
        return now_ns - int(parse_duration(text) * 1e9)
    except ValueError:
        pass
    try:
        moment = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"not a time: {text!r} (use a duration back from now like 2h or 7d, "
                         "or an ISO date such as 2025-01-31 or 2025-01-31T12:00)") from None
    if moment.tzinfo is None:
        moment = moment.astimezone()  # naive: local time
    return int(moment.timestamp() * 1e9)


def format_cost(usd: float | None) -> str:
    """US dollars. None is *unpriced* and shown as a dash, never as $0; a cost
    under a cent keeps three significant digits ($0.000123), so a cheap call
    never reads as free."""
    if usd is None:
        return DASH
    if usd == 0:
        return "$0.00"
    magnitude = abs(usd)
    if magnitude >= 100:
        return f"${usd:,.0f}"
    if magnitude >= 0.01:
        return f"${usd:,.2f}" if magnitude >= 1 else f"${usd:.4f}"
    decimals = min(10, -math.floor(math.log10(magnitude)) + 2)
    return f"${usd:.{decimals}f}".rstrip("0")


def format_duration(seconds: float | None) -> str:
    """A short duration: 215µs, 250ms, 2.50s, 2m05s, 1h03m; a dash when unknown."""
    if seconds is None:
        return DASH
    if seconds < 0:
        return f"{seconds:.3f}s"  # clock skew: shown, not hidden
    if seconds < 0.001:
        return f"{seconds * 1e6:.0f}µs"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.2f}s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{rest:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
