"""The read API: the only contract between the store and its readers.

The CLI, the TUI and evaluation reports read through :class:`Store`; none of
them touches the tables. Lists use keyset pagination (an opaque cursor holding
the last row's sort value and id), never OFFSET, so page N costs what page 1
costs.

Semantics worth knowing:

* ``TraceFilter.model`` matches a trace whose summary model (its first LLM
  call's) is that model *or* that has any span with that model; exact match.
* ``name`` and ``text`` are case-insensitive substring matches; ``text``
  searches the trace's name, root error and root inputs/outputs (first 2000
  characters of each); ``tag`` matches the root span's tags exactly.
* ``aggregates``/``timeseries`` with ``group_by="model"`` (or ``"provider"``
  or ``"kind"``) aggregate the LLM spans that started in the window; without
  ``group_by``, whole traces: their root spans (count, errors, latency), their
  model calls (TTFT, TPOT: every streamed call) and every span (tokens, cost).
  Both come from the per-minute rollups (:mod:`chainsight.storage.rollups`:
  counts and sums exact, percentiles within 2%), so their cost follows the
  window's length, not its number of spans. Grouped by a trace column (name,
  user, session...) or with ``from_spans``, they read the rows: there TTFT and
  TPOT of a trace are its first streamed LLM call's, and percentiles
  interpolate linearly between ranks (``percentile_cont``). PostgreSQL
  computes every aggregate itself; SQLite has no percentile function, so its
  rows' values are read in one pass and added up and sorted here
  (:func:`_sqlite_metrics`).
* ``Trace.score_summary`` maps a score name to ``{"value": mean or None,
  "count": n, "passed": k, "failed": m}``.
"""

from __future__ import annotations

import base64
import json
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import sqlalchemy as sa

from chainsight.framework.model import SPAN_FIELDS, Alert, Sample, Score, Span, Trace
from chainsight.storage import rollups, schema, shared_content, verdicts
from chainsight.storage.engine import open_engine, translate_errors

T = schema.traces
S = schema.spans

ORDER_COLUMNS: Final[dict[str, sa.Column[Any]]] = {
    "start_ns": T.c.start_ns,
    "start": T.c.start_ns,
    "time": T.c.start_ns,
    "duration": T.c.duration_ms,
    "duration_ms": T.c.duration_ms,
    "latency": T.c.duration_ms,
    "cost": T.c.cost_usd,
    "cost_usd": T.c.cost_usd,
    "tokens": T.c.total_tokens,
    "total_tokens": T.c.total_tokens,
    "spans": T.c.span_count,
    "span_count": T.c.span_count,
    "errors": T.c.error_count,
    "error_count": T.c.error_count,
}
# "kind": every LLM call in one group (the per-call figures of `chainsight stats`).
SPAN_GROUPS: Final = {"model": S.c.model, "provider": S.c.provider, "kind": S.c.kind}
TRACE_GROUPS: Final = {
    "name": T.c.name,
    "status": T.c.status,
    "user": T.c.user_id,
    "user_id": T.c.user_id,
    "session": T.c.session_id,
    "session_id": T.c.session_id,
    "trace_model": T.c.model,
}
METRICS: Final = (
    "requests", "errors", "error_rate", "latency_p50", "latency_p95", "latency_p99",
    "ttft_p50", "ttft_p95", "tpot_p50", "tpot_p95", "input_tokens", "output_tokens",
    "tokens", "cost",
)


@dataclass(frozen=True)
class TraceFilter:
    status: str | None = None
    name: str | None = None
    model: str | None = None
    user_id: str | None = None
    session_id: str | None = None
    tag: str | None = None
    since_ns: int | None = None
    until_ns: int | None = None
    min_cost: float | None = None
    min_latency_s: float | None = None
    text: str | None = None


@dataclass(frozen=True)
class TracePage:
    items: list[Trace]
    next_cursor: str | None


@dataclass(frozen=True)
class TraceDetail:
    trace: Trace
    spans: list[Span]
    scores: list[Score]
    samples: list[Sample]


@dataclass(frozen=True)
class AggregateRow:
    group: str | None
    count: int
    error_count: int
    error_rate: float
    latency_p50: float | None
    latency_p95: float | None
    latency_p99: float | None
    ttft_p50: float | None
    ttft_p95: float | None
    tpot_p50: float | None
    tpot_p95: float | None
    input_tokens: int
    output_tokens: int
    cost_usd: float | None
    unpriced_count: int


@dataclass(frozen=True)
class ScoreStat:
    """The scores of one (source, name) in a window, added up by the store."""

    source: str
    name: str
    count: int
    values: int  # how many have a value
    value_sum: float | None
    verdicts: int  # how many say passed or failed
    passed: int

    @property
    def mean(self) -> float | None:
        return self.value_sum / self.values if self.values and self.value_sum is not None else None

    @property
    def pass_rate(self) -> float | None:
        return self.passed / self.verdicts if self.verdicts else None


