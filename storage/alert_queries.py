"""What alert rules measure over a time window, and the evaluator's lease.

SQLAlchemy Core, the same figures on SQLite and PostgreSQL. Every measure
returns one :class:`Measured` per group (``group_by`` columns become the
alert's labels), with the traces behind the value where it has any, and
fetches a bounded number of rows whatever the window holds:

* percentiles (``percentile_cont``'s linear interpolation, as
  :func:`chainsight.storage.query.percentile`) read the two neighbouring
  values of each group with ``ORDER BY .. LIMIT 2 OFFSET k``;
* sums, counts, means and maxima are computed by the database;
* value lists (drift, score means) are capped at ``limit`` rows, newest
  first; GPU samples at ``SAMPLE_LIMIT``;
* at most ``MAX_GROUPS`` groups, the largest first (a rule grouped by a
  label with more values says so in the log).

Check verdicts (failure rate of a check) and score values are read in one
place each, :func:`check_verdicts` and :func:`score_values`: from score rows
and from the passing verdicts stored on spans (storage/verdicts.py).

Windows are ``[since_ns, until_ns)`` on a span's start, a score row's
creation (a verdict stored on a span: that span's start) and a sample's
time.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from chainsight.storage import schema
from chainsight.storage.verdicts import VerdictSource, verdict_source

log = logging.getLogger("chainsight.alerts")

S = schema.spans
T = schema.traces
SC = schema.scores
SM = schema.samples

MAX_GROUPS: Final = 100
SAMPLE_LIMIT: Final = 100_000

SPAN_GROUP_NAMES: Final = ("model", "provider", "span")
SPAN_FIELD_NAMES: Final = ("latency", "ttft", "tpot", "cost", "input_tokens", "output_tokens", "tokens")


@functools.cache
def span_group(name: str) -> sa.ColumnElement[Any]:
    """The spans column a ``group_by`` name stands for."""
    return {"model": S.c.model, "provider": S.c.provider, "span": S.c.name}[name]


@functools.cache
def span_field(name: str) -> sa.ColumnElement[Any]:
    """A span's value in seconds, dollars or tokens (built on first use: the
    expressions cost import time an observer's start-up should not pay)."""
    if name == "tpot":
        return sa.case(
            (sa.and_(S.c.first_token_ns.is_not(None), S.c.end_ns.is_not(None), S.c.output_tokens >= 2),
             sa.cast(S.c.end_ns - S.c.first_token_ns, sa.Float) / 1e9 / (S.c.output_tokens - 1)),
            else_=None,
        )
    if name == "tokens":
        return sa.cast(sa.func.coalesce(S.c.input_tokens, 0) + sa.func.coalesce(S.c.output_tokens, 0),
                       sa.Float)
    return {
        "latency": lambda: sa.cast(S.c.end_ns - S.c.start_ns, sa.Float) / 1e9,
        "ttft": lambda: sa.cast(S.c.first_token_ns - S.c.start_ns, sa.Float) / 1e9,
        "cost": lambda: S.c.cost_usd,
        "input_tokens": lambda: sa.cast(S.c.input_tokens, sa.Float),
        "output_tokens": lambda: sa.cast(S.c.output_tokens, sa.Float),
    }[name]()


@dataclass(frozen=True)
class SpanSelect:
    """Which spans a rule looks at. ``kind`` None: every kind; ``name`` is a
    glob (``*``, ``?``); ``tag`` and ``user`` match the span's trace (its root
    span's tags, its user) or, for the user, the span itself."""

    kind: str | None = "llm"
    model: str | None = None
    provider: str | None = None
    name: str | None = None
    tag: str | None = None
    user: str | None = None


@dataclass(frozen=True)
class Measured:
    """A rule's value for one group over one window."""

    labels: dict[str, str]
    value: float
    count: int
    trace_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class Values:
    """The values of one group over one window (drift, means)."""

    labels: dict[str, str]
    values: list[float] = field(default_factory=list)


def _like_glob(pattern: str) -> str:
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%").replace("?", "_")


def _has_tag(tag: str) -> Any:
    """The trace's root span has tag ``tag`` (tags are stored as ``"\\nTAG\\n..."``)."""
    sep = schema.TAG_SEP
    text = (sep + tag + sep).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return T.c.tags.like("%" + text + "%", escape="\\")


