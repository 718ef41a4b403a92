"""Short, fixed-width formats for numbers shown in tables and panes."""

from __future__ import annotations

import datetime as dt
from typing import Final

from chainsight.framework.units import format_cost, format_duration

DASH: Final = "—"


def duration(seconds: float | None) -> str:
    return format_duration(seconds)


def cost(usd: float | None) -> str:
    """Dollars; None is *unpriced* and shown as a dash, never $0."""
    return format_cost(usd)


def tokens(count: int | None) -> str:
    if count is None:
        return DASH
    if count < 10_000:
        return str(count)
    if count < 1_000_000:
        return f"{count / 1000:.1f}k"
    return f"{count / 1e6:.1f}M"


def number(value: float | None, digits: int = 2) -> str:
    if value is None:
        return DASH
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.{digits}f}"


def size(value: float | None) -> str:
    """Bytes in binary units."""
    if value is None:
        return DASH
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024:
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    return f"{value:.1f}TiB"


def rate(value: float | None) -> str:
    """A per-second rate with three significant digits."""
    if value is None:
        return DASH
    return f"{value:,.0f}/s" if value >= 100 else f"{value:.3g}/s"


def percent(rate: float | None) -> str:
    return DASH if rate is None else f"{rate * 100:.1f}%"


def clock(ns: int | None) -> str:
    """Local wall time of a timestamp (UTC, so snapshots do not depend on the machine)."""
    if ns is None:
        return DASH
    return dt.datetime.fromtimestamp(ns / 1e9, tz=dt.UTC).strftime("%m-%d %H:%M:%S")


def ago(ns: int | None, now_ns: int) -> str:
    """How long before ``now_ns``: "12s", "5m", "3h", "2d"."""
    if ns is None:
        return DASH
    seconds = max(0.0, (now_ns - ns) / 1e9)
    if seconds < 60:
        return f"{seconds:.0f}s ago"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m ago"
    if seconds < 86400:
        return f"{seconds / 3600:.0f}h ago"
    return f"{seconds / 86400:.0f}d ago"
