"""The batch writer: spans, scores, samples and alerts, one transaction per batch.

``prepare`` turns model objects into plain row dicts (JSON content already
encoded and capped); those dicts are also the spill-file format, so a batch
that could not be written is replayed later with ``write_prepared``. Writing is
idempotent: an id that exists already is skipped (alerts are upserted: each
state change of an alert carries the same ``alert_id``), and the trace rows
stay exact whatever order the spans of a trace arrive in.

``prepare`` also stores less: a passing check verdict of a span in the batch
goes onto the span's row (:mod:`chainsight.storage.verdicts`), and content a
span repeats from an earlier span of its trace in the batch becomes a
reference (:mod:`chainsight.storage.shared_content`). Span rows from a spill
file written before those columns existed are stored as they are.

Trace rows are kept by :mod:`chainsight.storage.trace_summary`, and the per-minute
metric rollups by :mod:`chainsight.storage.rollups`, in the same transaction.

Rows go in through :class:`chainsight.storage.bulk.BulkInsert` (driver SQL, multi-row
statements on SQLite).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from chainsight.framework.model import Alert, Sample, Score, Span, new_ordered_id
from chainsight.framework.store_api import WriteBatch
from chainsight.storage import rollups, schema, shared_content, verdicts
from chainsight.storage.bulk import BulkInsert
from chainsight.storage.engine import (
    DEFAULT_BUSY_TIMEOUT_MS,
    StoreUnavailable,
    open_engine,
    translate_errors,
)
from chainsight.storage.row_checks import RowChecker, clean_text
from chainsight.storage.serialize import dumps, encode_capped, key_text
from chainsight.storage.trace_summary import write_trace_totals

log = logging.getLogger("chainsight.storage")
SEARCH_PREVIEW: Final = 2000
_RESOLVED: sa.ColumnElement[str] = sa.literal_column("'resolved'")


INVALID_ATTRIBUTE: Final = "chainsight.invalid"
TABLES: Final = ("spans", "scores", "samples", "alerts")

_CHECKERS: Final = {
    "spans": RowChecker(schema.spans, {
        "span_id": lambda: new_ordered_id(), "trace_id": lambda: new_ordered_id(),
        "kind": "other", "name": "(unnamed)", "status": "unset", "start_ns": time.time_ns,
        "tokens_estimated": False, "chunk_count": 0,
    }),
    "scores": RowChecker(schema.scores, {
        "score_id": lambda: new_ordered_id(), "name": "(unnamed)", "source": "check",
        "trace_id": "(none)", "created_ns": time.time_ns,
    }),
    "samples": RowChecker(schema.samples, {
        "time_ns": time.time_ns, "source": "(unknown)", "name": "(unnamed)", "value": 0.0,
        "labels": "{}", "labels_key": "{}",
    }),
    "alerts": RowChecker(schema.alerts, {}),
}


@dataclass(frozen=True)
class RejectedRow:
    """A row the store refused even alone, with the store's reason."""

    table: str
    row: dict[str, Any]
    error: str


def _tags_text(tags: Iterable[str] | None) -> str | None:
    if not tags:
        return None
    sep = schema.TAG_SEP
    return sep + sep.join(str(t).replace(sep, " ") for t in tags) + sep


def _span_row(span: Span, cap: int) -> dict[str, Any]:
    """Values of the wrong type are left for :class:`RowChecker` to report;
    only what is computed here from them is guarded. ``tags_text`` and
    ``search_text`` are no columns: the trace row takes them from its root
    (``add_root_text``)."""
    error = span.error
    if type(error) is str:
        if len(error) > cap:
            error = error[:cap] + "…"
    elif error is not None:
        error = encode_capped(error, cap)
    tags = span.tags
    return {
        "span_id": span.span_id,
        "trace_id": span.trace_id,
        "parent_id": span.parent_id,
        "kind": span.kind,
        "name": span.name,
        "status": span.status,
        "error": error,
        "error_type": span.error_type,
        "start_ns": span.start_ns,
        "end_ns": span.end_ns,
        "first_token_ns": span.first_token_ns,
        "model": span.model,
        "provider": span.provider,
        "input_tokens": span.input_tokens,
        "output_tokens": span.output_tokens,
        "cached_tokens": span.cached_tokens,
        "reasoning_tokens": span.reasoning_tokens,
        "tokens_estimated": bool(span.tokens_estimated),
        "cost_usd": span.cost_usd,
        "chunk_count": span.chunk_count or 0,
        "inputs": encode_capped(span.inputs, cap) if span.inputs is not None else None,
        "outputs": encode_capped(span.outputs, cap) if span.outputs is not None else None,
        "tags": encode_capped(tags, cap) if tags is not None else None,
        "metadata": encode_capped(span.metadata, cap) if span.metadata is not None else None,
        "user_id": span.user_id,
        "session_id": span.session_id,
        "attributes": encode_capped(span.attributes, cap) if span.attributes is not None else None,
        "checks": None,
        "content_refs": None,
        "tags_text": _tags_text(tags) if span.parent_id is None and isinstance(tags, list | tuple) else None,
        "search_text": None,
    }