@dataclass(frozen=True)
class SeriesPoint:
    """One bucket of a time series: ``[start_ns, end_ns)``; value None = no data."""

    start_ns: int
    end_ns: int
    group: str | None
    value: float | None


# ---- helpers -------------------------------------------------------------


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (``percentile_cont``)."""
    n = len(sorted_values)
    if n == 0:
        return None
    k = (n - 1) * q
    lo = math.floor(k)
    hi = min(lo + 1, n - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def filter_clauses(f: TraceFilter | None) -> list[sa.ColumnElement[bool]]:
    if f is None:
        return []
    out: list[sa.ColumnElement[bool]] = []
    if f.status:
        out.append(T.c.status == f.status)
    if f.name:
        out.append(sa.func.lower(T.c.name).like(_like(f.name.lower()), escape="\\"))
    if f.model:
        other = S.alias("model_span")
        out.append(
            sa.or_(
                T.c.model == f.model,
                sa.exists().where(other.c.trace_id == T.c.trace_id, other.c.model == f.model),
            )
        )
    if f.user_id:
        out.append(T.c.user_id == f.user_id)
    if f.session_id:
        out.append(T.c.session_id == f.session_id)
    if f.tag:
        sep = schema.TAG_SEP
        out.append(T.c.tags.like(_like(sep + f.tag + sep), escape="\\"))
    if f.since_ns is not None:
        out.append(T.c.start_ns >= f.since_ns)
    if f.until_ns is not None:
        out.append(T.c.start_ns < f.until_ns)
    if f.min_cost is not None:
        out.append(T.c.cost_usd >= f.min_cost)
    if f.min_latency_s is not None:
        out.append(T.c.duration_ms >= f.min_latency_s * 1000.0)
    if f.text:
        out.append(T.c.search_text.like(_like(f.text.lower()), escape="\\"))
    return out


def _encode_cursor(order: str, descending: bool, value: Any, trace_id: str) -> str:
    raw = json.dumps([order, descending, value, trace_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str, order: str, descending: bool) -> tuple[Any, str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        c_order, c_desc, value, trace_id = json.loads(base64.urlsafe_b64decode(padded))
    except Exception as error:
        raise ValueError(f"invalid cursor {cursor!r}") from error
    if c_order != order or c_desc != descending:
        raise ValueError("cursor was made for another sort order")
    return value, str(trace_id)


def _after(col: sa.Column[Any], descending: bool, value: Any, trace_id: str) -> sa.ColumnElement[bool]:
    """Rows after (value, trace_id) in the order NULLs-smallest, ties by trace_id."""
    tid = T.c.trace_id
    if descending:
        if value is None:
            return sa.and_(col.is_(None), tid < trace_id)
        return sa.or_(col < value, sa.and_(col == value, tid < trace_id), col.is_(None))
    if value is None:
        return sa.or_(sa.and_(col.is_(None), tid > trace_id), col.is_not(None))
    return sa.or_(col > value, sa.and_(col == value, tid > trace_id))


def _tags(text: str | None) -> tuple[str, ...]:
    if not text:
        return ()
    return tuple(t for t in text.split(schema.TAG_SEP) if t)


def _trace(row: Any, summaries: dict[str, dict[str, Any]]) -> Trace:
    return Trace(
        trace_id=row.trace_id,
        name=row.name,
        status=row.status,
        start_ns=row.start_ns,
        end_ns=row.end_ns,
        span_count=row.span_count,
        llm_count=row.llm_count,
        error_count=row.error_count,
        input_tokens=row.input_tokens,
        output_tokens=row.output_tokens,
        cost_usd=row.cost_usd,
        ttft_s=row.ttft_ms / 1000.0 if row.ttft_ms is not None else None,
        model=row.model,
        user_id=row.user_id,
        session_id=row.session_id,
        tags=_tags(row.tags),
        score_summary=summaries.get(row.trace_id, {}),
    )


_SPAN_READ = [S.c[name] for name in SPAN_FIELDS]
_VERDICT_READ = [S.c.span_id, S.c.trace_id, S.c.start_ns, S.c.end_ns, S.c.checks]


def _span(row: Any) -> Span:
    data = dict(row._mapping)
    data["tokens_estimated"] = bool(data["tokens_estimated"])
    return Span.from_dict(data)


def _verdicts(row: Any) -> list[Score]:
    """The check verdicts stored on a span row (see storage/verdicts.py)."""
    return verdicts.decode(row.span_id, row.trace_id, row.start_ns, row.end_ns, row.checks)


def _by_time(scores: list[Score]) -> list[Score]:
    scores.sort(key=lambda sc: (sc.created_ns, sc.score_id))
    return scores


def _score(row: Any) -> Score:
    return Score(
        name=row.name, source=row.source, trace_id=row.trace_id, span_id=row.span_id,
        value=row.value, label=row.label, passed=None if row.passed is None else bool(row.passed),
        comment=row.comment, experiment_id=row.experiment_id, score_id=row.score_id,
        created_ns=row.created_ns,
    )


def _sample(row: Any) -> Sample:
    return Sample(name=row.name, value=row.value, source=row.source, time_ns=row.time_ns,
                  labels=dict(row.labels or {}))


def _alert(row: Any) -> Alert:
    trace_ids = row.trace_ids if isinstance(row.trace_ids, list) else []
    return Alert(
        rule=row.rule, state=row.state, severity=row.severity, value=row.value,
        threshold=row.threshold, started_ns=row.started_ns, ended_ns=row.ended_ns,
        summary=row.summary, labels=dict(row.labels or {}), alert_id=row.alert_id,
        description=row.description or "", trace_ids=tuple(str(t) for t in trace_ids),
        source=row.source or "",
    )


def _metric(row: AggregateRow, metric: str) -> float | None:
    simple: dict[str, float | None] = {
        "requests": row.count,
        "errors": row.error_count,
        "error_rate": row.error_rate if row.count else None,
        "input_tokens": row.input_tokens,
        "output_tokens": row.output_tokens,
        "tokens": row.input_tokens + row.output_tokens,
        "cost": row.cost_usd,
    }
    if metric in simple:
        return simple[metric]
    value: float | None = getattr(row, metric)
    return value


PIPELINE_COUNTERS: Final = ("written", "dropped", "failed", "spilled", "dead_lettered")


class Store:
    """Read access to one store (SQLite file or PostgreSQL database).

    ``create=False``: raise :class:`chainsight.storage.engine.StoreNotFound` instead of
    making a new, empty store when there is none at ``url`` (what read-only
    commands want: a typo in a path must not look like an empty store).
    """

    def __init__(self, url: str, *, create: bool = True) -> None:
        self.url = url
        self.engine = open_engine(url, create=create)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _rows(self, stmt: sa.Executable, params: dict[str, Any] | None = None) -> list[Any]:
        with translate_errors(self.url), self.engine.connect() as conn:
            return list(conn.execute(stmt, params or {}))

    # ---- traces ------------------------------------------------------------
    def list_traces(
        self,
        filters: TraceFilter | None = None,
        *,
        limit: int = 50,
        cursor: str | None = None,
        order: str = "start_ns",
        descending: bool = True,
    ) -> TracePage:
        col = ORDER_COLUMNS.get(order)
        if col is None:
            raise ValueError(f"cannot order by {order!r}; use one of {', '.join(ORDER_COLUMNS)}")
        clauses = filter_clauses(filters)
        if cursor:
            value, last_id = _decode_cursor(cursor, order, descending)
            clauses.append(_after(col, descending, value, last_id))
        if descending:
            ordering = [col.desc().nulls_last(), T.c.trace_id.desc()]
        else:
            ordering = [col.asc().nulls_first(), T.c.trace_id.asc()]
        stmt = sa.select(T).where(*clauses).order_by(*ordering).limit(max(1, limit) + 1)
        rows = self._rows(stmt)
        more = len(rows) > limit
        rows = rows[: max(1, limit)]
        summaries = self.score_summaries([r.trace_id for r in rows])
        items = [_trace(r, summaries) for r in rows]
        next_cursor = None
        if more and rows:
            last = rows[-1]
            next_cursor = _encode_cursor(order, descending, getattr(last, col.name), last.trace_id)
        return TracePage(items=items, next_cursor=next_cursor)

    def count_traces(self, filters: TraceFilter | None = None) -> int:
        stmt = sa.select(sa.func.count()).select_from(T).where(*filter_clauses(filters))
        return int(self._rows(stmt)[0][0])

    def resolve_trace_id(self, short: str, limit: int = 2) -> list[str]:
        """Trace ids equal to ``short``, else starting or ending with it (at
        most ``limit``). Short ids are shown as the end of the id, its random
        part; a prefix still works for ids copied from elsewhere."""
        return self._resolve(T.c.trace_id, short, limit)

    def resolve_span_id(self, trace_id: str, short: str, limit: int = 2) -> list[str]:
        """Span ids of trace ``trace_id`` equal to ``short``, else starting or
        ending with it (at most ``limit``), as :meth:`resolve_trace_id`."""
        return self._resolve(S.c.span_id, short, limit, S.c.trace_id == trace_id)

    def find_span_ids(self, short: str, limit: int = 2) -> list[tuple[str, str]]:
        """``(trace id, span id)`` of the spans, in any trace, whose id is
        ``short``, else starts or ends with it (at most ``limit``). Span ids are
        lower-case hex and ``short`` is lower-cased first: ``LIKE`` ignores case
        on SQLite and not on PostgreSQL, and an id must match on both. A
        suffix match (``LIKE '%x'``, the ends the CLI shows) cannot use the
        index: it scans the spans table when ``short`` is not a whole id."""
        short = short.lower()
        ids = self._resolve(S.c.span_id, short, limit) if short else []
        if not ids:
            return []
        rows = self._rows(sa.select(S.c.trace_id, S.c.span_id).where(S.c.span_id.in_(ids))
                          .order_by(S.c.span_id))
        return [(r.trace_id, r.span_id) for r in rows]

    def _resolve(self, col: sa.Column[Any], short: str, limit: int,
                 *where: sa.ColumnElement[bool]) -> list[str]:
        if self._rows(sa.select(col).where(col == short, *where)):
            return [short]
        literal = short.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        stmt = (
            sa.select(col)
            .where(*where, sa.or_(col.like(literal + "%", escape="\\"),
                                  col.like("%" + literal, escape="\\")))
            .order_by(col)
            .limit(limit)
        )
        return [r[0] for r in self._rows(stmt)]

    def get_trace(self, trace_id: str) -> TraceDetail | None:
        """One trace with its spans (by start), scores and samples in its window.

        ``trace_id`` may be a unique short id (end or prefix); None when nothing or
        several match.
        """
        ids = self.resolve_trace_id(trace_id) if trace_id else []
        if len(ids) != 1:
            return None
        tid = ids[0]
        with translate_errors(self.url), self.engine.connect() as conn:
            row = conn.execute(sa.select(T).where(T.c.trace_id == tid)).first()
            if row is None:
                return None
            spans: list[Span] = []
            scores: list[Score] = []
            refs: dict[str, str] = {}
            for r in conn.execute(
                sa.select(*_SPAN_READ, S.c.checks, S.c.content_refs)
                .where(S.c.trace_id == tid).order_by(S.c.start_ns, S.c.span_id)
            ):
                spans.append(_span(r))
                scores.extend(_verdicts(r))
                if r.content_refs:
                    refs[r.span_id] = r.content_refs
            shared_content.resolve(spans, refs)
            sc = schema.scores
            scores.extend(_score(r) for r in conn.execute(sa.select(sc).where(sc.c.trace_id == tid)))
            _by_time(scores)
            sm = schema.samples
            end = row.end_ns if row.end_ns is not None else row.start_ns
            samples = [
                _sample(r)
                for r in conn.execute(
                    sa.select(sm)
                    .where(sm.c.time_ns >= row.start_ns, sm.c.time_ns <= end)
                    .order_by(sm.c.time_ns, sm.c.sample_id)
                )
            ]
        trace = _trace(row, _summarise(scores))
        return TraceDetail(trace=trace, spans=spans, scores=scores, samples=samples)

    def score_summaries(self, trace_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        ids = list(trace_ids)
        if not ids:
            return {}
        sc = schema.scores
        found = [_score(r) for r in self._rows(sa.select(sc).where(sc.c.trace_id.in_(ids)))]
        stmt = sa.select(*_VERDICT_READ).where(S.c.trace_id.in_(ids), S.c.checks.is_not(None))
        for r in self._rows(stmt):
            found.extend(_verdicts(r))
        return _summarise(_by_time(found))

    # ---- scores, alerts, samples --------------------------------------------
    def list_scores(
        self,
        trace_id: str | None = None,
        name: str | None = None,
        source: str | None = None,
        since_ns: int | None = None,
        limit: int = 1000,
    ) -> list[Score]:
        """Scores newest first: score rows and the check verdicts stored on
        spans. Without ``trace_id`` the verdicts are found by scanning the
        spans that have any: a window (``since_ns``) bounds what is read,
        not what is scanned."""
        sc = schema.scores
        clauses = []
        if trace_id is not None:
            clauses.append(sc.c.trace_id == trace_id)
        if name is not None:
            clauses.append(sc.c.name == name)
        if source is not None:
            clauses.append(sc.c.source == source)
        if since_ns is not None:
            clauses.append(sc.c.created_ns >= since_ns)
        order = [sc.c.created_ns.desc(), sc.c.score_id.desc()]
        found = [_score(r) for r in self._rows(sa.select(sc).where(*clauses).order_by(*order).limit(limit))]
        if source in (None, "check"):
            v = verdicts.verdict_source(self.engine.dialect.name)
            where: list[sa.ColumnElement[bool]] = [S.c.checks.is_not(None)]
            if trace_id is not None:
                where.append(S.c.trace_id == trace_id)
            if name is not None:
                where.append(v.name == name)
            if since_ns is not None:
                where.append(v.created_ns >= since_ns)
            stmt = (sa.select(*v.score_columns()).select_from(v.select_from(S)).where(*where)
                    .order_by(v.created_ns.desc(), v.score_id.desc()).limit(limit))
            found.extend(_score(r) for r in self._rows(stmt))
        found.sort(key=lambda sc: (sc.created_ns, sc.score_id), reverse=True)
        return found[:limit]

    def score_stats(self, since_ns: int | None = None, until_ns: int | None = None, *,
                    from_spans: bool = False) -> list[ScoreStat]:
        """Per (source, name), by source and name: score rows created in the
        window, and the passing check verdicts stored on the spans that
        started in it (a verdict is made within its span's run), from the
        rollups; ``from_spans`` reads every span's verdicts instead (the
        reference the rollups are checked against). The rollups' verdicts
        are counted from the oldest stored span on: before it a prune took
        the failed checks' rows, and the passes alone would read as 100%."""
        sc = schema.scores
        passed = sa.func.sum(sa.case((sc.c.passed.is_(True), 1), else_=0))
        rows = (sa.select(sc.c.source, sc.c.name, sa.func.count(), sa.func.count(sc.c.value),
                          sa.func.sum(sc.c.value), sa.func.count(sc.c.passed), passed)
                .where(*_between(sc.c.created_ns, since_ns, until_ns))
                .group_by(sc.c.source, sc.c.name))
        found: list[tuple[Any, ...]] = list(self._rows(rows))
        if from_spans:
            v, n = verdicts.verdict_source(self.engine.dialect.name), sa.func.count()
            stored = (sa.select(sa.literal("check", sa.Text), v.name, n, sa.func.count(v.value),
                                sa.func.sum(v.value), n, n)
                      .select_from(v.select_from(S))
                      .where(S.c.checks.is_not(None), *_between(S.c.start_ns, since_ns, until_ns))
                      .group_by(v.name))
            found += self._rows(stored)
        else:
            with translate_errors(self.url), self.engine.connect() as conn:
                oldest = conn.execute(sa.select(sa.func.min(S.c.start_ns))).scalar()
                checks = {} if oldest is None else rollups.check_totals(
                    conn, oldest if since_ns is None else max(since_ns, oldest), until_ns)
            found += [("check", name, n, values, value_sum if values else None, n, n)
                      for name, (n, values, value_sum) in checks.items()]
        totals: dict[tuple[str, str], list[Any]] = {}
        for source, name, count, values, value_sum, judged, ok in found:
            entry = totals.setdefault((source, name), [0, 0, None, 0, 0])
            entry[0] += int(count)
            entry[1] += int(values)
            if value_sum is not None:
                entry[2] = (entry[2] or 0.0) + float(value_sum)
            entry[3] += int(judged)
            entry[4] += int(ok or 0)
        return [ScoreStat(source, name, *entry) for (source, name), entry in sorted(totals.items())]

    def list_alerts(self, state: str | None = None, limit: int = 100,
                    since_ns: int | None = None, source: str | None = None) -> list[Alert]:
        """Alerts, newest first. ``state=None``: pending, firing and resolved
        ones (not ``inactive``: pending ones that never fired; ask for them by
        name). ``since_ns``: only alerts active at some time since then;
        ``source``: only those recorded by it (``"rules"``: the evaluator)."""
        al = schema.alerts
        clauses: list[sa.ColumnElement[bool]] = [
            al.c.state == state if state is not None else al.c.state != "inactive"]
        if source is not None:
            clauses.append(al.c.source == source)
        if since_ns is not None:
            clauses.append(sa.or_(al.c.started_ns >= since_ns, al.c.ended_ns.is_(None),
                                  al.c.ended_ns >= since_ns))
        stmt = (sa.select(al).where(*clauses)
                .order_by(al.c.started_ns.desc(), al.c.alert_id.desc()).limit(limit))
        return [_alert(r) for r in self._rows(stmt)]

    def get_traces(self, trace_ids: Sequence[str]) -> list[Trace]:
        """The traces of ``trace_ids`` that exist, in the order given (the
        traces behind an alert)."""
        ids = list(dict.fromkeys(trace_ids))
        if not ids:
            return []
        rows = {r.trace_id: r for r in self._rows(sa.select(T).where(T.c.trace_id.in_(ids)))}
        summaries = self.score_summaries(list(rows))
        return [_trace(rows[i], summaries) for i in ids if i in rows]

    def list_samples(
        self,
        name: str | None = None,
        since_ns: int | None = None,
        until_ns: int | None = None,
        limit: int = 10_000,
    ) -> list[Sample]:
        """Samples oldest first (the most recent ``limit`` of the window)."""
        sm = schema.samples
        clauses = []
        if name is not None:
            clauses.append(sm.c.name == name)
        if since_ns is not None:
            clauses.append(sm.c.time_ns >= since_ns)
        if until_ns is not None:
            clauses.append(sm.c.time_ns < until_ns)
        stmt = (sa.select(sm).where(*clauses)
                .order_by(sm.c.time_ns.desc(), sm.c.sample_id.desc()).limit(limit))
        return [_sample(r) for r in reversed(self._rows(stmt))]

    def pipeline_totals(self) -> dict[str, int]:
        """What the pipelines that wrote here did with their spans, in all:
        each process's latest ``chainsight_spans_*_total`` sample, summed."""
        totals: dict[str, int] = {}
        for key in PIPELINE_COUNTERS:
            latest: dict[str, float] = {}
            for sample in self.list_samples(name=f"chainsight_spans_{key}_total", limit=100_000):
                latest[(sample.labels or {}).get("process", "")] = sample.value  # oldest first
            totals[key] = int(sum(latest.values()))
        return totals

    def plugin_health(self) -> list[dict[str, Any]]:
        """The last stored health of each plugin (see StoreWriter.write_plugin_health)."""
        ph = schema.plugin_health
        return [dict(r._mapping) for r in self._rows(sa.select(ph).order_by(ph.c.name))]

    # ---- experiments (storage/evaluation.py holds the rest) ---------------------
    def list_experiments(self, limit: int = 200) -> list[Any]:
        """Experiments, newest first (``storage.evaluation.Experiment``)."""
        from chainsight.storage.evaluation import EvalStore

        return EvalStore(self.url, engine=self.engine).list_experiments(limit=limit)

    def list_experiment_results(self, experiment_id: str) -> list[Any]:
        """One ``storage.evaluation.ExperimentResult`` per finished item."""
        from chainsight.storage.evaluation import EvalStore

        return EvalStore(self.url, engine=self.engine).results(experiment_id)

    # ---- aggregates ------------------------------------------------------------
    def _metric_query(
        self, since_ns: int | None, until_ns: int | None, group_by: str | None,
        buckets: tuple[int, float, int] | None = None, *, from_spans: bool = False,
        spreads: Sequence[str] = rollups.SPREADS,
    ) -> dict[tuple[str | None, int], AggregateRow]:
        """Request metrics per (group, bucket). PostgreSQL computes them all in
        one grouped query (sums, ``percentile_cont``). SQLite has no
        percentile function: its rows' values are read in one pass and added
        up and sorted here (:func:`_sqlite_metrics`); numbering them with
        window functions in SQL took 2.6 times as long, and a grouped query
        for the sums beside it a second scan. ``buckets``: (since_ns,
        width_ns, count); the bucket of a row is ``int((start - since) /
        width)``, the last one holding the rest."""
        if not from_spans and (group_by is None or group_by in SPAN_GROUPS):
            return self._rollup_query(since_ns, until_ns, group_by, buckets, spreads)
        if group_by in SPAN_GROUPS:
            time_col: sa.ColumnElement[Any] = S.c.start_ns
            group_col: sa.ColumnElement[Any] = SPAN_GROUPS[group_by]
            tpot = sa.case(
                (
                    sa.and_(S.c.first_token_ns.is_not(None), S.c.end_ns.is_not(None),
                            S.c.output_tokens >= 2),
                    sa.cast(S.c.end_ns - S.c.first_token_ns, sa.Float) / 1e6
                    / (S.c.output_tokens - 1),
                ),
                else_=None,
            )
            spread = {
                "latency": sa.cast(S.c.end_ns - S.c.start_ns, sa.Float) / 1e6,
                "ttft": sa.cast(S.c.first_token_ns - S.c.start_ns, sa.Float) / 1e6,
                "tpot": tpot,
            }
            # errors, input and output tokens, cost, unpriced calls: summed
            parts = [sa.case((S.c.status == "error", 1), else_=0), S.c.input_tokens, S.c.output_tokens,
                     S.c.cost_usd, sa.case((S.c.cost_usd.is_(None), 1), else_=0)]
            where: list[sa.ColumnElement[bool]] = [S.c.kind == "llm"]
        elif group_by is None or group_by in TRACE_GROUPS:
            time_col = T.c.start_ns
            group_col = TRACE_GROUPS[group_by] if group_by else sa.null()
            spread = {"latency": T.c.duration_ms, "ttft": T.c.ttft_ms, "tpot": T.c.tpot_ms}
            parts = [sa.case((T.c.status == "error", 1), else_=0), T.c.input_tokens, T.c.output_tokens,
                     T.c.cost_usd, T.c.unpriced_count]
            where = []
        else:
            known = ", ".join([*SPAN_GROUPS, *TRACE_GROUPS])
            raise ValueError(f"cannot group by {group_by!r}; use one of {known}")
        if since_ns is not None:
            where.append(time_col >= since_ns)
        if until_ns is not None:
            where.append(time_col < until_ns)
        postgres = self.engine.dialect.name == "postgresql"
        # What rows are grouped by: the group and the bucket, when there are any.
        keys = {"g": group_col} if group_by else {}
        if buckets is not None:
            start, width, count = buckets
            offset = sa.cast(time_col - start, sa.Float) / sa.literal(width, sa.Float)
            bucket = sa.cast(sa.func.floor(offset) if postgres else offset, sa.BigInteger)  # truncates
            keys["b"] = sa.case((bucket > count - 1, count - 1), else_=bucket)
        with translate_errors(self.url), self.engine.connect() as conn:
            if postgres:
                found = _postgres_metrics(conn, keys, parts, spread, where)
            else:
                found = _sqlite_metrics(conn, keys, parts, spread, where)
        out: dict[tuple[str | None, int], AggregateRow] = {}
        for (group, bucket_no), (n, sums, p) in found.items():

            def seconds(name: str, p: dict[str, float | None] = p) -> float | None:
                ms = p.get(name)
                return None if ms is None else ms / 1000.0

            errors = int(sums[0] or 0)
            out[(group, bucket_no)] = AggregateRow(
                group=group, count=n, error_count=errors, error_rate=errors / n if n else 0.0,
                latency_p50=seconds("latency_0.5"), latency_p95=seconds("latency_0.95"),
                latency_p99=seconds("latency_0.99"), ttft_p50=seconds("ttft_0.5"),
                ttft_p95=seconds("ttft_0.95"), tpot_p50=seconds("tpot_0.5"),
                tpot_p95=seconds("tpot_0.95"), input_tokens=int(sums[1] or 0),
                output_tokens=int(sums[2] or 0), cost_usd=_f(sums[3]), unpriced_count=int(sums[4] or 0),
            )
        return out

    def _rollup_query(
        self, since_ns: int | None, until_ns: int | None, group_by: str | None,
        buckets: tuple[int, float, int] | None, spreads: Sequence[str],
    ) -> dict[tuple[str | None, int], AggregateRow]:
        """What :meth:`_metric_query` answers for LLM spans (grouped) or whole
        traces (``group_by`` None), from the rollups
        (:mod:`chainsight.storage.rollups`): percentiles within 2%, of
        ``spreads`` only (the others None)."""
        view = "llm" if group_by else "traces"
        with translate_errors(self.url), self.engine.connect() as conn:
            found = rollups.metrics(conn, since_ns, until_ns, group_by, buckets, view=view,
                                    spreads=spreads)
        out: dict[tuple[str | None, int], AggregateRow] = {}
        for (group, bucket_no), acc in found.items():

            def seconds(name: str, q: float, acc: rollups.Rollup = acc) -> float | None:
                ms = rollups.hist_percentile(acc.hists[name], q) if name in spreads else None
                return None if ms is None else ms / 1000.0

            n = acc.count
            out[(group, bucket_no)] = AggregateRow(
                group=group, count=n, error_count=acc.errors, error_rate=acc.errors / n if n else 0.0,
                latency_p50=seconds("latency", 0.5), latency_p95=seconds("latency", 0.95),
                latency_p99=seconds("latency", 0.99), ttft_p50=seconds("ttft", 0.5),
                ttft_p95=seconds("ttft", 0.95), tpot_p50=seconds("tpot", 0.5),
                tpot_p95=seconds("tpot", 0.95), input_tokens=acc.input_tokens,
                output_tokens=acc.output_tokens, cost_usd=acc.cost_usd, unpriced_count=acc.unpriced,
            )
        return out

    def aggregates(
        self,
        since_ns: int | None = None,
        until_ns: int | None = None,
        group_by: str | None = None,
        *,
        from_spans: bool = False,
    ) -> list[AggregateRow]:
        """Request metrics over a window, one row per group (by count, descending).
        Grouped by model, provider or kind (LLM calls) or not at all (whole
        traces) they come from the rollups, grouped by a trace column from the
        trace rows; ``from_spans`` reads the rows instead (the reference the
        rollups are checked against)."""
        result = list(self._metric_query(since_ns, until_ns, group_by, from_spans=from_spans).values())
        if group_by is None and not result:
            result.append(_empty_row(None))
        result.sort(key=lambda r: (-r.count, r.group or ""))
        return result

    def timeseries(
        self,
        metric: str,
        since_ns: int,
        until_ns: int,
        buckets: int,
        group_by: str | None = None,
        *,
        from_spans: bool = False,
    ) -> list[SeriesPoint]:
        """``metric`` (one of METRICS) per time bucket, oldest first, every
        bucket present: :meth:`series` of one metric."""
        return self.series((metric,), since_ns, until_ns, buckets, group_by,
                           from_spans=from_spans)[metric]

    def series(
        self,
        metrics: Sequence[str],
        since_ns: int,
        until_ns: int,
        buckets: int,
        group_by: str | None = None,
        *,
        from_spans: bool = False,
    ) -> dict[str, list[SeriesPoint]]:
        """Per metric (each one of METRICS), its value per time bucket, oldest
        first, every bucket present, all from one read. From the rollups, a
        whole minute goes to the bucket its start falls in, unless
        ``from_spans``."""
        unknown = [m for m in metrics if m not in METRICS]
        if unknown:
            raise ValueError(f"unknown metric {unknown[0]!r}; use one of {', '.join(METRICS)}")
        if buckets < 1 or until_ns <= since_ns:
            raise ValueError("need buckets >= 1 and until_ns > since_ns")
        width = (until_ns - since_ns) / buckets
        # latency_p95: the latency histograms only
        spreads = sorted({m.partition("_p")[0] for m in metrics} & set(rollups.SPREADS))
        found = self._metric_query(since_ns, until_ns, group_by, (since_ns, width, buckets),
                                   from_spans=from_spans, spreads=spreads)
        groups: dict[str | None, None] = {} if group_by else {None: None}
        for group, _ in sorted(found, key=lambda k: (k[1], k[0] is not None, k[0] or "")):
            groups.setdefault(group)
        empty = _empty_row(None)
        out: dict[str, list[SeriesPoint]] = {}
        for metric in metrics:
            points = out[metric] = []
            for group in groups:
                for i in range(buckets):
                    agg = found.get((group, i))
                    points.append(SeriesPoint(
                        start_ns=since_ns + int(i * width),
                        end_ns=since_ns + int((i + 1) * width),
                        group=group,
                        value=_metric(agg or empty, metric) if agg is not None or _counts(metric) else None,
                    ))
        return out