def _span_where(select: SpanSelect, since_ns: int, until_ns: int) -> tuple[list[Any], bool]:
    """The WHERE clauses over spans, and whether they need the traces table joined."""
    where: list[Any] = [S.c.start_ns >= since_ns, S.c.start_ns < until_ns]
    if select.kind is not None:
        where.append(S.c.kind == select.kind)
    if select.model is not None:
        where.append(S.c.model == select.model)
    if select.provider is not None:
        where.append(S.c.provider == select.provider)
    if select.name is not None:
        if any(ch in select.name for ch in "*?"):
            where.append(S.c.name.like(_like_glob(select.name), escape="\\"))
        else:
            where.append(S.c.name == select.name)
    joined = False
    if select.tag is not None:
        where.append(_has_tag(select.tag))
        joined = True
    if select.user is not None:
        where.append(sa.or_(S.c.user_id == select.user, T.c.user_id == select.user))
        joined = True
    return where, joined


def _spans_from(joined: bool) -> Any:
    return S.join(T, T.c.trace_id == S.c.trace_id) if joined else S


def _rows(conn: sa.Connection, stmt: sa.Executable) -> list[Any]:
    return list(conn.execute(stmt))


def _labels(names: Sequence[str], values: Sequence[Any]) -> dict[str, str]:
    """Group values as labels; a NULL value is no label (Prometheus' empty label)."""
    return {n: str(v) for n, v in zip(names, values, strict=True) if v is not None and v != ""}


def _group_match(columns: Sequence[sa.ColumnElement[Any]], values: Sequence[Any]) -> list[Any]:
    return [c.is_(None) if v is None else c == v for c, v in zip(columns, values, strict=True)]


_said_too_many: set[str] = set()  # said once per process, not at every evaluation


def _bounded_groups(rows: list[Any], width: int, what: str) -> list[Any]:
    """The largest ``MAX_GROUPS`` groups (the count is the row's last column)."""
    if len(rows) <= MAX_GROUPS:
        return rows
    rows = sorted(rows, key=lambda r: -int(r[width]))
    if what not in _said_too_many:
        _said_too_many.add(what)
        log.warning("alert rule over %s: %d groups, only the %d largest are evaluated "
                    "(said once)", what, len(rows), MAX_GROUPS)
    return rows[:MAX_GROUPS]


def _worse(value: sa.ColumnElement[Any], op: str, threshold: float) -> tuple[Any, Any]:
    """The condition a single value meets when it is on the alerting side of
    ``op threshold``, and the order that puts the worst first."""
    conditions = {">": value > threshold, ">=": value >= threshold, "<": value < threshold,
                  "<=": value <= threshold, "==": value == threshold, "!=": value != threshold}
    order = value.asc() if op in ("<", "<=") else value.desc()
    return conditions[op], order


# ---- spans ------------------------------------------------------------------


def _field_per_group(field_name: str, since_ns: int, until_ns: int, select: SpanSelect,
                     group_by: Sequence[str]) -> tuple[Any, list[Any], list[Any], Any, sa.Select[Any]]:
    """A span field of the window's spans that have it: the field, the
    conditions, the group columns, the FROM, and the count per group."""
    value = span_field(field_name)
    where, joined = _span_where(select, since_ns, until_ns)
    where.append(value.is_not(None))
    groups = [span_group(g) for g in group_by]
    source = _spans_from(joined)
    count_stmt = sa.select(*groups, sa.func.count()).select_from(source).where(*where)
    if groups:
        count_stmt = count_stmt.group_by(*groups)
    return value, where, groups, source, count_stmt


def span_quantile(
    engine: sa.Engine,
    field_name: str,
    q: float,
    since_ns: int,
    until_ns: int,
    select: SpanSelect,
    group_by: Sequence[str] = (),
    worse: tuple[str, float] | None = None,
    max_traces: int = 20,
) -> list[Measured]:
    """The ``q`` quantile (0..1) of a span field per group; the traces of
    the spans whose own value is on the alerting side of ``worse``."""
    value, where, groups, source, count_stmt = _field_per_group(field_name, since_ns, until_ns, select,
                                                                group_by)
    out: list[Measured] = []
    with engine.connect() as conn:
        for row in _bounded_groups(_rows(conn, count_stmt), len(groups), field_name):
            keys, n = tuple(row[: len(groups)]), int(row[len(groups)])
            if n == 0:
                continue
            match = _group_match(groups, keys)
            rank = (n - 1) * q
            low = math.floor(rank)
            stmt = (sa.select(value).select_from(source).where(*where, *match)
                    .order_by(value.asc()).limit(2).offset(low))
            pair = [float(r[0]) for r in _rows(conn, stmt)]
            if not pair:
                continue
            result = pair[0] if len(pair) == 1 else pair[0] + (pair[1] - pair[0]) * (rank - low)
            traces = _span_traces(conn, source, [*where, *match], value, worse, max_traces)
            out.append(Measured(_labels(group_by, keys), result, n, traces))
    return out


