"""Check verdicts stored with the span they judged, instead of as score rows.

Most scores are the default checks saying "fine" about a model call: four
per call, each a row in ``scores`` with three indexes, about two thirds of
what a small model span cost on disk. A score row is kept only where it
carries information: a failed or flagged check, feedback, judges,
evaluations. A *passing* check of a span in the same batch is stored in that
span's ``checks`` column instead, a JSON array with one entry per verdict:

    [name, value, label, comment, created_ns - anchor_ns]

where ``anchor_ns`` is the span's ``end_ns`` (its ``start_ns`` while it has
none). ``passed`` is true, ``source`` is ``"check"``, there is no experiment;
every field of the Score comes back as it was, except ``score_id``, which is
``"<span_id>:<index>"`` (the position in the array). Readers get both forms
through the query API (:mod:`chainsight.storage.query`, :mod:`chainsight.storage.quality`):
:func:`decode` in Python, :func:`verdict_source` in SQL.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import sqlalchemy as sa

from chainsight.framework.model import Score
from chainsight.storage import schema
from chainsight.storage.serialize import dumps

COLUMN: Final = "checks"


def compactable(score: Score) -> bool:
    """Whether ``score`` is a passing check verdict on a span whose fields the
    compact form holds exactly (anything odd stays a row, checked as rows are)."""
    if score.source != "check" or score.passed is not True or score.experiment_id is not None:
        return False
    if type(score.name) is not str or type(score.created_ns) is not int or score.span_id is None:
        return False
    value = score.value
    if value is not None and (type(value) not in (float, int) or not math.isfinite(value)):
        return False
    return (score.label is None or type(score.label) is str) and (
        score.comment is None or type(score.comment) is str)


def anchor_ns(start_ns: Any, end_ns: Any) -> int | None:
    """What a verdict's time is stored relative to; None when the span has no usable time."""
    anchor = end_ns if end_ns is not None else start_ns
    return anchor if type(anchor) is int else None


def attach(span_rows: Sequence[dict[str, Any]], scores: Iterable[Score]) -> list[Score]:
    """Put each compactable verdict on its span's row (``checks``, JSON text);
    return the scores that need rows of their own, in their order."""
    by_span: dict[Any, dict[str, Any]] = {row["span_id"]: row for row in span_rows}
    entries: dict[Any, tuple[int, list[list[Any]]]] = {}  # span id -> (anchor, verdicts)
    rows: list[Score] = []
    for score in scores:
        span_id = score.span_id
        held = entries.get(span_id)
        if held is None:
            row = by_span.get(span_id)
            anchor = None if row is None else anchor_ns(row["start_ns"], row["end_ns"])
            if anchor is None or row is None:
                rows.append(score)
                continue
            held = entries[span_id] = (anchor, [])
            trace_id = row["trace_id"]
        else:
            trace_id = by_span[span_id]["trace_id"]
        if score.trace_id != trace_id or not compactable(score):
            rows.append(score)
            continue
        held[1].append([score.name, score.value, score.label, score.comment, score.created_ns - held[0]])
    for span_id, (_anchor, verdicts) in entries.items():
        if verdicts:
            by_span[span_id][COLUMN] = dumps(verdicts)
    return rows


def decode(span_id: str, trace_id: str, start_ns: int, end_ns: int | None, checks: Any) -> list[Score]:
    """The Scores of one span's ``checks`` value (as the JSON column reads it)."""
    if not checks:
        return []
    anchor = anchor_ns(start_ns, end_ns) or 0
    out = []
    for index, (name, value, label, comment, offset) in enumerate(checks):
        out.append(Score(name, "check", trace_id, span_id, None if value is None else float(value),
                         label, True, comment, None, f"{span_id}:{index}", anchor + int(offset)))
    return out


@dataclass(frozen=True)
class VerdictSource:
    """The verdicts of ``spans`` as SQL: join ``joined`` after ``spans`` (it
    names the ``checks`` array's elements); the columns read one element."""

    joined: sa.FromClause
    name: sa.ColumnElement[Any]
    value: sa.ColumnElement[Any]
    label: sa.ColumnElement[Any]
    comment: sa.ColumnElement[Any]
    created_ns: sa.ColumnElement[Any]
    score_id: sa.ColumnElement[Any]

    def select_from(self, left: sa.FromClause) -> sa.FromClause:
        """``left`` (``spans``, or a join that has it) with one row per verdict."""
        return left.join(self.joined, sa.true())

    def score_columns(self) -> list[sa.ColumnElement[Any]]:
        """The ``scores`` table's columns, in its order, for a UNION with it."""
        s = schema.spans
        values: dict[str, sa.ColumnElement[Any]] = {
            "score_id": self.score_id, "name": self.name, "value": self.value, "label": self.label,
            "passed": sa.true(), "source": sa.literal("check", sa.Text), "comment": self.comment,
            "trace_id": s.c.trace_id, "span_id": s.c.span_id,
            "experiment_id": sa.null().cast(sa.Text), "created_ns": self.created_ns,
        }
        return [values[c.name].label(c.name) for c in schema.scores.columns]


def verdict_source(dialect_name: str) -> VerdictSource:
    """:class:`VerdictSource` for SQLite (``json_each``) or PostgreSQL
    (``jsonb_array_elements``)."""
    s = schema.spans
    anchor = sa.func.coalesce(s.c.end_ns, s.c.start_ns)
    if dialect_name == "postgresql":
        # A function in FROM may read the tables before it (LATERAL is implied).
        pg = sa.func.jsonb_array_elements(s.c.checks).table_valued(
            "value", with_ordinality="ordinal", name="verdict", joins_implicitly=True).render_derived()

        def pick(i: int) -> sa.ColumnElement[Any]:
            return pg.c.value.op("->>")(i)

        index: sa.ColumnElement[Any] = pg.c.ordinal - 1
        element = pg
    else:
        lite = sa.func.json_each(s.c.checks).table_valued("key", "value", name="verdict")

        def pick(i: int) -> sa.ColumnElement[Any]:
            return sa.func.json_extract(lite.c.value, f"$[{i}]")

        index = lite.c.key
        element = lite
    return VerdictSource(
        joined=element,
        name=sa.cast(pick(0), sa.Text),
        value=sa.cast(pick(1), sa.Float),
        label=sa.cast(pick(2), sa.Text),
        comment=sa.cast(pick(3), sa.Text),
        created_ns=anchor + sa.cast(pick(4), sa.BigInteger),
        score_id=s.c.span_id + sa.literal(":") + sa.cast(index, sa.Text),
    )