def _between(col: sa.ColumnElement[Any], since_ns: int | None,
             until_ns: int | None) -> list[sa.ColumnElement[bool]]:
    out = [] if since_ns is None else [col >= since_ns]
    return out if until_ns is None else [*out, col < until_ns]


def _empty_row(group: str | None) -> AggregateRow:
    return AggregateRow(group=group, count=0, error_count=0, error_rate=0.0, latency_p50=None,
                        latency_p95=None, latency_p99=None, ttft_p50=None, ttft_p95=None,
                        tpot_p50=None, tpot_p95=None, input_tokens=0, output_tokens=0,
                        cost_usd=None, unpriced_count=0)


def _f(value: Any) -> float | None:
    return None if value is None else float(value)


QUANTILES: Final = {"latency": (0.5, 0.95, 0.99), "ttft": (0.5, 0.95), "tpot": (0.5, 0.95)}
MetricGroups = dict[tuple[Any, int], tuple[int, list[Any], dict[str, float | None]]]
"""(group, bucket) -> (rows, the sums of the parts, percentiles by "<spread>_<q>")."""


def _postgres_metrics(conn: sa.Connection, keys: dict[str, sa.ColumnElement[Any]],
                      parts: list[sa.ColumnElement[Any]], spread: dict[str, sa.ColumnElement[Any]],
                      where: list[sa.ColumnElement[bool]]) -> MetricGroups:
    names = [f"{n}_{q}" for n in spread for q in QUANTILES[n]]
    columns = [*(e.label(n) for n, e in keys.items()), sa.func.count().label("n"),
               *(sa.func.sum(p).label(f"s{i}") for i, p in enumerate(parts)),
               *(sa.func.percentile_cont(q).within_group(e).label(f"{n}_{q}")
                 for n, e in spread.items() for q in QUANTILES[n])]
    out: MetricGroups = {}
    for r in conn.execute(sa.select(*columns).where(*where).group_by(*keys.values())):
        m = r._mapping
        key = (m["g"] if "g" in keys else None, int(m["b"]) if "b" in keys else 0)
        out[key] = (int(m["n"]), [m[f"s{i}"] for i in range(len(parts))], {n: _f(m[n]) for n in names})
    return out