def _span_traces(conn: sa.Connection, source: Any, where: list[Any], value: sa.ColumnElement[Any],
                 worse: tuple[str, float] | None, max_traces: int) -> tuple[str, ...]:
    if worse is None or max_traces <= 0:
        return ()
    condition, order = _worse(value, *worse)
    stmt = (sa.select(S.c.trace_id).select_from(source).where(*where, condition)
            .order_by(order).limit(max_traces * 4))
    return tuple(dict.fromkeys(r[0] for r in _rows(conn, stmt)))[:max_traces]


def span_aggregate(
    engine: sa.Engine,
    aggregate: str,
    field_name: str | None,
    since_ns: int,
    until_ns: int,
    select: SpanSelect,
    group_by: Sequence[str] = (),
    worse: tuple[str, float] | None = None,
    max_traces: int = 20,
) -> list[Measured]:
    """``count`` (spans), or ``sum`` / ``max`` / ``mean`` of a span field,
    per group; the traces of the spans whose own value is on the alerting
    side of ``worse`` (for ``max``: the costly request itself)."""
    where, joined = _span_where(select, since_ns, until_ns)
    groups = [span_group(g) for g in group_by]
    value = span_field(field_name) if field_name else None
    if aggregate == "count" or value is None:
        measure: Any = sa.cast(sa.func.count(), sa.Float)
    else:
        where.append(value.is_not(None))
        functions: dict[str, Any] = {"sum": sa.func.sum, "max": sa.func.max, "mean": sa.func.avg}
        measure = functions[aggregate](value)
    source = _spans_from(joined)
    stmt = sa.select(*groups, measure, sa.func.count()).select_from(source).where(*where)
    if groups:
        stmt = stmt.group_by(*groups)
    out: list[Measured] = []
    with engine.connect() as conn:
        for row in _bounded_groups([r for r in _rows(conn, stmt) if r[-1]], len(groups) + 1,
                                   field_name or "spans"):
            keys = tuple(row[: len(groups)])
            result, n = row[len(groups)], int(row[len(groups) + 1])
            if result is None:
                continue
            traces: tuple[str, ...] = ()
            if value is not None and worse is not None:
                traces = _span_traces(conn, source, [*where, *_group_match(groups, keys)], value,
                                      worse, max_traces)
            out.append(Measured(_labels(group_by, keys), float(result), n, traces))
    return out


def span_error_rate(
    engine: sa.Engine,
    since_ns: int,
    until_ns: int,
    select: SpanSelect,
    group_by: Sequence[str] = (),
    max_traces: int = 20,
) -> list[Measured]:
    """The share of spans whose status is ``error``; the traces of the failed ones, newest first."""
    where, joined = _span_where(select, since_ns, until_ns)
    groups = [span_group(g) for g in group_by]
    errors = sa.func.sum(sa.case((S.c.status == "error", 1), else_=0))
    source = _spans_from(joined)
    stmt = sa.select(*groups, errors, sa.func.count()).select_from(source).where(*where)
    if groups:
        stmt = stmt.group_by(*groups)
    def failing(keys: tuple[Any, ...]) -> sa.Select[Any]:
        return (sa.select(S.c.trace_id).select_from(source)
                .where(*where, *_group_match(groups, keys), S.c.status == "error")
                .order_by(S.c.start_ns.desc()))

    with engine.connect() as conn:
        return _rates(conn, _rows(conn, stmt), groups, group_by, "errors", failing, max_traces)


