"""Built-in plugin ``sessions``: conversations and users, from the store.

* ``chainsight sessions [FILTER]``: sessions (traces grouped by
  ``session_id``) with their turns, first and last time, duration, tokens,
  cost, errors, feedback and check failures, most recently active first.
* ``chainsight session SESSION_ID``: one conversation as a transcript, turn
  by turn (each turn's trace id opens it with ``chainsight show``).
* ``chainsight users [FILTER]``: activity, spend and feedback per user.

FILTER is the trace filter language of ``chainsight traces``
(``since:1d model:gpt-4o``); the totals are those of the matching traces.
The figures come from ``chainsight.storage.sessions``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import TYPE_CHECKING, Any

from chainsight.framework import hookimpl
from chainsight.framework.commands import (
    MISSING,
    Column,
    CommandError,
    clean,
    display_url,
    fmt_cost,
    fmt_int,
    fmt_seconds,
    fmt_time,
    open_store,
    parse_time,
    print_json,
    print_lines,
    print_table,
    short_id,
)

if TYPE_CHECKING:
    from chainsight.framework.extension import CommandRegistry
    from chainsight.storage.query import TraceFilter
    from chainsight.storage.sessions import Activity

ORDERS = ("last", "first", "turns", "cost", "tokens", "errors")  # storage.sessions.ORDERS


def _configure_list(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("query", nargs="?", default=None, metavar="FILTER",
                        help="trace filter, e.g. 'since:1d model:gpt-4o' (totals are over the "
                             "matching traces)")
    if what == "sessions":
        parser.add_argument("--user", dest="user_id", metavar="USER", help="only this user's sessions")
    parser.add_argument("--since", help="only traces since (30m, 2h, 7d, or an ISO date)")
    parser.add_argument("--order", choices=ORDERS, default="last",
                        help="sort by (descending; default: last activity)")
    parser.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")


def _filters(ns: argparse.Namespace) -> TraceFilter:
    from chainsight.storage.filters import FilterError, parse_filter
    from chainsight.storage.query import TraceFilter

    try:
        filters = parse_filter(ns.query) if ns.query else TraceFilter()
    except FilterError as exc:
        raise CommandError(f"invalid filter {ns.query!r}: {exc}") from None
    if getattr(ns, "user_id", None):
        filters = dataclasses.replace(filters, user_id=ns.user_id)
    if ns.since:
        filters = dataclasses.replace(filters, since_ns=parse_time(ns.since))
    if ns.limit < 1:
        raise CommandError(f"--limit must be at least 1, not {ns.limit}")
    return filters


def _feedback(a: Activity) -> str:
    parts = []
    if a.thumbs_up or a.thumbs_down:
        parts.append(f"+{a.thumbs_up} -{a.thumbs_down}")
    if a.mean_rating is not None:
        parts.append(f"★{a.mean_rating:.1f} ({a.ratings})")
    return " ".join(parts) or MISSING


def _activity_json(a: Any) -> dict[str, Any]:
    data = dataclasses.asdict(a)
    data["duration_s"] = a.duration_s
    data["total_tokens"] = a.total_tokens
    return data


SESSION_COLUMNS = (
    Column("last active"),
    Column("session", max_width=40, flex=True),
    Column("user", max_width=24, flex=True),
    Column("turns", "right"),
    Column("first"),
    Column("duration", "right"),
    Column("tokens", "right"),
    Column("cost", "right"),
    Column("errors", "right"),
    Column("feedback"),
    Column("checks failed", "right"),
)


def _run_sessions(ns: argparse.Namespace) -> int:
    from chainsight.storage.sessions import list_sessions

    filters = _filters(ns)
    with open_store(ns.db) as store:
        sessions = list_sessions(store, filters, limit=ns.limit, order=ns.order)
    if ns.json:
        print_json([_activity_json(s) | {"turns": s.turns} for s in sessions])
        return 0
    if not sessions:
        sys.stderr.write(f"no sessions in {display_url(ns.db)}"
                         + (" match\n" if ns.query or ns.since or ns.user_id else "\n"))
        return 0
    rows = [[fmt_time(s.last_ns), s.session_id,
             (s.user_id or MISSING) + (f" (+{s.user_count - 1})" if s.user_count > 1 else ""),
             fmt_int(s.turns), fmt_time(s.first_ns), fmt_seconds(s.duration_s),
             fmt_int(s.total_tokens), fmt_cost(s.cost_usd), fmt_int(s.errors), _feedback(s),
             fmt_int(s.check_failures)] for s in sessions]
    print_table(SESSION_COLUMNS, rows)
    return 0


USER_COLUMNS = (
    Column("last active"),
    Column("user", max_width=40, flex=True),
    Column("traces", "right"),
    Column("sessions", "right"),
    Column("first"),
    Column("tokens", "right"),
    Column("cost", "right"),
    Column("errors", "right"),
    Column("feedback"),
    Column("checks failed", "right"),
)


def _run_users(ns: argparse.Namespace) -> int:
    from chainsight.storage.sessions import list_users

    filters = _filters(ns)
    with open_store(ns.db) as store:
        users = list_users(store, filters, limit=ns.limit, order=ns.order)
    if ns.json:
        print_json([_activity_json(u) for u in users])
        return 0
    if not users:
        sys.stderr.write(f"no users in {display_url(ns.db)}" + (" match\n" if ns.query or ns.since else "\n"))
        return 0
    rows = [[fmt_time(u.last_ns), u.user_id, fmt_int(u.traces), fmt_int(u.sessions),
             fmt_time(u.first_ns), fmt_int(u.total_tokens), fmt_cost(u.cost_usd), fmt_int(u.errors),
             _feedback(u), fmt_int(u.check_failures)] for u in users]
    print_table(USER_COLUMNS, rows)
    return 0


def _configure_session(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("session_id", metavar="SESSION_ID", help="the session id, as `sessions` shows it")
    parser.add_argument("--width", type=int, default=400,
                        help="cut each message after this many characters (default 400; 0: never)")


def _run_session(ns: argparse.Namespace) -> int:
    from chainsight.storage.sessions import get_session, message_text, session_turns

    with open_store(ns.db) as store:
        summary = get_session(store, ns.session_id)
        if summary is None:
            raise CommandError(f"no session {ns.session_id!r} in {display_url(ns.db)} "
                               "(`chainsight sessions` lists them)")
        turns = session_turns(store, ns.session_id)
    if ns.json:
        print_json({"session": _activity_json(summary) | {"turns": summary.turns},
                    "turns": [dataclasses.asdict(t) for t in turns]})
        return 0
    limit = ns.width if ns.width > 0 else None
    s = summary
    lines = [
        f"session {s.session_id}   user {s.user_id or MISSING}",
        f"  {fmt_int(s.turns)} turns   {fmt_time(s.first_ns)} .. {fmt_time(s.last_ns)}"
        f"   duration {fmt_seconds(s.duration_s)}",
        f"  tokens {fmt_int(s.total_tokens)}   cost {fmt_cost(s.cost_usd)}   errors {fmt_int(s.errors)}"
        f"   feedback {_feedback(s)}   checks failed {fmt_int(s.check_failures)}",
    ]
    for t in turns:
        lines += [
            "",
            f"turn {t.index}  {fmt_time(t.start_ns)}  trace {short_id(t.trace_id)}  {clean(t.name)}"
            f"  {t.status}  {fmt_seconds(t.duration_s)}  {fmt_int(t.input_tokens + t.output_tokens)} tokens"
            f"  {fmt_cost(t.cost_usd)}",
            "  user:      " + clean(message_text(t.input), limit),
            "  assistant: " + (clean(message_text(t.output), limit) if t.output is not None
                               else f"({t.status}: {clean(t.error, limit)})" if t.error else MISSING),
        ]
    print_lines(lines)
    return 0


@hookimpl
def register_commands(cli: CommandRegistry) -> None:
    cli.add("sessions", "conversations (traces by session id): turns, time, tokens, cost, errors, "
            "feedback, check failures", lambda p: _configure_list(p, "sessions"), _run_sessions)
    cli.add("session", "one conversation as a transcript, turn by turn", _configure_session,
            _run_session)
    cli.add("users", "activity, spend and feedback per user", lambda p: _configure_list(p, "users"),
            _run_users)
