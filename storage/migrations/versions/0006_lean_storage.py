"""lean storage: check verdicts on spans, content once per trace, fewer columns and indexes

Converts what is stored, nothing lost:

* passing check scores of a span (``source = 'check'``, passed, no
  experiment) move from ``scores`` rows to the span's ``checks`` array
  (storage/verdicts.py); every other score stays a row;
* a span's inputs, outputs or metadata that repeat another span's of the same
  trace become references (``content_refs``, storage/shared_content.py);
* ``spans.search_text``, ``spans.tags_text`` (copies of what the trace row
  holds) and ``spans.latency_ms`` (``end_ns - start_ns``) are dropped; spans
  are indexed by time alone (by kind and time served only queries that name
  a kind, not a window over every kind); the indexes no query uses (traces by model: the model
  filter also matches any span's model, so it cannot use it; scores by name
  and by experiment) are dropped, and scores get one by time.

The downgrade puts it all back as it was, except that a verdict's score id
is its ``<span_id>:<index>`` (the original id was not kept).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27 15:00:00
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from typing import Any

import orjson
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from chainsight.framework.model import Score
from chainsight.storage import shared_content
from chainsight.storage.verdicts import anchor_ns, compactable, decode

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHUNK = 500  # traces per round trip
JSON = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True, astext_type=sa.Text()),
                                               'postgresql')
CONTENT = ("inputs", "outputs", "metadata")

# The tables as this migration sees them (not storage.schema, which moves on).
spans = sa.table(
    "spans", sa.column("span_id", sa.Text), sa.column("trace_id", sa.Text), sa.column("parent_id", sa.Text),
    sa.column("start_ns", sa.BigInteger), sa.column("end_ns", sa.BigInteger),
    *(sa.column(name, JSON) for name in ("inputs", "outputs", "metadata", "checks")),
    sa.column("content_refs", sa.Text), sa.column("latency_ms", sa.Float),
    sa.column("tags_text", sa.Text), sa.column("search_text", sa.Text),
)
scores = sa.table(
    "scores", *(sa.column(name, sa.Text) for name in (
        "score_id", "name", "label", "source", "comment", "trace_id", "span_id", "experiment_id")),
    sa.column("value", sa.Float), sa.column("passed", sa.Boolean), sa.column("created_ns", sa.BigInteger),
)
traces = sa.table("traces", sa.column("trace_id", sa.Text), sa.column("root_span_id", sa.Text),
                  sa.column("tags", sa.Text), sa.column("search_text", sa.Text))


def _trace_chunks(conn: sa.Connection) -> Iterator[list[str]]:
    """Every trace id that has spans, in chunks, in id order."""
    ids = [r[0] for r in conn.execute(sa.select(spans.c.trace_id).distinct().order_by(spans.c.trace_id))]
    for i in range(0, len(ids), CHUNK):
        yield ids[i : i + CHUNK]


def _text(value: Any) -> str | None:
    """One canonical text per JSON value: equal values, equal texts."""
    return None if value is None else orjson.dumps(value).decode()


def upgrade() -> None:
    with op.batch_alter_table('spans', schema=None) as batch_op:
        batch_op.add_column(sa.Column('checks', JSON, nullable=True))
        batch_op.add_column(sa.Column('content_refs', sa.Text(), nullable=True))
    conn = op.get_bind()
    for chunk in _trace_chunks(conn):
        _compact_verdicts(conn, chunk)
        _share_content(conn, chunk)
    with op.batch_alter_table('spans', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_spans_kind_start_ns'))
        batch_op.drop_column('search_text')
        batch_op.drop_column('tags_text')
        batch_op.drop_column('latency_ms')
    op.create_index(op.f('ix_spans_start_ns'), 'spans', ['start_ns'], unique=False)
    with op.batch_alter_table('traces', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_traces_model_start_ns'))
    with op.batch_alter_table('scores', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_scores_experiment_id'))
        batch_op.drop_index(batch_op.f('ix_scores_name_created_ns'))
        batch_op.create_index(batch_op.f('ix_scores_created_ns'), ['created_ns'], unique=False)


def _compact_verdicts(conn: sa.Connection, trace_ids: list[str]) -> None:
    """Passing check scores of these traces' spans onto the spans, oldest first."""
    stmt = (
        sa.select(scores, spans.c.start_ns, spans.c.end_ns)
        .join_from(scores, spans, sa.and_(spans.c.span_id == scores.c.span_id,
                                          spans.c.trace_id == scores.c.trace_id))
        .where(scores.c.trace_id.in_(trace_ids), scores.c.source == "check",
               scores.c.passed.is_(True), scores.c.experiment_id.is_(None))
        .order_by(scores.c.span_id, scores.c.created_ns, scores.c.score_id)
    )
    entries: dict[str, list[list[Any]]] = {}
    moved: list[str] = []
    for r in conn.execute(stmt):
        score = Score(r.name, r.source, r.trace_id, r.span_id, r.value, r.label, True, r.comment,
                      None, r.score_id, r.created_ns)
        anchor = anchor_ns(r.start_ns, r.end_ns)
        if not compactable(score) or anchor is None:
            continue
        value = None if score.value is None else float(score.value)
        entries.setdefault(r.span_id, []).append(
            [score.name, value, score.label, score.comment, score.created_ns - anchor])
        moved.append(r.score_id)
    if not entries:
        return
    conn.execute(spans.update().where(spans.c.span_id == sa.bindparam("b_span_id"))
                 .values(checks=sa.bindparam("b_checks", type_=JSON)),
                 [{"b_span_id": span_id, "b_checks": verdicts} for span_id, verdicts in entries.items()])
    for i in range(0, len(moved), CHUNK):
        conn.execute(scores.delete().where(scores.c.score_id.in_(moved[i : i + CHUNK])))