def span_values(
    engine: sa.Engine,
    field_name: str,
    since_ns: int,
    until_ns: int,
    select: SpanSelect,
    group_by: Sequence[str] = (),
    limit: int = 5000,
) -> list[Values]:
    """A span field's values per group, the newest ``limit`` of each (drift)."""
    value, where, groups, source, keys_stmt = _field_per_group(field_name, since_ns, until_ns, select,
                                                               group_by)
    out: list[Values] = []
    with engine.connect() as conn:
        for row in _bounded_groups(_rows(conn, keys_stmt), len(groups), field_name):
            keys = tuple(row[: len(groups)])
            if not row[len(groups)]:
                continue
            stmt = (sa.select(value).select_from(source).where(*where, *_group_match(groups, keys))
                    .order_by(S.c.start_ns.desc()).limit(limit))
            out.append(Values(_labels(group_by, keys), [float(r[0]) for r in _rows(conn, stmt)]))
    return out


# ---- scores (check verdicts) ---------------------------------------------------


def _score_filters(select: SpanSelect, model: sa.ColumnElement[Any]) -> list[Any]:
    """The filters of ``select`` on a score's span (``S``) and trace (``T``)."""
    where: list[Any] = []
    if select.model is not None:
        where.append(model == select.model)
    if select.provider is not None:
        where.append(S.c.provider == select.provider)
    if select.name is not None:
        where.append(S.c.name.like(_like_glob(select.name), escape="\\"))
    if select.tag is not None:
        where.append(_has_tag(select.tag))
    if select.user is not None:
        where.append(sa.or_(S.c.user_id == select.user, T.c.user_id == select.user))
    return where


def _score_source(select: SpanSelect) -> tuple[Any, list[Any], sa.ColumnElement[Any]]:
    """Score rows joined to their span (if any) and trace, the filters of
    ``select`` on them (the span's, else the trace's model), and the model
    column to group by."""
    model = sa.func.coalesce(S.c.model, T.c.model)
    source = SC.outerjoin(S, S.c.span_id == SC.c.span_id).outerjoin(T, T.c.trace_id == SC.c.trace_id)
    return source, _score_filters(select, model), model


def _verdict_source(select: SpanSelect, dialect: str, name: str, since_ns: int,
                    until_ns: int) -> tuple[VerdictSource, Any, list[Any]]:
    """The passing verdicts named ``name`` stored on spans that started in the
    window, one row each, with the same filters and group columns as
    :func:`_score_source` (``S`` is the judged span itself)."""
    v = verdict_source(dialect)
    source = v.select_from(S.outerjoin(T, T.c.trace_id == S.c.trace_id))
    where = [S.c.start_ns >= since_ns, S.c.start_ns < until_ns, S.c.checks.is_not(None), v.name == name,
             *_score_filters(select, sa.func.coalesce(S.c.model, T.c.model))]
    return v, source, where


def _score_groups(group_by: Sequence[str], model: sa.ColumnElement[Any]) -> list[sa.ColumnElement[Any]]:
    columns = {"model": model, "provider": S.c.provider, "span": S.c.name}
    return [columns[g] for g in group_by]


def check_verdicts(
    engine: sa.Engine,
    check: str,
    since_ns: int,
    until_ns: int,
    select: SpanSelect,
    group_by: Sequence[str] = (),
    max_traces: int = 20,
) -> list[Measured]:
    """Failure rate of check ``check`` per group: failed verdicts over all
    verdicts (scores of ``source = 'check'`` with a ``passed`` value, and
    the passing verdicts stored on spans); the traces of the failed ones,
    newest first.

    The one place that knows where verdicts are stored."""
    source, where, model = _score_source(select)
    where += [SC.c.name == check, SC.c.source == "check", SC.c.passed.is_not(None),
              SC.c.created_ns >= since_ns, SC.c.created_ns < until_ns]
    groups = _score_groups(group_by, model)
    failed = sa.func.sum(sa.case((SC.c.passed.is_(False), 1), else_=0))
    stmt = sa.select(*groups, failed, sa.func.count()).select_from(source).where(*where)
    _, stored, stored_where = _verdict_source(select, engine.dialect.name, check, since_ns, until_ns)
    passed = sa.select(*groups, sa.func.count()).select_from(stored).where(*stored_where)
    if groups:
        stmt = stmt.group_by(*groups)
        passed = passed.group_by(*groups)
    with engine.connect() as conn:
        totals: dict[tuple[Any, ...], list[int]] = {}
        for row in _rows(conn, stmt):
            totals[tuple(row[: len(groups)])] = [int(row[len(groups)] or 0), int(row[len(groups) + 1])]
        for row in _rows(conn, passed):
            totals.setdefault(tuple(row[: len(groups)]), [0, 0])[1] += int(row[len(groups)])
        merged = [(*keys, bad, n) for keys, (bad, n) in totals.items()]

        def failing(keys: tuple[Any, ...]) -> sa.Select[Any]:
            return (sa.select(SC.c.trace_id).select_from(source)
                    .where(*where, *_group_match(groups, keys), SC.c.passed.is_(False))
                    .order_by(SC.c.created_ns.desc()))

        return _rates(conn, merged, groups, group_by, f"check {check}", failing, max_traces)


