"""Quality metrics from the store: read-only, SQLAlchemy Core, SQLite and PostgreSQL.

What the built-in checks and feedback wrote (score rows and the check
verdicts stored on spans alike), aggregated:

* thumbs-up rate (``thumbs`` feedback: value > 0 over all thumbs), mean rating
  (``rating`` feedback);
* refusal rate and PII rate (mean ``value`` of the ``refusal`` / ``pii``
  check scores: both are 1.0 when found);
* groundedness and toxicity distributions (count, mean, min, max and a
  10-bin histogram of ``value`` over 0..1);
* error rate (traces whose status is ``error``).

Grouped overall (:func:`quality_metrics`), by model (:func:`quality_by_model`:
the model of the judged span, else the trace's model) or by time bucket of
the trace start (:func:`quality_over_time`). Every function takes an
Engine or a URL and an optional ``since_ns`` / ``until_ns`` window on trace
start times.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import sqlalchemy as sa

from chainsight.storage import schema
from chainsight.storage.verdicts import verdict_source

BINS: Final = 10
_T = schema.traces
_S = schema.scores
_SP = schema.spans


@dataclass(frozen=True, slots=True)
class Distribution:
    count: int = 0
    mean: float | None = None
    min: float | None = None
    max: float | None = None
    histogram: tuple[int, ...] = (0,) * BINS  # bin i holds values in [i/10, (i+1)/10), 1.0 in the last


@dataclass(frozen=True, slots=True)
class QualityMetrics:
    traces: int = 0
    errors: int = 0
    thumbs: int = 0
    thumbs_up: int = 0
    ratings: int = 0
    mean_rating: float | None = None
    refusal_checked: int = 0
    refusals: int = 0
    pii_checked: int = 0
    pii_found: int = 0
    groundedness: Distribution = field(default_factory=Distribution)
    toxicity: Distribution = field(default_factory=Distribution)

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.traces if self.traces else None

    @property
    def thumbs_up_rate(self) -> float | None:
        return self.thumbs_up / self.thumbs if self.thumbs else None

    @property
    def refusal_rate(self) -> float | None:
        return self.refusals / self.refusal_checked if self.refusal_checked else None

    @property
    def pii_rate(self) -> float | None:
        return self.pii_found / self.pii_checked if self.pii_checked else None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {name: getattr(self, name) for name in self.__dataclass_fields__}
        for name in ("groundedness", "toxicity"):
            d: Distribution = out[name]
            out[name] = {"count": d.count, "mean": d.mean, "min": d.min, "max": d.max,
                         "histogram": list(d.histogram)}
        out.update(error_rate=self.error_rate, thumbs_up_rate=self.thumbs_up_rate,
                   refusal_rate=self.refusal_rate, pii_rate=self.pii_rate)
        return out


def _engine(bind: sa.Engine | str) -> tuple[sa.Engine, bool]:
    if isinstance(bind, sa.Engine):
        return bind, False
    from chainsight.storage.engine import open_engine

    return open_engine(bind), True


def _window(since_ns: int | None, until_ns: int | None) -> list[sa.ColumnElement[bool]]:
    clauses: list[sa.ColumnElement[bool]] = []
    if since_ns is not None:
        clauses.append(_T.c.start_ns >= since_ns)
    if until_ns is not None:
        clauses.append(_T.c.start_ns < until_ns)
    return clauses


KeyFn = Callable[[bool], sa.ColumnElement[Any]]
"""The group key; its argument says whether the span table is joined."""


def _compute(
    bind: sa.Engine | str,
    key: KeyFn | None,
    since_ns: int | None,
    until_ns: int | None,
) -> dict[Any, QualityMetrics]:
    engine, owned = _engine(bind)
    window = _window(since_ns, until_ns)
    acc: dict[Any, dict[str, Any]] = {}

    def slot(k: Any) -> dict[str, Any]:
        return acc.setdefault(k, {"hist": {"groundedness": [0] * BINS, "toxicity": [0] * BINS}})

    try:
        with engine.connect() as conn:
            # traces and errors
            tkey = key(False).label("k") if key else sa.literal(None).label("k")
            is_error = sa.case((_T.c.status == "error", 1), else_=0)
            stmt = sa.select(tkey, sa.func.count(), sa.func.sum(is_error)).where(*window).group_by(tkey)
            for k, n, errors in conn.execute(stmt):
                slot(k).update(traces=int(n), errors=int(errors or 0))

            # Scores, joined to their trace (window) and span (model): the
            # score rows, then the check verdicts stored on spans. Sums, not
            # means, so the two parts add up.
            for joined, name_col, value, where in _score_sources(conn.dialect.name):
                skey = key(True).label("k") if key else sa.literal(None).label("k")
                positive = sa.case((value > 0, 1), else_=0)
                names = ("thumbs", "rating", "refusal", "pii", "groundedness", "toxicity")
                stmt = (
                    sa.select(skey, name_col.label("name"), sa.func.count(value), sa.func.sum(positive),
                              sa.func.sum(value), sa.func.min(value), sa.func.max(value))
                    .select_from(joined)
                    .where(name_col.in_(names), value.is_not(None), *where, *window)
                    .group_by(skey, name_col)
                )
                for k, name, n, pos, total, low, high in conn.execute(stmt):
                    _add(slot(k), name, (int(n), int(pos or 0), total, low, high))

                # histograms of groundedness and toxicity
                # floor: PostgreSQL's cast to integer rounds (0.85 would land in bin 9)
                scaled = sa.func.floor(value * BINS) if conn.dialect.name == "postgresql" else value * BINS
                clamped = sa.case((value >= 1.0, BINS - 1), (value <= 0.0, 0),
                                  else_=sa.cast(scaled, sa.Integer))
                bin_ = sa.case((clamped > BINS - 1, BINS - 1), else_=clamped).label("bin")
                stmt = (
                    sa.select(skey, name_col.label("name"), bin_, sa.func.count())
                    .select_from(joined)
                    .where(name_col.in_(("groundedness", "toxicity")), value.is_not(None), *where, *window)
                    .group_by(skey, name_col, bin_)
                )
                for k, name, b, n in conn.execute(stmt):
                    slot(k)["hist"][name][int(b)] += int(n)
    finally:
        if owned:
            engine.dispose()

    result: dict[Any, QualityMetrics] = {}
    for k, s in acc.items():
        thumbs = s.get("thumbs", (0, 0, None, None, None))
        rating = s.get("rating", (0, 0, None, None, None))
        refusal = s.get("refusal", (0, 0, None, None, None))
        pii = s.get("pii", (0, 0, None, None, None))

        def dist(name: str, s: dict[str, Any] = s) -> Distribution:
            n, _pos, total, low, high = s.get(name, (0, 0, None, None, None))
            return Distribution(n, _mean(total, n), _f(low), _f(high), tuple(s["hist"][name]))

        result[k] = QualityMetrics(
            traces=s.get("traces", 0), errors=s.get("errors", 0),
            thumbs=thumbs[0], thumbs_up=thumbs[1],
            ratings=rating[0], mean_rating=_mean(rating[2], rating[0]),
            refusal_checked=refusal[0], refusals=refusal[1],
            pii_checked=pii[0], pii_found=pii[1],
            groundedness=dist("groundedness"), toxicity=dist("toxicity"),
        )
    return result


def _f(value: Any) -> float | None:
    return None if value is None else float(value)


def _mean(total: Any, count: int) -> float | None:
    return float(total) / count if count and total is not None else None


Part = tuple[int, int, Any, Any, Any]
"""Of one score name: count, how many were positive, sum, min, max."""


def _add(slot: dict[str, Any], name: str, part: Part) -> None:
    old: Part | None = slot.get(name)
    if old is None:
        slot[name] = part
        return
    low = [v for v in (old[3], part[3]) if v is not None]
    high = [v for v in (old[4], part[4]) if v is not None]
    total = None if old[2] is None and part[2] is None else float(old[2] or 0) + float(part[2] or 0)
    slot[name] = (old[0] + part[0], old[1] + part[1], total, min(low) if low else None,
                  max(high) if high else None)


def _score_sources(dialect_name: str) -> list[tuple[sa.FromClause, sa.ColumnElement[Any],
                                                     sa.ColumnElement[Any], list[sa.ColumnElement[bool]]]]:
    """(joined tables, score name, score value, conditions) of the score rows
    and of the check verdicts stored on spans (storage/verdicts.py); both
    join ``traces`` (the window) and ``spans`` (the model) as _T and _SP."""
    rows = _S.join(_T, _T.c.trace_id == _S.c.trace_id).outerjoin(_SP, _SP.c.span_id == _S.c.span_id)
    v = verdict_source(dialect_name)
    stored = v.select_from(_SP.join(_T, _T.c.trace_id == _SP.c.trace_id))
    return [(rows, _S.c.name, _S.c.value, []),
            (stored, v.name, v.value, [_SP.c.checks.is_not(None)])]


def quality_metrics(
    bind: sa.Engine | str, *, since_ns: int | None = None, until_ns: int | None = None
) -> QualityMetrics:
    """All traces in the window together."""
    return _compute(bind, None, since_ns, until_ns).get(None, QualityMetrics())


def quality_by_model(
    bind: sa.Engine | str, *, since_ns: int | None = None, until_ns: int | None = None
) -> dict[str | None, QualityMetrics]:
    """Per model: a span score counts for its span's model, a trace score
    (feedback, groundedness) and the error rate for the trace's model."""

    def key(spans_joined: bool) -> sa.ColumnElement[Any]:
        return sa.func.coalesce(_SP.c.model, _T.c.model) if spans_joined else _T.c.model

    return _compute(bind, key, since_ns, until_ns)


def quality_over_time(
    bind: sa.Engine | str,
    bucket_s: float,
    *,
    since_ns: int | None = None,
    until_ns: int | None = None,
) -> list[tuple[int, QualityMetrics]]:
    """Per time bucket of ``bucket_s`` seconds (by trace start), oldest first;
    each entry is (bucket start in ns, metrics). Empty buckets are left out."""
    if bucket_s <= 0:
        raise ValueError("bucket_s must be positive")
    width = int(bucket_s * 1e9)

    def key(_spans_joined: bool) -> sa.ColumnElement[Any]:
        return sa.cast(_T.c.start_ns // sa.literal(width, sa.BigInteger), sa.BigInteger)

    rows = _compute(bind, key, since_ns, until_ns)
    return sorted((int(k) * width, m) for k, m in rows.items() if k is not None)