def add_root_text(row: dict[str, Any]) -> None:
    """A root span row's search text, from its checked values (before its
    content is shared), and its tags text made storable."""
    if row["parent_id"] is not None:
        return
    row["search_text"] = _search_text(row["name"], row["error"], row["inputs"], row["outputs"])
    if row["tags_text"] is not None:
        row["tags_text"] = clean_text(row["tags_text"])


def _unencodable_span_row(span: Span, exc: BaseException) -> dict[str, Any]:
    """The identity and timings of a span whose values could not be encoded
    at all, with the reason; never its content."""
    row: dict[str, Any] = {c.name: None for c in schema.spans.columns}
    row["tags_text"] = row["search_text"] = None
    for name in ("span_id", "trace_id", "parent_id", "kind", "name", "status", "error_type",
                 "start_ns", "end_ns", "model", "provider", "user_id", "session_id"):
        row[name] = getattr(span, name, None)
    row["attributes"] = dumps({INVALID_ATTRIBUTE: {
        "span": f"could not be encoded ({type(exc).__name__}); content not stored"}})
    return row


def _note_problems(table: str, row: dict[str, Any], problems: dict[str, str]) -> None:
    """Record what was wrong with a span's values on the span itself."""
    if table != "spans":
        log.warning("a %s row had invalid values (%s); stored with them replaced",
                    table, "; ".join(f"{k}: {v}" for k, v in problems.items()))
        return
    try:
        attributes = json.loads(row["attributes"]) if row.get("attributes") else {}
    except ValueError:
        attributes = {}
    if not isinstance(attributes, dict):
        attributes = {"value": attributes}
    attributes[INVALID_ATTRIBUTE] = problems
    row["attributes"] = dumps(attributes)


def _fill_new_columns(span_rows: Sequence[dict[str, Any]]) -> None:
    """Span rows prepared before ``checks`` and ``content_refs`` existed (a
    spill file written by an older version) get them empty."""
    for row in span_rows:
        if "content_refs" not in row:
            row["checks"] = row["content_refs"] = None


def _reason(exc: BaseException) -> str:
    """The store's reason in one line, without SQLAlchemy's echo of the parameters."""
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()
    return f"{type(orig).__name__}: {text[0]}" if text else type(orig).__name__


def _search_text(name: Any, error: Any, inputs: str | None, outputs: str | None) -> str:
    parts = [str(name), str(error or ""), (inputs or "")[:SEARCH_PREVIEW], (outputs or "")[:SEARCH_PREVIEW]]
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
        "description": alert.description or None,
        "trace_ids": dumps(list(alert.trace_ids)) if alert.trace_ids else None,
        "source": alert.source or None,
    }


def _insert(dialect: sa.Dialect, table: sa.Table, columns: Sequence[str]) -> BulkInsert:
    """``INSERT .. ON CONFLICT DO NOTHING`` (alerts: upsert) of ``columns``."""
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
    return BulkInsert(stmt, dialect, table.name, columns)


def _alert_upsert(stmt: Any, excluded: Any) -> Any:
    a = schema.alerts
    updated = ("severity", "state", "value", "threshold", "ended_ns", "summary", "labels",
               "updated_ns", "description", "trace_ids", "source")
    return stmt.on_conflict_do_update(
        index_elements=[a.c.alert_id],
        set_={c: excluded[c] for c in updated},
        # A resolved alert stays resolved when an older state is replayed.
        where=sa.or_(a.c.state != _RESOLVED, excluded.state == _RESOLVED),
    )


