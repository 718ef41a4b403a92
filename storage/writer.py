"""The batch writer: spans, scores, samples and alerts, one transaction per batch.

``prepare`` turns model objects into plain row dicts (JSON content already
encoded and capped); those dicts are also the spill-file format, so a batch
that could not be written is replayed later with ``write_prepared``. Writing is
idempotent: an id that exists already is skipped (alerts are upserted: each
state change of an alert carries the same ``alert_id``), and the trace rows are
recomputed from the spans table after every batch, whatever order the spans of
a trace arrive in.

Trace summary rules (one ``INSERT .. SELECT .. GROUP BY .. ON CONFLICT``):

* name, user, session, tags come from the root span (``parent_id`` NULL); before
  the root arrives the trace is named after nothing (``""``) and has status
  ``"unset"`` unless a span already failed.
* status is the root's status: a child that failed but was handled (retry,
  fallback) counts in ``error_count`` without making the trace an error.
* start is the earliest span start, end the latest span end; tokens and cost
  sum every span (recorders put usage on exactly one span per model call);
  cost stays NULL when no span is priced.
* ttft/tpot are those of the earliest LLM span that streamed; model is the
  model of the earliest LLM span that has one.

Inserts are compiled once from Core statements and run as DB-API executemany
(``exec_driver_sql``): the rows already hold the encoded JSON text, so the
per-row work of SQLAlchemy's bind processing is skipped.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from framework.model import Alert, Sample, Score, Span
from storage import schema
from storage.engine import DEFAULT_BUSY_TIMEOUT_MS, open_engine, translate_errors
from storage.serialize import encode_capped, key_text

TRACE_CHUNK: Final = 500
SEARCH_PREVIEW: Final = 2000
_RESOLVED: sa.ColumnElement[str] = sa.literal_column("'resolved'")


@dataclass
class WriteBatch:
    spans: Sequence[Span] = ()
    scores: Sequence[Score] = ()
    samples: Sequence[Sample] = ()
    alerts: Sequence[Alert] = ()


def _tags_text(tags: Iterable[str] | None) -> str | None:
    if not tags:
        return None
    sep = schema.TAG_SEP
    return sep + sep.join(str(t).replace(sep, " ") for t in tags) + sep


def _span_row(span: Span, cap: int) -> dict[str, Any]:
    start, end = span.start_ns, span.end_ns
    inputs = encode_capped(span.inputs, cap) if span.inputs is not None else None
    outputs = encode_capped(span.outputs, cap) if span.outputs is not None else None
    error = span.error
    if error is not None and len(error) > cap:
        error = error[:cap] + "…"
    root = span.parent_id is None
    return {
        "span_id": span.span_id,
        "trace_id": span.trace_id,
        "parent_id": span.parent_id,
        "kind": span.kind,
        "name": span.name,
        "status": span.status,
        "error": error,
        "error_type": span.error_type,
        "start_ns": start,
        "end_ns": end,
        "first_token_ns": span.first_token_ns,
        "latency_ms": (end - start) / 1e6 if end is not None else None,
        "model": span.model,
        "provider": span.provider,
        "input_tokens": span.input_tokens,
        "output_tokens": span.output_tokens,
        "cached_tokens": span.cached_tokens,
        "reasoning_tokens": span.reasoning_tokens,
        "tokens_estimated": bool(span.tokens_estimated),
        "cost_usd": span.cost_usd,
        "chunk_count": span.chunk_count or 0,
        "inputs": inputs,
        "outputs": outputs,
        "tags": encode_capped(span.tags, cap) if span.tags else None,
        "tags_text": _tags_text(span.tags) if root else None,
        "metadata": encode_capped(span.metadata, cap) if span.metadata else None,
        "user_id": span.user_id,
        "session_id": span.session_id,
        "attributes": encode_capped(span.attributes, cap) if span.attributes else None,
        "search_text": _search_text(span.name, error, inputs, outputs) if root else None,
    }


def _search_text(name: str, error: str | None, inputs: str | None, outputs: str | None) -> str:
    parts = [name, error or "", (inputs or "")[:SEARCH_PREVIEW], (outputs or "")[:SEARCH_PREVIEW]]
    return "\n".join(parts).lower()


def _score_row(score: Score) -> dict[str, Any]:
    return {
        "score_id": score.score_id,
        "name": score.name,
        "value": score.value,
        "label": score.label,
        "passed": score.passed,
        "source": score.source,
        "comment": score.comment,
        "trace_id": score.trace_id,
        "span_id": score.span_id,
        "experiment_id": score.experiment_id,
        "created_ns": score.created_ns,
    }


def _sample_row(sample: Sample) -> dict[str, Any]:
    labels = key_text(sample.labels or {})
    return {
        "time_ns": sample.time_ns,
        "source": sample.source,
        "name": sample.name,
        "value": sample.value,
        "labels": labels,
        "labels_key": labels,
    }


def _alert_row(alert: Alert, now_ns: int) -> dict[str, Any]:
    return {
        "alert_id": alert.alert_id,
        "rule": alert.rule,
        "severity": alert.severity,
        "state": alert.state,
        "value": alert.value,
        "threshold": alert.threshold,
        "started_ns": alert.started_ns,
        "ended_ns": alert.ended_ns,
        "summary": alert.summary,
        "labels": key_text(alert.labels or {}),
        "updated_ns": now_ns,
    }


def _insert_sql(dialect: sa.Dialect, table: sa.Table, columns: Sequence[str]) -> str:
    """``INSERT .. ON CONFLICT DO NOTHING`` (alerts: upsert) as driver SQL."""
    values: dict[str, Any] = {c: sa.bindparam(c) for c in columns}
    if dialect.name == "postgresql":
        pg = postgresql.insert(table).values(values).inline()  # no RETURNING of ids
        stmt: Any = pg.on_conflict_do_nothing()
        if table is schema.alerts:
            stmt = _alert_upsert(pg, pg.excluded)
    else:
        lite = sqlite.insert(table).values(values)
        stmt = lite.on_conflict_do_nothing()
        if table is schema.alerts:
            stmt = _alert_upsert(lite, lite.excluded)
    if dialect.name == "sqlite":
        # Positional: sqlite3 binds a tuple much faster than a dict by name.
        dialect = sqlite.dialect(paramstyle="qmark")
    return str(stmt.compile(dialect=dialect))


def _params_for(
    dialect_name: str, table_name: str, columns: Sequence[str]
) -> Callable[[list[dict[str, Any]]], Any]:
    """Rows (dicts, the spill format) as the driver's parameters: tuples in
    column order for SQLite's qmark statements, the dicts themselves otherwise."""
    if dialect_name != "sqlite":
        return lambda rows: rows
    pick = itemgetter(*columns)

    def as_tuples(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        try:
            return [pick(row) for row in rows]
        except KeyError as missing:  # a malformed row is a bug, never retried
            raise ValueError(f"a {table_name} row lacks column {missing}") from None

    return as_tuples


def _alert_upsert(stmt: Any, excluded: Any) -> Any:
    a = schema.alerts
    updated = ("severity", "state", "value", "threshold", "ended_ns", "summary", "labels",
               "updated_ns")
    return stmt.on_conflict_do_update(
        index_elements=[a.c.alert_id],
        set_={c: excluded[c] for c in updated},
        # A resolved alert stays resolved when an older state is replayed.
        where=sa.or_(a.c.state != _RESOLVED, excluded.state == _RESOLVED),
    )


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
        "tags": root(s.c.tags_text),
        "search_text": root(s.c.search_text),
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
    reprice) calls it inside its own transaction after changing spans.
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
        set_={c: stmt.excluded[c] for c in TRACE_COLUMNS if c != "trace_id"},
    )