def _sqlite_metrics(conn: sa.Connection, keys: dict[str, sa.ColumnElement[Any]],
                    parts: list[sa.ColumnElement[Any]], spread: dict[str, sa.ColumnElement[Any]],
                    where: list[sa.ColumnElement[bool]]) -> MetricGroups:
    """What :func:`_postgres_metrics` returns, from the rows read in one pass:
    ``percentile_cont`` is linear interpolation between closest ranks."""
    has_g, has_b = "g" in keys, "b" in keys
    columns = [keys.get("g", sa.null()), keys.get("b", sa.literal(0)), *parts, *spread.values()]
    width = len(parts)
    acc: dict[tuple[Any, int], tuple[list[int], list[Any], list[list[float]]]] = {}
    for r in conn.execute(sa.select(*columns).where(*where)):
        key = (r[0] if has_g else None, int(r[1]) if has_b else 0)
        entry = acc.get(key)
        if entry is None:
            entry = acc[key] = ([0], [None] * width, [[] for _ in spread])
        entry[0][0] += 1
        sums = entry[1]
        for i in range(width):
            value = r[2 + i]
            if value is not None:
                sums[i] = value if sums[i] is None else sums[i] + value
        for i, values in enumerate(entry[2]):
            value = r[2 + width + i]
            if value is not None:
                values.append(value)
    out: MetricGroups = {}
    for key, (n, sums, spreads) in acc.items():
        ranks: dict[str, float | None] = {}
        for name, values in zip(spread, spreads, strict=True):
            values.sort()
            for q in QUANTILES[name]:
                ranks[f"{name}_{q}"] = percentile(values, q)
        out[key] = (n[0], sums, ranks)
    return out


def _counts(metric: str) -> bool:
    return metric in ("requests", "errors", "input_tokens", "output_tokens", "tokens")


def _summarise(scores: Sequence[Score]) -> dict[str, dict[str, Any]]:
    """{trace_id: {name: {"value": mean, "count", "passed", "failed"}}}."""
    acc: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for s in scores:
        entry = acc[s.trace_id].setdefault(
            s.name, {"value": None, "count": 0, "passed": 0, "failed": 0, "_sum": 0.0, "_n": 0}
        )
        entry["count"] += 1
        if s.passed is True:
            entry["passed"] += 1
        elif s.passed is False:
            entry["failed"] += 1
        if s.value is not None:
            entry["_sum"] += s.value
            entry["_n"] += 1
    for per_trace in acc.values():
        for entry in per_trace.values():
            n, total = entry.pop("_n"), entry.pop("_sum")
            entry["value"] = total / n if n else None
    return dict(acc)
