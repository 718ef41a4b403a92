"""Number formats shared by every reader (CLI and TUI), so they agree."""

from __future__ import annotations

import math

DASH = "—"


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