def _rates(conn: sa.Connection, rows: Any, groups: Sequence[Any], group_by: Sequence[str], what: str,
           failing: Callable[[tuple[Any, ...]], sa.Select[Any]], max_traces: int) -> list[Measured]:
    """``(*group keys, bad, n)`` rows as failure rates, each with the newest
    traces of its failures (``failing(keys)``, newest first)."""
    out: list[Measured] = []
    for row in _bounded_groups(rows, len(groups) + 1, what):
        keys = tuple(row[: len(groups)])
        bad, n = int(row[len(groups)] or 0), int(row[len(groups) + 1])
        if not n:
            continue
        traces: tuple[str, ...] = ()
        if bad and max_traces > 0:
            found = _rows(conn, failing(keys).limit(max_traces * 4))
            traces = tuple(dict.fromkeys(r[0] for r in found))[:max_traces]
        out.append(Measured(_labels(group_by, keys), bad / n, n, traces))
    return out


def score_values(
    engine: sa.Engine,
    name: str,
    since_ns: int,
    until_ns: int,
    select: SpanSelect,
    group_by: Sequence[str] = (),
    limit: int = 5000,
) -> list[tuple[Values, list[str]]]:
    """The values of scores named ``name`` (any source: a check, feedback,
    a judge; rows and verdicts stored on spans) per group, the newest
    ``limit`` of each, with the trace of each value. The one place that
    knows where score values are stored."""
    source, where, model = _score_source(select)
    where += [SC.c.name == name, SC.c.value.is_not(None),
              SC.c.created_ns >= since_ns, SC.c.created_ns < until_ns]
    groups = _score_groups(group_by, model)
    v, stored, stored_where = _verdict_source(select, engine.dialect.name, name, since_ns, until_ns)
    stored_where.append(v.value.is_not(None))
    keys_stmt = sa.select(*groups, sa.func.count()).select_from(source).where(*where)
    stored_keys = sa.select(*groups, sa.func.count()).select_from(stored).where(*stored_where)
    if groups:
        keys_stmt = keys_stmt.group_by(*groups)
        stored_keys = stored_keys.group_by(*groups)
    out: list[tuple[Values, list[str]]] = []
    with engine.connect() as conn:
        counts: dict[tuple[Any, ...], int] = {}
        for stmt in (keys_stmt, stored_keys):
            for row in _rows(conn, stmt):
                keys = tuple(row[: len(groups)])
                counts[keys] = counts.get(keys, 0) + int(row[len(groups)])
        merged = [(*keys, n) for keys, n in counts.items()]
        for row in _bounded_groups(merged, len(groups), f"score {name}"):
            keys = tuple(row[: len(groups)])
            if not row[len(groups)]:
                continue
            match = _group_match(groups, keys)
            found = _rows(conn, sa.select(SC.c.created_ns, SC.c.value, SC.c.trace_id).select_from(source)
                          .where(*where, *match).order_by(SC.c.created_ns.desc()).limit(limit))
            found += _rows(conn, sa.select(v.created_ns, v.value, S.c.trace_id).select_from(stored)
                           .where(*stored_where, *match).order_by(v.created_ns.desc()).limit(limit))
            found.sort(key=lambda r: -int(r[0]))
            rows = found[:limit]
            out.append((Values(_labels(group_by, keys), [float(r[1]) for r in rows]),
                        [str(r[2]) for r in rows]))
    return out


# ---- samples ------------------------------------------------------------------


def sample_means(
    engine: sa.Engine,
    name: str,
    since_ns: int,
    until_ns: int,
    label: str | None = None,
) -> list[Measured]:
    """The mean of samples named ``name`` per value of ``label`` (``gpu_id``)."""
    stmt = (sa.select(SM.c.value, SM.c.labels)
            .where(SM.c.name == name, SM.c.time_ns >= since_ns, SM.c.time_ns < until_ns,
                   SM.c.value.is_not(None))
            .order_by(SM.c.time_ns.desc()).limit(SAMPLE_LIMIT))
    sums: dict[str | None, list[float]] = {}
    with engine.connect() as conn:
        for value, labels in _rows(conn, stmt):
            key = str((labels or {}).get(label)) if label and (labels or {}).get(label) is not None else None
            acc = sums.setdefault(key, [0.0, 0.0])
            acc[0] += float(value)
            acc[1] += 1
    return [Measured({label: key} if label and key is not None else {}, total / n, int(n))
            for key, (total, n) in sorted(sums.items(), key=lambda kv: str(kv[0]))]


