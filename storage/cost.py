"""Cost queries and repricing over the ``spans`` table.

Every query here counts *model calls*: spans of kind ``llm`` with a model.
Cost sums skip unpriced calls (``cost_usd`` NULL) and report how many there
were, so an unpriced call is never mistaken for a free one; a group with no
priced call has ``cost_usd`` None.

* :func:`cost_report` - spend, requests, tokens, cost per request and per 1K
  tokens over a window, grouped by model, provider, user, tag, day or month.
* :func:`unpriced_models` - models that were called but have no price.
* :func:`reprice` - recompute ``spans.cost_usd`` for a window with a pricing
  function and refresh the affected traces' totals (with the writer's own
  trace-summary statement, so the rules stay in one place).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final

import sqlalchemy as sa

from chainsight.storage import schema

GROUPINGS: Final = ("model", "provider", "user", "tag", "day", "month")
UPDATE_CHUNK: Final = 500

s = schema.spans
t = schema.traces


@dataclass
class CostRow:
    """Spend of one group (a model, a user, a tag, a day...) over a window."""

    key: str | None
    requests: int = 0
    priced_requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    priced_tokens: int = 0  # tokens of the priced calls only (for cost per 1K)
    cost_usd: float | None = None

    @property
    def unpriced_requests(self) -> int:
        return self.requests - self.priced_requests

    @property
    def cost_per_request(self) -> float | None:
        """Mean cost of a priced call (unpriced calls are not counted as $0)."""
        if self.cost_usd is None or not self.priced_requests:
            return None
        return self.cost_usd / self.priced_requests

    @property
    def cost_per_1k_tokens(self) -> float | None:
        """Cost per 1,000 tokens (input + output) of the priced calls."""
        if self.cost_usd is None or not self.priced_tokens:
            return None
        return self.cost_usd / self.priced_tokens * 1000.0

    def add(self, cost: float | None, input_tokens: int | None, output_tokens: int | None,
            count: int = 1, priced: int | None = None, priced_tokens: int | None = None) -> None:
        tokens = (input_tokens or 0) + (output_tokens or 0)
        self.requests += count
        self.input_tokens += input_tokens or 0
        self.output_tokens += output_tokens or 0
        if priced is None:
            priced = 1 if cost is not None else 0
            priced_tokens = tokens if cost is not None else 0
        self.priced_requests += priced
        self.priced_tokens += priced_tokens or 0
        if cost is not None:
            self.cost_usd = (self.cost_usd or 0.0) + float(cost)

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "requests": self.requests,
            "priced_requests": self.priced_requests,
            "unpriced_requests": self.unpriced_requests,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost_usd": self.cost_usd,
            "cost_per_request": self.cost_per_request,
            "cost_per_1k_tokens": self.cost_per_1k_tokens,
        }


@dataclass
class CostReport:
    by: str
    since_ns: int | None
    until_ns: int | None
    rows: list[CostRow]
    total: CostRow

    def to_dict(self) -> dict[str, Any]:
        return {
            "by": self.by,
            "since_ns": self.since_ns,
            "until_ns": self.until_ns,
            "rows": [r.to_dict() for r in self.rows],
            "total": self.total.to_dict(),
        }


def _window(since_ns: int | None, until_ns: int | None) -> list[sa.ColumnElement[bool]]:
    conds: list[sa.ColumnElement[bool]] = [s.c.kind == "llm", s.c.model.is_not(None)]
    if since_ns is not None:
        conds.append(s.c.start_ns >= since_ns)
    if until_ns is not None:
        conds.append(s.c.start_ns < until_ns)
    return conds


def _bucket(start_ns: int, by: str, utc: bool) -> str:
    when = dt.datetime.fromtimestamp(start_ns / 1e9, tz=dt.UTC if utc else None)
    return when.strftime("%Y-%m-%d" if by == "day" else "%Y-%m")


def cost_report(
    engine: sa.Engine,
    *,
    by: str = "model",
    since_ns: int | None = None,
    until_ns: int | None = None,
    utc: bool = False,
    limit: int | None = None,
) -> CostReport:
    """Spend over ``[since_ns, until_ns)`` grouped ``by`` one of :data:`GROUPINGS`.

    Rows are sorted by cost (highest first, unpriced groups last), except day
    and month, which are in date order. Days and months are local dates
    unless ``utc``. A call's user is its own ``user_id`` or else its trace's;
    its tags are its own plus its trace's (a call counts once per tag, so tag
    rows may add up to more than the total), without the ones LangChain adds
    by itself (:func:`is_internal_tag`).
    """
    if by not in GROUPINGS:
        raise ValueError(f"cannot group by {by!r}; use one of {', '.join(GROUPINGS)}")
    conds = _window(since_ns, until_ns)
    groups: dict[str | None, CostRow] = {}
    total = CostRow(key=None)
    priced = sa.case((s.c.cost_usd.is_not(None), 1), else_=0)
    tokens = sa.func.coalesce(s.c.input_tokens, 0) + sa.func.coalesce(s.c.output_tokens, 0)
    priced_tokens = sa.case((s.c.cost_usd.is_not(None), tokens), else_=0)

    with engine.connect() as conn:
        if by in ("model", "provider", "user"):
            key: sa.ColumnElement[Any]
            source: sa.FromClause = s
            if by == "model":
                key = s.c.model
            elif by == "provider":
                key = s.c.provider
            else:
                source = s.outerjoin(t, t.c.trace_id == s.c.trace_id)
                key = sa.func.coalesce(s.c.user_id, t.c.user_id)
            stmt = (
                sa.select(
                    key.label("key"),
                    sa.func.count().label("n"),
                    sa.func.sum(priced).label("priced"),
                    sa.func.sum(s.c.input_tokens).label("inp"),
                    sa.func.sum(s.c.output_tokens).label("out"),
                    sa.func.sum(priced_tokens).label("ptok"),
                    sa.func.sum(s.c.cost_usd).label("cost"),
                )
                .select_from(source)
                .where(*conds)
                .group_by(key)
            )
            for row in conn.execute(stmt):
                group = groups[row.key] = CostRow(key=row.key)
                for target in (group, total):
                    target.add(row.cost, int(row.inp or 0), int(row.out or 0), count=int(row.n),
                               priced=int(row.priced or 0), priced_tokens=int(row.ptok or 0))
        else:
            columns: list[Any] = [s.c.start_ns, s.c.cost_usd, s.c.input_tokens, s.c.output_tokens]
            source = s
            if by == "tag":
                source = s.outerjoin(t, t.c.trace_id == s.c.trace_id)
                columns += [s.c.tags, t.c.tags.label("trace_tags")]
            result = conn.execute(sa.select(*columns).select_from(source).where(*conds))
            for row in result:
                total.add(row.cost_usd, row.input_tokens, row.output_tokens)
                if by == "tag":
                    keys: Iterable[str | None] = _tags_of(row.tags, row.trace_tags) or [None]
                else:
                    keys = [_bucket(row.start_ns, by, utc)]
                for k in keys:
                    if k not in groups:
                        groups[k] = CostRow(key=k)
                    groups[k].add(row.cost_usd, row.input_tokens, row.output_tokens)

    rows = list(groups.values())
    if by in ("day", "month"):
        rows.sort(key=lambda r: r.key or "")
    else:
        rows.sort(key=lambda r: (r.cost_usd is None, -(r.cost_usd or 0.0), -r.requests,
                                 r.key or ""))
    if limit is not None:
        rows = rows[:limit]
    return CostReport(by=by, since_ns=since_ns, until_ns=until_ns, rows=rows, total=total)


# Tags LangChain and LangGraph put on child runs by themselves (a sequence's
# step, a parallel map's key, a graph's superstep, LangSmith display hints):
# they say where a run sits, not what the user tagged it with.
_INTERNAL_TAG: Final = re.compile(r"^(?:seq:step:\d+|graph:step:\d+|map:key:.*|langsmith:.*)$")


def is_internal_tag(tag: str) -> bool:
    """Whether ``tag`` is one LangChain or LangGraph adds on its own (``seq:step:2``)."""
    return _INTERNAL_TAG.match(tag) is not None


def _tags_of(span_tags: Any, trace_tags: str | None) -> list[str]:
    tags: list[str] = []
    if isinstance(span_tags, list):
        tags.extend(str(x) for x in span_tags)
    if trace_tags:
        tags.extend(x for x in trace_tags.split(schema.TAG_SEP) if x)
    return [tag for tag in dict.fromkeys(tags) if not is_internal_tag(tag)]


# ---- unpriced models --------------------------------------------------------


@dataclass(frozen=True)
class UnpricedModel:
    model: str
    provider: str | None
    calls: int
    input_tokens: int
    output_tokens: int
    last_seen_ns: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "provider": self.provider,
            "calls": self.calls,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "last_seen_ns": self.last_seen_ns,
        }


def unpriced_models(
    engine: sa.Engine, *, since_ns: int | None = None, until_ns: int | None = None
) -> list[UnpricedModel]:
    """Models of calls that used tokens but have no cost, most calls first."""
    tokens = sa.func.coalesce(s.c.input_tokens, 0) + sa.func.coalesce(s.c.output_tokens, 0)
    conds = [s.c.model.is_not(None), s.c.cost_usd.is_(None), tokens > 0]
    if since_ns is not None:
        conds.append(s.c.start_ns >= since_ns)
    if until_ns is not None:
        conds.append(s.c.start_ns < until_ns)
    stmt = (
        sa.select(
            s.c.model, s.c.provider, sa.func.count().label("n"),
            sa.func.sum(s.c.input_tokens).label("inp"), sa.func.sum(s.c.output_tokens).label("out"),
            sa.func.max(s.c.start_ns).label("last"),
        )
        .where(*conds)
        .group_by(s.c.model, s.c.provider)
        .order_by(sa.func.count().desc(), s.c.model)
    )
    with engine.connect() as conn:
        return [
            UnpricedModel(r.model, r.provider, int(r.n), int(r.inp or 0), int(r.out or 0),
                          int(r.last))
            for r in conn.execute(stmt)
        ]


# ---- repricing ----------------------------------------------------------------


@dataclass(frozen=True)
class PricedCall:
    """What a pricing function gets for each stored call."""

    model: str
    provider: str | None
    input_tokens: int | None
    output_tokens: int | None
    cached_tokens: int | None
    reasoning_tokens: int | None


PriceFunction = Callable[[PricedCall], float | None]


@dataclass
class RepriceResult:
    checked: int = 0
    changed: int = 0
    now_unpriced: int = 0  # had no price now; see ``clear_unknown``
    traces: int = 0
    cost_before: float = 0.0
    cost_after: float = 0.0
    models: dict[str, int] = field(default_factory=dict)  # changed calls per model

    def to_dict(self) -> dict[str, Any]:
        return {
            "checked": self.checked,
            "changed": self.changed,
            "now_unpriced": self.now_unpriced,
            "traces": self.traces,
            "cost_before": self.cost_before,
            "cost_after": self.cost_after,
            "models": dict(self.models),
        }


def _same(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return abs(a - b) <= 1e-12 * max(1.0, abs(a), abs(b))


def reprice(
    engine: sa.Engine,
    price: PriceFunction,
    *,
    since_ns: int | None = None,
    until_ns: int | None = None,
    model: str | None = None,
    clear_unknown: bool = False,
    dry_run: bool = False,
) -> RepriceResult:
    """Recompute ``cost_usd`` of the calls in the window with ``price``.

    Calls whose price is unknown now keep their stored cost unless
    ``clear_unknown`` (then they become unpriced, NULL, never $0). Changed
    spans are updated and their traces' totals recomputed in one transaction.
    ``dry_run`` computes the result without writing.
    """
    from chainsight.storage.trace_summary import refresh_trace_totals

    tokens = sa.func.coalesce(s.c.input_tokens, 0) + sa.func.coalesce(s.c.output_tokens, 0)
    conds: list[sa.ColumnElement[bool]] = [s.c.model.is_not(None), tokens > 0]
    if since_ns is not None:
        conds.append(s.c.start_ns >= since_ns)
    if until_ns is not None:
        conds.append(s.c.start_ns < until_ns)
    if model is not None:
        conds.append(s.c.model == model)
    stmt = sa.select(
        s.c.span_id, s.c.trace_id, s.c.model, s.c.provider, s.c.input_tokens,
        s.c.output_tokens, s.c.cached_tokens, s.c.reasoning_tokens, s.c.cost_usd,
    ).where(*conds)

    result = RepriceResult()
    updates: list[dict[str, Any]] = []
    trace_ids: set[str] = set()
    with engine.begin() as conn:
        for row in conn.execute(stmt):
            result.checked += 1
            old = row.cost_usd
            new = price(PricedCall(row.model, row.provider, row.input_tokens, row.output_tokens,
                                   row.cached_tokens, row.reasoning_tokens))
            if new is None:
                result.now_unpriced += 1
                if not clear_unknown:
                    new = old
            result.cost_before += old or 0.0
            result.cost_after += new or 0.0
            if _same(old, new):
                continue
            result.changed += 1
            result.models[row.model] = result.models.get(row.model, 0) + 1
            updates.append({"b_span_id": row.span_id, "b_cost": new})
            trace_ids.add(row.trace_id)
        result.traces = len(trace_ids)
        if dry_run or not updates:
            return result
        update = (
            s.update()
            .where(s.c.span_id == sa.bindparam("b_span_id"))
            .values(cost_usd=sa.bindparam("b_cost", type_=sa.Float))
        )
        for i in range(0, len(updates), UPDATE_CHUNK):
            conn.execute(update, updates[i : i + UPDATE_CHUNK])
        refresh_trace_totals(conn, trace_ids)
    return result
