"""The public API for plugin commands: what a ``chainsight`` subcommand added
through the ``register_commands`` hook needs, in one stable module.

Plugins import from here, never from ``chainsight.framework.cli`` or the
``cli_*`` modules (their names may change; these will not)::

    from chainsight import hookimpl
    from chainsight.framework.commands import (
        Column, CommandError, open_store, parse_time, print_json, print_table, resolve_trace)

    def _configure(parser):
        parser.add_argument("trace_id")
        parser.add_argument("--since", default="7d")

    def _run(ns):
        since_ns = parse_time(ns.since)                # CommandError if it is not a time
        with open_store(ns.db) as store:               # never creates a store
            trace_id = resolve_trace(store, ns.trace_id)   # a short id is enough
            detail = store.get_trace(trace_id)
        ...
        return 0

    @hookimpl
    def register_commands(cli):
        cli.add("mycommand", "what it does", _configure, _run)

What ``run`` gets: the parsed ``argparse.Namespace`` with the command's own
arguments plus ``db`` (the store URL; the configured one when ``--db`` was
not given), ``json`` (``--json`` was given: print one JSON document on
stdout) and ``settings`` (the ``chainsight.framework.config.Settings`` read
from plugins.toml). It returns the exit status.

Errors: raise :class:`CommandError`; the CLI prints ``chainsight: error:
<message>`` on stderr and exits with its ``exit_status`` (a traceback only
with ``--debug``). A missing or misconfigured store raised by
:func:`open_store` is printed the same way.

Output: tables through :func:`print_table` (rich on a terminal, plain aligned
text in pipes; cells are never read as rich markup and control characters
are replaced, so stored text is safe to print), JSON through
:func:`print_json`, plain lines through :func:`print_lines`, values through
the ``fmt_*`` helpers and :func:`short_id`, URLs through
:func:`display_url` (never a password).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from chainsight.framework import units
from chainsight.framework.cli_render import (
    MISSING,
    Column,
    clean,
    fmt_cost,
    fmt_int,
    fmt_seconds,
    fmt_time,
    print_json,
    print_lines,
    print_table,
    short_id,
)

if TYPE_CHECKING:
    from chainsight.storage.query import Store

__all__ = [
    "MISSING",
    "Column",
    "CommandError",
    "clean",
    "display_url",
    "fmt_cost",
    "fmt_int",
    "fmt_seconds",
    "fmt_time",
    "open_store",
    "parse_duration",
    "parse_time",
    "print_json",
    "print_lines",
    "print_table",
    "resolve_span",
    "resolve_trace",
    "short_id",
]


class CommandError(Exception):
    """A user-facing error: the CLI prints ``chainsight: error: <message>`` on
    stderr and exits with ``exit_status`` (1 unless given)."""

    def __init__(self, message: str, *, exit_status: int = 1) -> None:
        super().__init__(message)
        self.exit_status = exit_status


# ---- times -------------------------------------------------------------------

def parse_duration(text: str) -> float:
    """``500ms``, ``2s``, ``1.5``, ``30m``, ``1h30m``, ``7d``, ``1w`` -> seconds
    (:func:`chainsight.framework.units.parse_duration`); :class:`CommandError`
    otherwise."""
    try:
        return units.parse_duration(text)
    except ValueError as exc:
        raise CommandError(str(exc)) from None


def parse_time(text: str, *, now_ns: int | None = None) -> int:
    """A duration back from now (``2h``, ``7d``) or an ISO date/time
    (``2025-01-31``, ``2025-01-31T12:00``, local time unless it has an
    offset) -> nanoseconds since the epoch, the unit of every stored time;
    :class:`CommandError` otherwise."""
    try:
        return units.parse_time(text, now_ns)
    except ValueError as exc:
        raise CommandError(str(exc)) from None


# ---- the store -----------------------------------------------------------------


def open_store(url: str) -> Store:
    """The store at ``url`` through the query API
    (``chainsight.storage.query.Store``: ``list_traces``, ``get_trace``,
    ``list_scores``, ``aggregates``...; its ``engine`` serves the functions of
    ``chainsight.storage.cost`` and ``chainsight.storage.quality``). Never
    creates one: where there is none it raises ``StoreNotFound``, which the CLI
    prints as one line. Close it when done (it is a context manager)."""
    from chainsight.storage.query import Store

    return Store(url, create=False)


def display_url(url: str) -> str:
    """``url`` with its password masked: the only form to print or log."""
    from chainsight.storage.engine import display_url as mask

    return mask(url)


def _several(matches: list[str]) -> str:
    return ", ".join(m[:16] for m in matches[:4]) + (", ..." if len(matches) > 4 else "")


def resolve_trace(store: Store, text: str) -> str:
    """The full id of the one trace whose id is ``text`` or ends or starts
    with it (the short id the CLI and the TUI show); :class:`CommandError`
    when none or several match. Store scores under the full id, never a short one."""
    matches = store.resolve_trace_id(text, limit=5) if text else []
    if len(matches) == 1:
        return str(matches[0])
    if not matches:
        raise CommandError(f"no trace matches {text!r} in {display_url(store.url)}")
    raise CommandError(f"{text!r} matches several traces ({_several(matches)}); give more of the id")


def resolve_span(store: Store, trace_id: str, text: str) -> str:
    """As :func:`resolve_trace`, for a span of the trace ``trace_id`` (a full id)."""
    matches = store.resolve_span_id(trace_id, text, limit=5) if text else []
    if len(matches) == 1:
        return str(matches[0])
    if not matches:
        raise CommandError(f"no span of trace {trace_id} matches {text!r}")
    raise CommandError(f"{text!r} matches several spans of trace {trace_id} ({_several(matches)}); "
                       "give more of the id")