def counter_increase(engine: sa.Engine, name: str, since_ns: int, until_ns: int) -> Measured | None:
    """How much a cumulative counter sample (``chainsight_spans_dropped_total``,
    one series per process) grew over the window, summed over processes:
    each process's last value in the window minus its last value before it
    (within a day; 0 for a process that started in the window; a value that
    went down is a restart, counted from 0). None when no process reported
    in the window."""
    def process(labels: Any) -> str:
        return str((labels or {}).get("process", ""))

    in_window = (sa.select(SM.c.labels, SM.c.value)
                 .where(SM.c.name == name, SM.c.time_ns >= since_ns, SM.c.time_ns < until_ns)
                 .order_by(SM.c.time_ns.asc()).limit(SAMPLE_LIMIT))
    before = (sa.select(SM.c.labels, SM.c.value)
              .where(SM.c.name == name, SM.c.time_ns < since_ns,
                     SM.c.time_ns >= since_ns - 86_400 * 10**9)
              .order_by(SM.c.time_ns.desc()).limit(SAMPLE_LIMIT))
    with engine.connect() as conn:
        rows = _rows(conn, in_window)
        if not rows:
            return None
        previous: dict[str, float] = {}
        for labels, value in _rows(conn, before):
            previous.setdefault(process(labels), float(value or 0))
    total = 0.0
    for labels, value in rows:
        key, value = process(labels), float(value or 0)
        last = previous.get(key, 0.0)
        total += value - last if value >= last else value
        previous[key] = value
    return Measured({}, total, len(rows))


# ---- alerts and the lease --------------------------------------------------------


def acquire_lease(engine: sa.Engine, name: str, holder: str, now_ns: int,
                  ttl_ns: int) -> tuple[bool, int]:
    """Take or renew lease ``name`` for ``holder`` until ``now_ns + ttl_ns``.
    Returns whether ``holder`` has it, and since when its holder has held
    it without another in between (``acquired_ns``: a holder that sees it
    change knows another process held the lease meanwhile). It is taken over
    only once expired, so one process at a time holds it (the row lock of the
    upsert serialises concurrent tries on PostgreSQL, the write lock on SQLite)."""
    table = schema.leases
    values = {"name": name, "holder": holder, "expires_ns": now_ns + ttl_ns, "updated_ns": now_ns,
              "acquired_ns": now_ns}
    insert: Any = (postgresql.insert(table) if engine.dialect.name == "postgresql"
                   else sqlite.insert(table)).values(values)
    stmt = insert.on_conflict_do_update(
        index_elements=[table.c.name],
        set_={"holder": insert.excluded.holder, "expires_ns": insert.excluded.expires_ns,
              "updated_ns": insert.excluded.updated_ns,
              "acquired_ns": sa.case((table.c.holder == insert.excluded.holder, table.c.acquired_ns),
                                     else_=insert.excluded.acquired_ns)},
        where=sa.or_(table.c.holder == holder, table.c.expires_ns <= now_ns),
    )
    with engine.begin() as conn:
        conn.execute(stmt)
        row = conn.execute(sa.select(table.c.holder, table.c.acquired_ns)
                           .where(table.c.name == name)).one()
    return row[0] == holder, int(row[1])


def release_lease(engine: sa.Engine, name: str, holder: str) -> None:
    """Give lease ``name`` up if ``holder`` has it, so another process takes it at once."""
    table = schema.leases
    with engine.begin() as conn:
        conn.execute(sa.update(table).where(table.c.name == name, table.c.holder == holder)
                     .values(expires_ns=0))


def lease_holder(engine: sa.Engine, name: str) -> tuple[str, int] | None:
    """Who holds lease ``name`` and until when (ns), or None."""
    table = schema.leases
    with engine.connect() as conn:
        row = conn.execute(sa.select(table.c.holder, table.c.expires_ns)
                           .where(table.c.name == name)).first()
    return None if row is None else (str(row[0]), int(row[1]))
