"""Trace rows: the denormalised totals of each trace, kept exact in the
transaction that writes its spans.

Rules (the same for both ways below):

* name, user, session, tags come from the root span (``parent_id`` NULL); before
  the root arrives the trace is named after nothing (``""``) and has status
  ``"unset"`` unless a span already failed. User and session fall back to the
  greatest one among the spans when the root has none.
* status is the root's status: a child that failed but was handled (retry,
  fallback) counts in ``error_count`` without making the trace an error.
* start is the earliest span start, end the latest span end; tokens and cost
  sum every span (recorders put usage on exactly one span per model call);
  cost stays NULL when no span is priced.
* ttft/tpot are those of the earliest LLM span (by start, then id) that
  streamed; model is the model of the earliest LLM span that has one.
* tags and search text are the root's, computed when its row is prepared
  (the spans table does not keep them): set by whichever transaction writes
  the root, and kept by later recomputations.

Two ways to apply them:

* :func:`refresh_trace_totals` recomputes traces from the spans table (one
  ``INSERT .. SELECT .. GROUP BY .. ON CONFLICT`` per 500 traces): order-free
  and idempotent, for traces that already have a row, replays, and repricing.
* :func:`summarize_new_traces` computes the rows of traces whose spans are all
  in the batch being written, in Python, from the prepared span rows. Most
  traces end within one batch, and this skips a grouped scan with three
  correlated lookups per trace (about 7 µs per span on SQLite).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterable, Sequence
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from chainsight.framework.model import tpot_seconds
from chainsight.storage import schema
from chainsight.storage.bulk import BulkInsert

TRACE_CHUNK: Final = 500


def _trace_summary_select(
    trace_ids: sa.BindParameter[Any], now_ns: sa.ColumnElement[Any]
) -> sa.Select[Any]:
    s = schema.spans
    inner = s.alias("first_llm")
    is_root = s.c.parent_id.is_(None)
    first_stream = (
        sa.select(inner)
        .where(
            inner.c.trace_id == s.c.trace_id,
            inner.c.kind == "llm",
            inner.c.first_token_ns.is_not(None),
        )
        .order_by(inner.c.start_ns, inner.c.span_id)
        .limit(1)
    )
    ttft = first_stream.with_only_columns(
        sa.cast(inner.c.first_token_ns - inner.c.start_ns, sa.Float) / 1e6
    ).scalar_subquery()
    tpot = first_stream.with_only_columns(
        sa.case(
            (
                sa.and_(inner.c.output_tokens >= 2, inner.c.end_ns.is_not(None)),
                sa.cast(inner.c.end_ns - inner.c.first_token_ns, sa.Float)
                / 1e6
                / (inner.c.output_tokens - 1),
            ),
            else_=None,
        )
    ).scalar_subquery()
    model = (
        sa.select(inner.c.model)
        .where(inner.c.trace_id == s.c.trace_id, inner.c.kind == "llm",
               inner.c.model.is_not(None))
        .order_by(inner.c.start_ns, inner.c.span_id)
        .limit(1)
        .scalar_subquery()
    )

    def root(col: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        return sa.func.max(sa.case((is_root, col), else_=None))

    def count_if(cond: sa.ColumnElement[bool]) -> sa.ColumnElement[Any]:
        return sa.func.sum(sa.case((cond, 1), else_=0))

    has_root = sa.func.max(sa.case((is_root, 1), else_=0)) == 1
    any_error = count_if(s.c.status == "error") > 0
    input_tokens = sa.func.coalesce(sa.func.sum(s.c.input_tokens), 0)
    output_tokens = sa.func.coalesce(sa.func.sum(s.c.output_tokens), 0)
    start = sa.func.min(s.c.start_ns)
    end = sa.func.max(s.c.end_ns)
    columns: dict[str, sa.ColumnElement[Any]] = {
        "trace_id": s.c.trace_id,
        "root_span_id": root(s.c.span_id),
        "name": sa.func.coalesce(root(s.c.name), ""),
        "status": sa.case(
            (has_root, root(s.c.status)), (any_error, "error"), else_="unset"
        ),
        "start_ns": start,
        "end_ns": end,
        "duration_ms": sa.cast(end - start, sa.Float) / 1e6,
        "span_count": sa.func.count(),
        "llm_count": count_if(s.c.kind == "llm"),
        "error_count": count_if(s.c.status == "error"),
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "total_tokens": input_tokens + output_tokens,
        "cost_usd": sa.func.sum(s.c.cost_usd),
        "unpriced_count": count_if(sa.and_(s.c.kind == "llm", s.c.cost_usd.is_(None))),
        "ttft_ms": ttft,
        "tpot_ms": tpot,
        "model": model,
        "user_id": sa.func.coalesce(root(s.c.user_id), sa.func.max(s.c.user_id)),
        "session_id": sa.func.coalesce(root(s.c.session_id), sa.func.max(s.c.session_id)),
        # Taken from the root's prepared row (``set_root_text``), not from spans.
        "tags": sa.null(),
        "search_text": sa.null(),
        "updated_ns": now_ns,
    }
    return (
        sa.select(*(expr.label(name) for name, expr in columns.items()))
        .where(s.c.trace_id.in_(trace_ids))
        .group_by(s.c.trace_id)
        .order_by(s.c.trace_id)
    )


TRACE_COLUMNS: Final[tuple[str, ...]] = tuple(c.name for c in schema.traces.columns)


def refresh_trace_totals(conn: sa.Connection, trace_ids: Iterable[str]) -> None:
    """Recompute the denormalised totals of these traces from their spans.

    Idempotent and order-free, so any writer of spans (the batch writer,
    reprice) calls it inside its own transaction after changing spans. The
    root's tags and search text are kept as they are: they come from the
    root's prepared row (:func:`set_root_text`), not from the spans table.
    """
    stmt = _trace_upsert(conn.dialect.name)
    ordered = sorted(set(trace_ids))  # a stable lock order between concurrent writers
    now = time.time_ns()
    for i in range(0, len(ordered), TRACE_CHUNK):
        conn.execute(stmt, {"trace_ids": ordered[i : i + TRACE_CHUNK], "now_ns": now})


@functools.lru_cache(maxsize=4)
def _trace_upsert(dialect_name: str) -> sa.Executable:
    ids: sa.BindParameter[Any] = sa.bindparam("trace_ids", expanding=True)
    now = sa.bindparam("now_ns", type_=sa.BigInteger)
    select = _trace_summary_select(ids, now)
    t = schema.traces
    insert: Any = (postgresql.insert(t) if dialect_name == "postgresql" else sqlite.insert(t))
    stmt = insert.from_select(list(TRACE_COLUMNS), select)
    return stmt.on_conflict_do_update(
        index_elements=[t.c.trace_id],
        set_={c: stmt.excluded[c] for c in TRACE_COLUMNS if c not in _KEPT_ON_REFRESH},
    )


_KEPT_ON_REFRESH: Final = ("trace_id", "tags", "search_text")
"""What a recomputation from the spans table leaves as it is: the root's
tags and search text are not in that table."""


def set_root_text(conn: sa.Connection, roots: Sequence[dict[str, Any]]) -> None:
    """Bring the tags and search text of the traces of these root span rows
    up to date: the greatest of each among the trace's roots, as
    :func:`summarize_trace` takes it (so a replay, or a second root in a
    later batch, ends where one batch would)."""
    if not roots:
        return
    t = schema.traces
    best: dict[str, dict[str, Any]] = {}
    ids = sorted({r["trace_id"] for r in roots})
    for i in range(0, len(ids), TRACE_CHUNK):
        chunk = ids[i : i + TRACE_CHUNK]
        for found in conn.execute(sa.select(t.c.trace_id, t.c.tags, t.c.search_text)
                                  .where(t.c.trace_id.in_(chunk))):
            best[found.trace_id] = {"b_trace_id": found.trace_id, "b_tags": found.tags,
                                    "b_search_text": found.search_text}
    for r in roots:
        entry = best.get(r["trace_id"])
        if entry is None:  # pragma: no cover - the trace row was written first
            continue
        for key, column in (("b_tags", "tags_text"), ("b_search_text", "search_text")):
            if r[column] is not None and (entry[key] is None or r[column] > entry[key]):
                entry[key] = r[column]
    stmt = (t.update().where(t.c.trace_id == sa.bindparam("b_trace_id"))
            .values(tags=sa.bindparam("b_tags", type_=sa.Text),
                    search_text=sa.bindparam("b_search_text", type_=sa.Text)))
    conn.execute(stmt, list(best.values()))


def summarize_trace(spans: Sequence[dict[str, Any]], now_ns: int) -> dict[str, Any]:
    """The trace row of a trace whose spans are exactly ``spans`` (prepared
    span rows, at least one), by the rules above; one pass, no SQL."""
    return _summarize(spans, now_ns)[0]


def _summarize(spans: Sequence[dict[str, Any]], now_ns: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """:func:`summarize_trace`, and per root column the greatest value among
    the root spans (what :func:`merge_rootless` needs of the roots)."""
    start = end = None
    count = llms = errors = unpriced = inputs = outputs = 0
    cost: float | None = None
    user = session = None  # the greatest, for traces whose root has none
    root: dict[str, Any] = {}  # per column, the greatest value among roots
    stream_key = model_key = None
    stream: dict[str, Any] | None = None
    model = None
    for r in spans:
        count += 1
        s, e = r["start_ns"], r["end_ns"]
        if start is None or s < start:
            start = s
        if e is not None and (end is None or e > end):
            end = e
        if r["status"] == "error":
            errors += 1
        if r["input_tokens"] is not None:
            inputs += r["input_tokens"]
        if r["output_tokens"] is not None:
            outputs += r["output_tokens"]
        if r["cost_usd"] is not None:
            cost = r["cost_usd"] if cost is None else cost + r["cost_usd"]
        if r["user_id"] is not None and (user is None or r["user_id"] > user):
            user = r["user_id"]
        if r["session_id"] is not None and (session is None or r["session_id"] > session):
            session = r["session_id"]
        if r["parent_id"] is None:
            for column in ROOT_COLUMNS:
                value = r[column]
                if value is not None and (root.get(column) is None or value > root[column]):
                    root[column] = value
        if r["kind"] == "llm":
            llms += 1
            if r["cost_usd"] is None:
                unpriced += 1
            key = (s, r["span_id"])
            if r["first_token_ns"] is not None and (stream_key is None or key < stream_key):
                stream_key, stream = key, r
            if r["model"] is not None and (model_key is None or key < model_key):
                model_key, model = key, r["model"]
    assert start is not None, "a trace summary needs at least one span"
    ttft = tpot = None
    if stream is not None:
        ttft, tpot = _stream_timings(stream["start_ns"], stream["first_token_ns"], stream["end_ns"],
                                     stream["output_tokens"])
    has_root = "span_id" in root
    row = {
        "trace_id": spans[0]["trace_id"],
        "root_span_id": root.get("span_id"),
        "name": root.get("name") or "",
        "status": root.get("status") if has_root else ("error" if errors else "unset"),
        "start_ns": start,
        "end_ns": end,
        "duration_ms": (end - start) / 1e6 if end is not None else None,
        "span_count": count,
        "llm_count": llms,
        "error_count": errors,
        "input_tokens": inputs,
        "output_tokens": outputs,
        "total_tokens": inputs + outputs,
        "cost_usd": cost,
        "unpriced_count": unpriced,
        "ttft_ms": ttft,
        "tpot_ms": tpot,
        "model": model,
        "user_id": root["user_id"] if root.get("user_id") is not None else user,
        "session_id": root["session_id"] if root.get("session_id") is not None else session,
        "tags": root.get("tags_text"),
        "search_text": root.get("search_text"),
        "updated_ns": now_ns,
    }
    return row, root


ROOT_COLUMNS: Final = ("span_id", "name", "status", "user_id", "session_id", "tags_text", "search_text")


def write_trace_totals(conn: sa.Connection, span_rows: Sequence[dict[str, Any]], *, all_new: bool) -> None:
    """Bring the trace rows of ``span_rows`` up to date after inserting them.

    ``all_new``: every one of ``span_rows`` was inserted by this transaction
    (none was a duplicate). Then a trace without a row yet is summarised from
    the batch alone, and one whose root has not arrived yet is merged with its
    row (:func:`merge_rootless`); every other trace is recomputed from the
    spans table.
    """
    by_trace: dict[str, list[dict[str, Any]]] = {}
    for row in span_rows:
        by_trace.setdefault(row["trace_id"], []).append(row)
    if not all_new:
        refresh_trace_totals(conn, by_trace)
        set_root_text(conn, [r for r in span_rows if r["parent_id"] is None])
        return
    t = schema.traces
    ordered = sorted(by_trace)
    existing: dict[str, dict[str, Any]] = {}
    for i in range(0, len(ordered), TRACE_CHUNK):
        chunk = ordered[i : i + TRACE_CHUNK]
        for found in conn.execute(sa.select(t).where(t.c.trace_id.in_(chunk))).mappings():
            existing[found["trace_id"]] = dict(found)
    now = time.time_ns()
    rows: list[dict[str, Any]] = []
    recompute: list[str] = []
    for trace_id in ordered:
        old = existing.get(trace_id)
        if old is None:
            rows.append(summarize_trace(by_trace[trace_id], now))
        elif old["root_span_id"] is None:
            rows.append(merge_rootless(conn, old, by_trace[trace_id], now))
        else:
            recompute.append(trace_id)  # spans after the root: rare
    if rows:
        _trace_row_upsert(conn.dialect).run(conn, rows)
    if recompute:
        refresh_trace_totals(conn, recompute)
        set_root_text(conn, [r for trace_id in recompute for r in by_trace[trace_id]
                             if r["parent_id"] is None])


def merge_rootless(conn: sa.Connection, old: dict[str, Any], spans: Sequence[dict[str, Any]],
                   now_ns: int) -> dict[str, Any]:
    """The row of a trace whose stored row ``old`` has no root yet, after
    ``spans`` (new, already inserted) arrived: O(batch), not O(trace), so a
    trace that grows over many batches costs the same per span throughout.

    Without a root in ``old``, its user and session are the greatest among its
    spans and its name, tags and status carry nothing of a root. Only the
    earliest streaming or modelled LLM call can need a look at the spans
    table, when both sides have one: an index walk from the trace's start.
    """
    new, root = _summarize(spans, now_ns)
    merged = dict(new)
    start = min(old["start_ns"], new["start_ns"])
    ends = [e for e in (old["end_ns"], new["end_ns"]) if e is not None]
    end = max(ends) if ends else None
    merged.update(start_ns=start, end_ns=end, duration_ms=(end - start) / 1e6 if end is not None else None)
    for column in ("span_count", "llm_count", "error_count", "input_tokens", "output_tokens",
                   "total_tokens", "unpriced_count"):
        merged[column] = old[column] + new[column]
    costs = [c for c in (old["cost_usd"], new["cost_usd"]) if c is not None]
    merged["cost_usd"] = sum(costs) if costs else None
    if new["root_span_id"] is None:
        merged["status"] = "error" if merged["error_count"] else "unset"
    for column in ("user_id", "session_id"):
        if root.get(column) is None:
            values = [v for v in (old[column], new[column]) if v is not None]
            merged[column] = max(values) if values else None
    trace_id = old["trace_id"]
    if new["ttft_ms"] is None:
        merged["ttft_ms"], merged["tpot_ms"] = old["ttft_ms"], old["tpot_ms"]
    elif old["ttft_ms"] is not None:  # both streamed: which call came first?
        merged["ttft_ms"], merged["tpot_ms"] = _first_stream_timings(conn, trace_id)
    if new["model"] is None:
        merged["model"] = old["model"]
    elif old["model"] is not None:
        merged["model"] = _first_model(conn, trace_id)
    return merged


def _first_stream_timings(conn: sa.Connection, trace_id: str) -> tuple[float | None, float | None]:
    s = schema.spans
    row = conn.execute(
        sa.select(s.c.start_ns, s.c.first_token_ns, s.c.end_ns, s.c.output_tokens)
        .where(s.c.trace_id == trace_id, s.c.kind == "llm", s.c.first_token_ns.is_not(None))
        .order_by(s.c.start_ns, s.c.span_id)
        .limit(1)
    ).first()
    if row is None:  # pragma: no cover - both sides had one
        return None, None
    return _stream_timings(row.start_ns, row.first_token_ns, row.end_ns, row.output_tokens)


def _stream_timings(start_ns: int, first_token_ns: int, end_ns: int | None,
                    output_tokens: int | None) -> tuple[float, float | None]:
    """(TTFT, TPOT) in milliseconds of one streamed LLM call."""
    tpot = tpot_seconds(first_token_ns, end_ns, output_tokens)
    return (first_token_ns - start_ns) / 1e6, tpot * 1000 if tpot is not None else None


def _first_model(conn: sa.Connection, trace_id: str) -> str | None:
    s = schema.spans
    return conn.execute(
        sa.select(s.c.model)
        .where(s.c.trace_id == trace_id, s.c.kind == "llm", s.c.model.is_not(None))
        .order_by(s.c.start_ns, s.c.span_id)
        .limit(1)
    ).scalar()


_ROW_UPSERTS: dict[str, BulkInsert] = {}


def _trace_row_upsert(dialect: sa.Dialect) -> BulkInsert:
    """Insert whole trace rows; a row that appeared meanwhile is replaced."""
    bulk = _ROW_UPSERTS.get(dialect.name)
    if bulk is None:
        t = schema.traces
        values: dict[str, Any] = {c: sa.bindparam(c) for c in TRACE_COLUMNS}
        insert: Any = (postgresql.insert(t) if dialect.name == "postgresql" else sqlite.insert(t)).values(values)
        stmt = insert.on_conflict_do_update(
            index_elements=[t.c.trace_id],
            set_={c: insert.excluded[c] for c in TRACE_COLUMNS if c != "trace_id"},
        )
        bulk = _ROW_UPSERTS[dialect.name] = BulkInsert(stmt, dialect, "traces", TRACE_COLUMNS)
    return bulk