class _StoredBefore(Exception):
    """Some span rows of a batch were in the store already (a replay)."""


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
        self._inserts: dict[str, BulkInsert] = {}

    # ---- preparation (pure, no I/O) ----------------------------------------
    def prepare(self, batch: WriteBatch) -> dict[str, list[dict[str, Any]]]:
        """Rows per table, JSON content encoded and capped; JSON-serialisable."""
        cap = self.max_content_bytes
        rows: dict[str, list[dict[str, Any]]] = {}
        if batch.spans:
            rows["spans"] = [self._span_row(span, cap) for span in batch.spans]
        scores = verdicts.attach(rows.get("spans", ()), batch.scores) if batch.scores else ()
        if scores:
            rows["scores"] = [_score_row(score) for score in scores]
        if batch.samples:
            rows["samples"] = [_sample_row(sample) for sample in batch.samples]
        if batch.alerts:
            now = time.time_ns()
            rows["alerts"] = [_alert_row(alert, now) for alert in batch.alerts]
        for table, table_rows in rows.items():
            check = _CHECKERS[table].clean
            for row in table_rows:
                problems = check(row)
                if problems:
                    _note_problems(table, row, problems)
        if batch.spans:
            for row in rows["spans"]:
                add_root_text(row)
            shared_content.share(rows["spans"])
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
                self._inserts[name] = _insert(dialect, table, columns)
        return self._engine

    def open(self) -> None:
        """Connect and migrate now: a bad URL, file, schema or driver is
        reported at start-up rather than at the first write."""
        with translate_errors(self.url):
            self._connect()

    def after_fork(self) -> None:
        """In a forked child: drop the parent's pooled connections without
        closing them (they belong to the parent)."""
        if self._engine is not None:
            self._engine.dispose(close=False)

    def write_prepared(self, rows: dict[str, list[dict[str, Any]]]) -> None:
        """Write prepared rows in one transaction; raises StoreUnavailable to retry."""
        if not any(rows.values()):
            return
        _fill_new_columns(rows.get("spans") or ())
        with translate_errors(self.url):
            engine = self._connect()
            try:
                self._transaction(engine, rows, sort_out=False)
            except _StoredBefore:  # a replay: some spans are in the store already
                self._transaction(engine, rows, sort_out=True)

    def _transaction(self, engine: sa.Engine, rows: dict[str, list[dict[str, Any]]], *,
                     sort_out: bool) -> None:
        """One transaction. The rollups count only the spans it inserts: when
        fewer went in than were given, it is rolled back (:class:`_StoredBefore`)
        and run again with ``sort_out``, which inserts the spans one statement
        each, so that each statement's row count says whether this
        transaction stored that span. (Reading which ids the store held
        first, then inserting, counted a span twice when another writer
        stored it in between.)"""
        with engine.begin() as conn:
            span_rows = rows.get("spans") or []
            spans = self._inserts["spans"]
            if sort_out:
                new_rows = spans.inserted(conn, span_rows)
            else:
                new_rows = span_rows
                if spans.run(conn, span_rows) < len(span_rows):
                    raise _StoredBefore
            for name in ("scores", "samples", "alerts"):
                self._inserts[name].run(conn, rows.get(name) or ())
            if span_rows:
                rollups.write(conn, new_rows)
                write_trace_totals(conn, span_rows, all_new=len(new_rows) == len(span_rows))

    @staticmethod
    def _span_row(span: Span, cap: int) -> dict[str, Any]:
        try:
            return _span_row(span, cap)
        except Exception as exc:  # one span's odd values never cost its batch
            return _unencodable_span_row(span, exc)

    def write_isolating(self, rows: dict[str, list[dict[str, Any]]]) -> list[RejectedRow]:
        """Write prepared rows; if the store rejects the batch, split it until
        the rows it rejects are found, store the rest, and return those.

        Raises :class:`StoreUnavailable` (nothing rejected, retry later) as
        :meth:`write_prepared` does. One bad row costs about log2(batch)
        extra transactions, and no other row.
        """
        try:
            self.write_prepared(rows)
            return []
        except StoreUnavailable:
            raise
        except Exception as exc:
            # Each row must stand alone once the batch is split.
            shared_content.inline(rows.get("spans") or ())
            items = [(table, row) for table in TABLES for row in rows.get(table) or ()]
            if len(items) <= 1:
                return [RejectedRow(table, row, _reason(exc)) for table, row in items]
        half = len(items) // 2
        rejected: list[RejectedRow] = []
        for part in (items[:half], items[half:]):
            sub: dict[str, list[dict[str, Any]]] = {}
            for table, row in part:
                sub.setdefault(table, []).append(row)
            rejected.extend(self.write_isolating(sub))
        return rejected

    def write_scores(self, scores: Sequence[Score]) -> list[RejectedRow]:
        """Store ``scores`` now, without a pipeline (the TUI's feedback):
        prepared and row-checked like any batch, written with
        :meth:`write_isolating`. Returns the rows the store refused; raises
        :class:`StoreUnavailable` when nothing could be written."""
        return self.write_isolating(self.prepare(WriteBatch(scores=tuple(scores))))

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