def _share_content(conn: sa.Connection, trace_ids: list[str]) -> None:
    """These traces' repeated content as references, as the writer would store it."""
    stmt = (
        sa.select(spans.c.span_id, spans.c.trace_id,
                  *(sa.cast(spans.c[name], sa.Text).label(name) for name in CONTENT))
        .where(spans.c.trace_id.in_(trace_ids))
        .order_by(spans.c.trace_id, spans.c.end_ns, spans.c.start_ns, spans.c.span_id)
    )
    rows = []
    for r in conn.execute(stmt):
        row: dict[str, Any] = {"span_id": r.span_id, "trace_id": r.trace_id, "content_refs": None}
        for name in CONTENT:
            raw = r._mapping[name]
            row[name] = None if raw is None else _text(json.loads(raw))
        rows.append(row)
    shared_content.share(rows)
    changed = [row for row in rows if row["content_refs"]]
    if not changed:
        return
    # One statement per combination of fields left out (at most seven).
    by_fields: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in changed:
        fields = tuple(name for name in CONTENT if row[name] is None and
                       any(ref[0] == shared_content.CODES[name] for ref in row["content_refs"].split(" ")))
        by_fields.setdefault(fields, []).append({"b_span_id": row["span_id"], "b_refs": row["content_refs"]})
    for fields, params in by_fields.items():
        values: dict[str, Any] = {name: sa.null() for name in fields}
        conn.execute(spans.update().where(spans.c.span_id == sa.bindparam("b_span_id"))
                     .values(content_refs=sa.bindparam("b_refs"), **values), params)


def downgrade() -> None:
    op.create_index('ix_traces_model_start_ns', 'traces', ['model', 'start_ns'], unique=False)
    op.drop_index(op.f('ix_spans_start_ns'), table_name='spans')
    op.create_index('ix_spans_kind_start_ns', 'spans', ['kind', 'start_ns'], unique=False)
    with op.batch_alter_table('scores', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_scores_created_ns'))
        batch_op.create_index(batch_op.f('ix_scores_name_created_ns'), ['name', 'created_ns'], unique=False)
        batch_op.create_index(batch_op.f('ix_scores_experiment_id'), ['experiment_id'], unique=False)
    with op.batch_alter_table('spans', schema=None) as batch_op:
        batch_op.add_column(sa.Column('latency_ms', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('tags_text', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('search_text', sa.Text(), nullable=True))
    conn = op.get_bind()
    conn.execute(spans.update().where(spans.c.end_ns.is_not(None))
                 .values(latency_ms=sa.cast(spans.c.end_ns - spans.c.start_ns, sa.Float) / 1e6))
    conn.execute(spans.update().where(spans.c.parent_id.is_(None)).values(
        tags_text=sa.select(traces.c.tags).where(traces.c.trace_id == spans.c.trace_id).scalar_subquery(),
        search_text=sa.select(traces.c.search_text).where(traces.c.trace_id == spans.c.trace_id)
        .scalar_subquery(),
    ))
    for chunk in _trace_chunks(conn):
        _expand_verdicts(conn, chunk)
        _inline_content(conn, chunk)
    with op.batch_alter_table('spans', schema=None) as batch_op:
        batch_op.drop_column('content_refs')
        batch_op.drop_column('checks')


def _expand_verdicts(conn: sa.Connection, trace_ids: list[str]) -> None:
    stmt = (sa.select(spans.c.span_id, spans.c.trace_id, spans.c.start_ns, spans.c.end_ns, spans.c.checks)
            .where(spans.c.trace_id.in_(trace_ids), spans.c.checks.is_not(None)))
    rows: list[dict[str, Any]] = [{"score_id": s.score_id, "name": s.name, "value": s.value, "label": s.label, "passed": True,
             "source": s.source, "comment": s.comment, "trace_id": s.trace_id, "span_id": s.span_id,
             "experiment_id": None, "created_ns": s.created_ns}
            for r in conn.execute(stmt) for s in decode(r.span_id, r.trace_id, r.start_ns, r.end_ns, r.checks)]
    for row in rows:
        if row["value"] is not None and not math.isfinite(row["value"]):  # pragma: no cover - never stored
            row["value"] = None
    if rows:
        conn.execute(scores.insert(), rows)


def _inline_content(conn: sa.Connection, trace_ids: list[str]) -> None:
    stmt = (sa.select(spans.c.span_id, spans.c.content_refs,
                      *(sa.cast(spans.c[name], sa.Text).label(name) for name in CONTENT))
            .where(spans.c.trace_id.in_(trace_ids)))
    rows = []
    for r in conn.execute(stmt):
        row: dict[str, Any] = {"span_id": r.span_id, "content_refs": r.content_refs}
        for name in CONTENT:
            raw = r._mapping[name]
            row[name] = None if raw is None else _text(json.loads(raw))
        rows.append(row)
    referring = {row["span_id"]: [shared_content.FIELDS[ref[0]] for ref in row["content_refs"].split(" ")]
                 for row in rows if row["content_refs"]}
    if not referring:
        return
    shared_content.inline(rows)
    for row in rows:
        fields = referring.get(row["span_id"])
        if fields:
            values = {name: sa.bindparam(f"b_{name}", type_=JSON) for name in fields}
            conn.execute(spans.update().where(spans.c.span_id == row["span_id"])
                         .values(content_refs=None, **values),
                         {f"b_{name}": None if row[name] is None else json.loads(row[name]) for name in fields})
