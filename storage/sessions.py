"""Sessions and users: traces grouped by ``session_id`` or ``user_id``.

A chat application's unit is the conversation: each turn is one trace whose
root span carries the conversation's ``session_id`` (and usually the
``user_id``). The totals are computed by the store (grouped SQL over the
``traces`` rows and the ``scores`` joined to them), one query for the
traces' figures and one for the scores' of the page shown.

Filters are the traces' (:class:`~chainsight.storage.query.TraceFilter`,
the filter language of ``chainsight traces``): they pick traces, and a
session or user is listed with the totals of *its traces that match* (so
``since:1d`` gives each conversation's activity of the last day).

What counts as feedback and as a check failure is what
``chainsight.plugins.metric_sources`` says: ``thumbs`` feedback is up when
its value is above 0, ``rating`` feedback is 1..5, a check failed when its
score has ``source = 'check'`` and ``passed`` false. These are the only
statements here over score columns (:func:`_score_totals`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import sqlalchemy as sa

from chainsight.storage import schema
from chainsight.storage.engine import translate_errors
from chainsight.storage.query import Store, TraceFilter, filter_clauses

T = schema.traces
SC = schema.scores

ORDERS: Final = ("last", "first", "turns", "cost", "tokens", "errors")
"""How ``list_sessions`` / ``list_users`` may order (each descending)."""


@dataclass(frozen=True)
class Activity:
    """The totals shared by a session and a user, over the traces that matched."""

    traces: int
    first_ns: int
    last_ns: int  # the latest end (or start, for a trace still running)
    errors: int  # traces whose status is error
    input_tokens: int
    output_tokens: int
    cost_usd: float | None  # None: nothing priced
    unpriced_count: int  # model calls without a price
    thumbs_up: int
    thumbs_down: int
    ratings: int
    mean_rating: float | None
    check_failures: int

    @property
    def duration_s(self) -> float:
        return max(0, self.last_ns - self.first_ns) / 1e9

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True)
class SessionSummary(Activity):
    session_id: str
    user_id: str | None  # the session's user (the first by id when it had several)
    user_count: int

    @property
    def turns(self) -> int:
        return self.traces


@dataclass(frozen=True)
class UserSummary(Activity):
    user_id: str
    sessions: int  # distinct session ids among the user's traces (an empty one is none)


@dataclass(frozen=True)
class Turn:
    """One turn of a conversation: a trace and what went in and came out of it."""

    index: int  # 1-based
    trace_id: str
    name: str
    status: str
    start_ns: int
    end_ns: int | None
    input_tokens: int
    output_tokens: int
    cost_usd: float | None
    error: str | None
    input: Any  # the root span's inputs, as stored (redacted)
    output: Any  # its outputs

    @property
    def duration_s(self) -> float | None:
        return None if self.end_ns is None else (self.end_ns - self.start_ns) / 1e9


# ---- queries -----------------------------------------------------------------------


def _trace_totals(group: sa.ColumnElement[Any]) -> list[sa.ColumnElement[Any]]:
    last = sa.func.max(sa.func.coalesce(T.c.end_ns, T.c.start_ns))
    return [
        group.label("group_key"),
        sa.func.count().label("traces"),
        sa.func.min(T.c.start_ns).label("first_ns"),
        last.label("last_ns"),
        sa.func.sum(sa.case((T.c.status == "error", 1), else_=0)).label("errors"),
        sa.func.sum(T.c.input_tokens).label("input_tokens"),
        sa.func.sum(T.c.output_tokens).label("output_tokens"),
        sa.func.sum(T.c.cost_usd).label("cost_usd"),  # NULL when every one is NULL
        sa.func.sum(T.c.unpriced_count).label("unpriced_count"),
    ]


_ORDER_BY: Final[dict[str, str]] = {
    "last": "last_ns", "first": "first_ns", "turns": "traces", "cost": "cost_usd",
    "tokens": "tokens", "errors": "errors",
}


def _score_totals(store: Store, group: sa.ColumnElement[Any], keys: list[str],
                  filters: TraceFilter | None) -> dict[str, dict[str, Any]]:
    """Feedback and check failures per group, over the scores of the matching traces."""
    if not keys:
        return {}
    feedback = SC.c.source == "feedback"
    thumbs = sa.and_(feedback, SC.c.name == "thumbs")
    rating = sa.and_(feedback, SC.c.name == "rating", SC.c.value.is_not(None))
    failed = sa.and_(SC.c.source == "check", SC.c.passed == sa.false())
    stmt = (
        sa.select(
            group.label("group_key"),
            sa.func.sum(sa.case((sa.and_(thumbs, SC.c.value > 0), 1), else_=0)).label("thumbs_up"),
            sa.func.sum(sa.case((sa.and_(thumbs, SC.c.value <= 0), 1), else_=0)).label("thumbs_down"),
            sa.func.sum(sa.case((rating, 1), else_=0)).label("ratings"),
            sa.func.sum(sa.case((rating, SC.c.value), else_=None)).label("rating_sum"),
            sa.func.sum(sa.case((failed, 1), else_=0)).label("check_failures"),
        )
        .select_from(SC.join(T, SC.c.trace_id == T.c.trace_id))
        .where(group.in_(keys), *filter_clauses(filters))
        .group_by(group)
    )
    return {row.group_key: dict(row._mapping) for row in _rows(store, stmt)}


def _rows(store: Store, stmt: sa.Executable) -> list[Any]:
    with translate_errors(store.url), store.engine.connect() as conn:
        return list(conn.execute(stmt))


def _grouped(store: Store, group: sa.ColumnElement[Any], extra: Sequence[sa.ColumnElement[Any]],
             filters: TraceFilter | None, limit: int, order: str) -> tuple[list[Any], dict[str, Any]]:
    if order not in _ORDER_BY:
        raise ValueError(f"cannot order by {order!r}; use one of {', '.join(ORDERS)}")
    totals = _trace_totals(group)
    tokens = (sa.func.sum(T.c.input_tokens) + sa.func.sum(T.c.output_tokens)).label("tokens")
    stmt = (
        sa.select(*totals, tokens, *extra)
        .where(group.is_not(None), group != "", *filter_clauses(filters))
        .group_by(group)
    )
    key: sa.ColumnElement[Any] = sa.literal_column(_ORDER_BY[order])
    stmt = stmt.order_by(key.desc().nulls_last(), sa.literal_column("group_key").desc()).limit(max(1, limit))
    rows = _rows(store, stmt)
    return rows, _score_totals(store, group, [r.group_key for r in rows], filters)


def _activity(row: Any, scores: dict[str, Any]) -> dict[str, Any]:
    ratings = int(scores.get("ratings") or 0)
    rating_sum = scores.get("rating_sum")
    return {
        "traces": int(row.traces), "first_ns": int(row.first_ns), "last_ns": int(row.last_ns),
        "errors": int(row.errors or 0), "input_tokens": int(row.input_tokens or 0),
        "output_tokens": int(row.output_tokens or 0),
        "cost_usd": None if row.cost_usd is None else float(row.cost_usd),
        "unpriced_count": int(row.unpriced_count or 0),
        "thumbs_up": int(scores.get("thumbs_up") or 0),
        "thumbs_down": int(scores.get("thumbs_down") or 0),
        "ratings": ratings,
        "mean_rating": float(rating_sum) / ratings if ratings and rating_sum is not None else None,
        "check_failures": int(scores.get("check_failures") or 0),
    }


def list_sessions(store: Store, filters: TraceFilter | None = None, *, limit: int = 50,
                  order: str = "last") -> list[SessionSummary]:
    """Sessions with their totals, most recently active first (or by ``order``:
    one of :data:`ORDERS`, descending). Traces without a session (none, or
    an empty one) are left out."""
    extra = [sa.func.min(T.c.user_id).label("user_id"),
             sa.func.count(sa.distinct(T.c.user_id)).label("user_count")]
    rows, scores = _grouped(store, T.c.session_id, extra, filters, limit, order)
    return [SessionSummary(session_id=r.group_key, user_id=r.user_id, user_count=int(r.user_count),
                           **_activity(r, scores.get(r.group_key, {}))) for r in rows]


def list_users(store: Store, filters: TraceFilter | None = None, *, limit: int = 50,
               order: str = "last") -> list[UserSummary]:
    """Users with their activity, spend and feedback, most recently active
    first (or by ``order``). Traces without a user are left out."""
    extra = [sa.func.count(sa.distinct(sa.func.nullif(T.c.session_id, ""))).label("sessions")]
    rows, scores = _grouped(store, T.c.user_id, extra, filters, limit, order)
    return [UserSummary(user_id=r.group_key, sessions=int(r.sessions), **_activity(r, scores.get(r.group_key, {})))
            for r in rows]


def get_session(store: Store, session_id: str) -> SessionSummary | None:
    """One session's totals over all its traces; None when it has none."""
    found = list_sessions(store, TraceFilter(session_id=session_id), limit=1)
    return found[0] if found else None