class StoreWriter:
    """Writes batches to one store; safe to use from one thread at a time."""

    def __init__(
        self,
        url: str,
        *,
        max_content_bytes: int = 32_768,
        busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
    ) -> None:
        self.url = url
        self.max_content_bytes = max_content_bytes
        self._busy_timeout_ms = busy_timeout_ms
        self._engine: sa.Engine | None = None
        self._insert_sql: dict[str, str] = {}
        self._to_params: dict[str, Callable[[list[dict[str, Any]]], Any]] = {}

    # ---- preparation (pure, no I/O) ----------------------------------------
    def prepare(self, batch: WriteBatch) -> dict[str, list[dict[str, Any]]]:
        """Rows per table, JSON content encoded and capped; JSON-serialisable."""
        cap = self.max_content_bytes
        rows: dict[str, list[dict[str, Any]]] = {}
        if batch.spans:
            rows["spans"] = [_span_row(span, cap) for span in batch.spans]
        if batch.scores:
            rows["scores"] = [_score_row(score) for score in batch.scores]
        if batch.samples:
            rows["samples"] = [_sample_row(sample) for sample in batch.samples]
        if batch.alerts:
            now = time.time_ns()
            rows["alerts"] = [_alert_row(alert, now) for alert in batch.alerts]
        return rows

    # ---- writing ----------------------------------------------------------
    def _connect(self) -> sa.Engine:
        # Opened lazily, so a writer can be built while the store is down.
        if self._engine is None:
            self._engine = open_engine(self.url, busy_timeout_ms=self._busy_timeout_ms)
            dialect = self._engine.dialect
            for name in ("spans", "scores", "samples", "alerts"):
                table = schema.metadata.tables[name]
                columns = [c.name for c in table.columns if c.name != "sample_id"]
                self._insert_sql[name] = _insert_sql(dialect, table, columns)
                self._to_params[name] = _params_for(dialect.name, name, columns)
        return self._engine

    def write_prepared(self, rows: dict[str, list[dict[str, Any]]]) -> None:
        """Write prepared rows in one transaction; raises StoreUnavailable to retry."""
        if not any(rows.values()):
            return
        with translate_errors(self.url):
            engine = self._connect()
            with engine.begin() as conn:
                for name in ("spans", "scores", "samples", "alerts"):
                    table_rows = rows.get(name)
                    if table_rows:
                        params = self._to_params[name](table_rows)
                        conn.exec_driver_sql(self._insert_sql[name], params)
                span_rows = rows.get("spans")
                if span_rows:
                    refresh_trace_totals(conn, {r["trace_id"] for r in span_rows})


    def write_plugin_health(self, health: Sequence[Any]) -> None:
        """Upsert plugin health rows (objects with name, calls, failures,
        consecutive, slow, degraded, last_error), so ``chainsight plugins`` in
        another process sees them."""
        now = time.time_ns()
        rows = [
            {
                "name": h.name, "calls": h.calls, "failures": h.failures,
                "consecutive": h.consecutive, "slow": h.slow, "degraded": bool(h.degraded),
                "last_error": h.last_error, "updated_ns": now,
            }
            for h in health
        ]
        if not rows:
            return
        t = schema.plugin_health
        with translate_errors(self.url):
            engine = self._connect()
            insert: Any = postgresql.insert(t) if engine.dialect.name == "postgresql" else sqlite.insert(t)
            stmt = insert.on_conflict_do_update(
                index_elements=[t.c.name],
                set_={c: insert.excluded[c] for c in rows[0] if c != "name"},
            )
            with engine.begin() as conn:
                conn.execute(stmt, rows)

    def write(self, batch: WriteBatch) -> int:
        """Prepare and write one batch; returns the number of spans in it."""
        self.write_prepared(self.prepare(batch))
        return len(batch.spans)

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