MAX_TURNS: Final = 1000


def session_turns(store: Store, session_id: str, *, limit: int = MAX_TURNS) -> list[Turn]:
    """The session's traces, oldest first, each with its root span's input and
    output (read through :meth:`Store.get_trace`, so stored content comes back
    as every reader sees it)."""
    stmt = (sa.select(T.c.trace_id).where(T.c.session_id == session_id)
            .order_by(T.c.start_ns, T.c.trace_id).limit(max(1, limit)))
    turns: list[Turn] = []
    for (trace_id,) in _rows(store, stmt):
        detail = store.get_trace(trace_id)
        if detail is None:  # deleted meanwhile
            continue
        t = detail.trace
        root = next((s for s in detail.spans if s.parent_id is None), None)
        if root is None and detail.spans:
            root = detail.spans[0]
        turns.append(Turn(
            index=len(turns) + 1, trace_id=t.trace_id, name=t.name, status=t.status,
            start_ns=t.start_ns, end_ns=t.end_ns, input_tokens=t.input_tokens or 0,
            output_tokens=t.output_tokens or 0, cost_usd=t.cost_usd,
            error=root.error if root is not None else None,
            input=root.inputs if root is not None else None,
            output=root.outputs if root is not None else None,
        ))
    return turns


# ---- what a turn said ----------------------------------------------------------------

_TEXT_KEYS: Final = ("content", "text", "output", "answer", "input", "question", "query",
                     "message", "prompt", "result")


def message_text(value: Any) -> str:
    """The text of a turn's input or output for a transcript: a string as it
    is; the last message of a message list; the one text value of a mapping
    (or its first of the usual keys: content, text, output, answer, input,
    question...); anything else as compact JSON. Never markup: callers render it
    as plain text."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value:
        return message_text(value[-1])
    if isinstance(value, dict):
        if "messages" in value and isinstance(value["messages"], list) and value["messages"]:
            return message_text(value["messages"][-1])
        for key in _TEXT_KEYS:
            if key in value and isinstance(value[key], str | list | dict):
                return message_text(value[key])
        texts = [v for v in value.values() if isinstance(v, str)]
        if len(texts) == 1:
            return texts[0]
    try:
        return json.dumps(value, ensure_ascii=False, default=str, separators=(",", ":"))
    except (TypeError, ValueError):
        return str(value)
