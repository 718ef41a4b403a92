"""Per-minute and per-hour rollups of the spans stored: what the metric queries read.

One row per (period, start, kind, root, model, provider, status), the period a
minute, an hour or a day (UTC) and ``root`` 1 for the spans that begin a trace
(no parent), holds the count, the token and cost sums, the passing check
verdicts stored on the spans (``spans.checks``: count, values and their sum
per check), and latency, TTFT and TPOT as histograms over fixed log-spaced
buckets: bucket ``i``
holds the values in ``[GAMMA**i, GAMMA**(i+1))`` milliseconds and stands for
a value within ``(GAMMA - 1) / (GAMMA + 1)`` (1.96%) of every value in it.
Histograms add up, so any window and grouping is answered from whole days,
then whole hours and minutes at its edges, and the spans of the parts of its first and
last minutes (at most two minutes of spans): counts and sums are exact for
any window, and what a window costs grows with its length in hours, not with
the number of spans in it (a 30-day window: about 30 day rows, 48 hour
rows and 120 minute rows per key at most).

The writer calls :func:`write` in the transaction that stores the spans, with
only the span rows that transaction inserted, so a replayed or split batch
never counts twice and a rolled-back one not at all. Spans deleted later
(a prune) are not taken out of the rollups: they are the metrics' history,
kept for longer than the spans. :func:`rebuild` (``chainsight db
rebuild-rollups``) recomputes them from the spans that are left, and so
drops that history.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from chainsight.storage import schema

GAMMA: Final = 1.04
_LOG_GAMMA: Final = math.log(GAMMA)
MINUTE_NS: Final = 60_000_000_000
HOUR_NS: Final = 60 * MINUTE_NS
DAY_NS: Final = 24 * HOUR_NS
PERIODS: Final = (86400, 3600, 60)
"""Seconds the rows of each level sum up, coarsest first."""
ZERO: Final = -(10**6)
"""The bucket of values <= 0 (a span that ended as it started)."""
SPREADS: Final = ("latency", "ttft", "tpot")
KEY_COLUMNS: Final = ("period_s", "start_ns", "kind", "root", "model", "provider", "status")
# Advisory lock id taken by PostgreSQL writers around read-merge-upsert.
_PG_LOCK: Final = 0x636861696E_01
_CHUNK: Final = 500

R = schema.span_rollups
S = schema.spans


def bucket_of(ms: float) -> int:
    return ZERO if ms <= 0 else math.floor(math.log(ms) / _LOG_GAMMA)


def value_of(bucket: int) -> float:
    """The value bucket ``bucket`` stands for: within 1.96% of each value in it."""
    return 0.0 if bucket == ZERO else 2 * GAMMA ** (bucket + 1) / (GAMMA + 1)


def hist_percentile(hist: dict[str, int], q: float) -> float | None:
    """``percentile_cont`` over the histogram: linear interpolation between
    the closest ranks, each rank's value its bucket's."""
    n = sum(hist.values())
    if n == 0:
        return None
    k = (n - 1) * q
    lo = math.floor(k)
    hi = min(lo + 1, n - 1)
    values: dict[int, float] = {}
    seen = 0
    for bucket in sorted(map(int, hist)):
        count = hist[str(bucket)]
        for rank in (lo, hi):
            if rank not in values and seen <= rank < seen + count:
                values[rank] = value_of(bucket)
        seen += count
        if hi in values:
            break
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


@dataclass
class Rollup:
    """Sums of some spans; ``merge`` adds another's."""

    count: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None
    unpriced: int = 0
    # spread -> {bucket number as text: count} (text: as stored, no conversion on read)
    hists: dict[str, dict[str, int]] = field(default_factory=lambda: {s: {} for s in SPREADS})
    # check name -> [verdicts, verdicts with a value, sum of the values]
    checks: dict[str, list[float]] = field(default_factory=dict)

    def add_span(self, row: Any) -> None:
        """Add one span (a mapping with the spans table's columns)."""
        self.count += 1
        if row["status"] == "error":
            self.errors += 1
        self.input_tokens += row["input_tokens"] or 0
        self.output_tokens += row["output_tokens"] or 0
        cost = row["cost_usd"]
        if cost is None:
            self.unpriced += 1
        else:
            self.cost_usd = cost if self.cost_usd is None else self.cost_usd + cost
        start, end, first = row["start_ns"], row["end_ns"], row["first_token_ns"]
        hists = self.hists
        if end is not None:
            _count(hists["latency"], (end - start) / 1e6)
        if first is not None:
            _count(hists["ttft"], (first - start) / 1e6)
            out = row["output_tokens"]
            if end is not None and out is not None and out >= 2:
                _count(hists["tpot"], (end - first) / 1e6 / (out - 1))
        checks = row["checks"]
        if checks:  # JSON text as written, a list as read back
            self._add_verdicts(orjson.loads(checks) if isinstance(checks, str) else checks)

    def _add_verdicts(self, entries: list[list[Any]]) -> None:
        """Count passing verdicts in their stored form (:mod:`chainsight.storage.verdicts`)."""
        for name, value, *_ in entries:
            total = self.checks.get(name)
            if total is None:
                total = self.checks[name] = [0, 0, 0.0]
            total[0] += 1
            if value is not None:
                total[1] += 1
                total[2] += value

    def merge(self, other: Rollup) -> None:
        self.count += other.count
        self.errors += other.errors
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        if other.cost_usd is not None:
            self.cost_usd = other.cost_usd if self.cost_usd is None else self.cost_usd + other.cost_usd
        self.unpriced += other.unpriced
        for name, hist in other.hists.items():
            mine = self.hists[name]
            for bucket, n in hist.items():
                mine[bucket] = mine.get(bucket, 0) + n
        for name, counts in other.checks.items():
            total = self.checks.get(name)
            if total is None:
                self.checks[name] = list(counts)
            else:
                for i, part in enumerate(counts):
                    total[i] += part


def _count(hist: dict[str, int], ms: float) -> None:
    b = str(bucket_of(ms))
    hist[b] = hist.get(b, 0) + 1


Key = tuple[int, int, str, int, str, str, str]
"""(period_s, start_ns, kind, root, model, provider, status)."""


def roll_up(span_rows: Iterable[Any]) -> dict[Key, Rollup]:
    """The sums of ``span_rows`` per minute, hour and day (UTC) and the rest of the key."""
    minutes: dict[Key, Rollup] = {}
    for row in span_rows:
        start = row["start_ns"]
        key = (60, start - start % MINUTE_NS, str(row["kind"]), int(row["parent_id"] is None),
               row["model"] or "", row["provider"] or "", str(row["status"]))
        acc = minutes.get(key)
        if acc is None:
            acc = minutes[key] = Rollup()
        acc.add_span(row)
    out = dict(minutes)
    for (_, start, *rest), acc in minutes.items():
        for period, width in ((3600, HOUR_NS), (86400, DAY_NS)):
            longer: Key = (period, start - start % width, *rest)  # type: ignore[assignment]
            total = out.get(longer)
            if total is None:
                total = out[longer] = Rollup()
            total.merge(acc)
    return out


def _from_row(m: Any, spreads: Sequence[str] = SPREADS, checks: bool = True) -> Rollup:
    """A stored row's sums; histograms of ``spreads`` only (the others
    empty), verdicts if ``checks``. ``m`` holds the columns asked for."""
    return Rollup(
        count=int(m["count"]), errors=int(m["count"]) if m["status"] == "error" else 0,
        input_tokens=int(m["input_tokens"]), output_tokens=int(m["output_tokens"]),
        cost_usd=m["cost_usd"], unpriced=int(m["unpriced"]),
        hists={s: orjson.loads(m[s]) if s in spreads else {} for s in SPREADS},
        checks=orjson.loads(m["checks"]) if checks else {},
    )


def _to_row(key: Key, acc: Rollup) -> dict[str, Any]:
    row: dict[str, Any] = dict(zip(KEY_COLUMNS, key, strict=True))
    row.update(count=acc.count, input_tokens=acc.input_tokens, output_tokens=acc.output_tokens,
               cost_usd=acc.cost_usd, unpriced=acc.unpriced)
    for s in SPREADS:
        row[s] = orjson.dumps(acc.hists[s]).decode()
    row["checks"] = orjson.dumps(acc.checks).decode()
    return row


def _upsert(dialect: sa.Dialect) -> Any:
    insert: Any = postgresql.insert(R) if dialect.name == "postgresql" else sqlite.insert(R)
    return insert.on_conflict_do_update(
        index_elements=[R.c[k] for k in KEY_COLUMNS],
        set_={c.name: insert.excluded[c.name] for c in R.columns if c.name not in KEY_COLUMNS},
    )


def write(conn: sa.Connection, span_rows: Sequence[Any]) -> None:
    """Add ``span_rows`` (stored by this transaction) to the rollups: summed
    here per key, the keys' rows read and merged, one upsert per key."""
    if not span_rows:
        return
    batch = roll_up(span_rows)
    if conn.dialect.name == "postgresql":
        # Read-merge-write must not interleave with another writer's.
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_LOCK)))
    for period in PERIODS:  # by the primary key's prefix, (period_s, start_ns)
        starts = sorted({k[1] for k in batch if k[0] == period})
        for i in range(0, len(starts), _CHUNK):
            stmt = sa.select(R).where(R.c.period_s == period, R.c.start_ns.in_(starts[i : i + _CHUNK]))
            _merge_stored(conn, stmt, batch)
    conn.execute(_upsert(conn.dialect), [_to_row(k, v) for k, v in batch.items()])


def _merge_stored(conn: sa.Connection, stmt: sa.Select[Any], batch: dict[Key, Rollup]) -> None:
    """Add the stored rows ``stmt`` finds to the batch's sums of their keys."""
    for m in conn.execute(stmt).mappings():
        key = tuple(m[k] for k in KEY_COLUMNS)
        if key in batch:
            old = _from_row(m)
            old.merge(batch[key])
            batch[key] = old


SPAN_COLUMNS: Final = ("start_ns", "end_ns", "first_token_ns", "kind", "parent_id", "model", "provider",
                       "status", "input_tokens", "output_tokens", "cost_usd", "checks")


def _span_columns() -> list[sa.ColumnElement[Any]]:
    """SPAN_COLUMNS to select; the verdicts as the text SQLite holds (parsed
    by :meth:`Rollup.add_span` with orjson, not by the JSON type)."""
    return [sa.type_coerce(S.c[c], sa.Text).label(c) if c == "checks" else S.c[c] for c in SPAN_COLUMNS]


def rebuild(conn: sa.Connection, chunk: int = 50_000) -> tuple[int, int]:
    """Replace the rollups with ones computed from every stored span; returns
    the number of spans read and of rollup rows written. On PostgreSQL it holds the writers' lock, so a
    batch stored meanwhile is counted once: in the scan or after it."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_LOCK)))
    conn.execute(R.delete())
    cols = _span_columns()
    total: dict[Key, Rollup] = {}
    n = 0
    for part in conn.execute(sa.select(*cols)).mappings().partitions(chunk):
        n += len(part)
        for key, acc in roll_up(part).items():
            old = total.get(key)
            if old is None:
                total[key] = acc
            else:
                old.merge(acc)
    rows = [_to_row(k, v) for k, v in total.items()]
    for i in range(0, len(rows), _CHUNK):
        conn.execute(R.insert(), rows[i : i + _CHUNK])
    return n, len(rows)


# ---- reading ------------------------------------------------------------------

GROUP_COLUMNS: Final = {"model": "model", "provider": "provider", "kind": "kind"}


def _plan(since_ns: int | None, until_ns: int | None, periods: Sequence[int]
          ) -> tuple[list[tuple[int, int | None, int | None]], list[tuple[int | None, int | None]]]:
    """How to read ``[since_ns, until_ns)``: rollup ranges ``(period_s, lo,
    hi)`` of whole periods, coarsest first, and the span ranges left over."""
    if not periods:
        return [], [(since_ns, until_ns)] if since_ns is None or until_ns is None or since_ns < until_ns else []
    width = periods[0] * 10**9
    lo = None if since_ns is None else -(-since_ns // width) * width
    hi = None if until_ns is None else until_ns // width * width
    if lo is not None and hi is not None and hi <= lo:
        return _plan(since_ns, until_ns, periods[1:])
    rows: list[tuple[int, int | None, int | None]] = [(periods[0], lo, hi)]
    spans: list[tuple[int | None, int | None]] = []
    for edge in ((since_ns, lo), (hi, until_ns)):
        if edge[0] is not None and edge[1] is not None and edge[0] < edge[1]:
            more_rows, more_spans = _plan(edge[0], edge[1], periods[1:])
            rows += more_rows
            spans += more_spans
    return rows, spans


VIEWS: Final = ("llm", "traces")
"""What :func:`metrics` sums: model calls, or whole traces (see :func:`trace_share`)."""


def trace_share(kind: str, root: int, acc: Rollup) -> Rollup:
    """What spans of one key add to the metrics of whole traces, as the trace
    rows count them: a trace is its root span (count, errors, latency); TTFT,
    TPOT and unpriced calls are the model calls' (every call, where a trace
    row keeps its first streamed call's); tokens, cost and verdicts sum every
    span."""
    llm = kind == "llm"
    return Rollup(
        count=acc.count if root else 0, errors=acc.errors if root else 0,
        input_tokens=acc.input_tokens, output_tokens=acc.output_tokens, cost_usd=acc.cost_usd,
        unpriced=acc.unpriced if llm else 0,
        hists={"latency": acc.hists["latency"] if root else {},
               "ttft": acc.hists["ttft"] if llm else {}, "tpot": acc.hists["tpot"] if llm else {}},
        checks=acc.checks,
    )


def _scan(conn: sa.Connection, since_ns: int | None, until_ns: int | None, periods: Sequence[int],
          row_where: Sequence[sa.ColumnElement[bool]], span_where: Sequence[sa.ColumnElement[bool]],
          spreads: Sequence[str], checks: bool) -> Iterator[tuple[Any, Rollup]]:
    """(key columns, sums) of what started in ``[since_ns, until_ns)``: the
    rollup rows of whole periods (of ``periods`` only) that ``row_where``
    keeps, then one by one the spans of the edges that ``span_where`` keeps.
    Only the histograms of ``spreads`` are read (reading them is most of the
    cost), and the verdicts if ``checks``."""
    row_ranges, span_ranges = _plan(since_ns, until_ns, periods)
    columns = [R.c[c] for c in (*KEY_COLUMNS, "count", "input_tokens", "output_tokens", "cost_usd",
                                "unpriced", *spreads, *(["checks"] if checks else []))]
    for period, lo, hi in row_ranges:
        where = [R.c.period_s == period, *row_where]
        if lo is not None:
            where.append(R.c.start_ns >= lo)
        if hi is not None:
            where.append(R.c.start_ns < hi)
        for m in conn.execute(sa.select(*columns).where(*where)).mappings():
            yield m, _from_row(m, spreads, checks)
    if span_ranges:
        ranges = [sa.and_(*([] if lo is None else [S.c.start_ns >= lo]),
                          *([] if hi is None else [S.c.start_ns < hi])) for lo, hi in span_ranges]
        stmt = sa.select(*_span_columns()).where(sa.or_(*ranges), *span_where)
        for row in conn.execute(stmt).mappings():
            acc = Rollup()
            acc.add_span(row)
            yield {**row, "root": int(row["parent_id"] is None)}, acc


def metrics(conn: sa.Connection, since_ns: int | None, until_ns: int | None, group_by: str | None,
            buckets: tuple[int, float, int] | None = None, *, view: str = "llm",
            spreads: Sequence[str] = SPREADS) -> dict[tuple[str | None, int], Rollup]:
    """Sums per (group, bucket) of what started in ``[since_ns, until_ns)``:
    whole days, then whole hours and minutes, from the rollups, the rest of
    the edge minutes from the spans. ``view``: ``"llm"`` sums the model
    calls, ``"traces"`` whole traces (:func:`trace_share`). ``group_by``:
    model, provider, kind or None. ``buckets``: (since_ns, width_ns, count);
    rows no longer than a bucket are read (buckets under a minute: spans
    only), and a row's spans go to the bucket its start falls in.
    ``spreads``: the histograms wanted."""
    if group_by is not None and group_by not in GROUP_COLUMNS:
        raise ValueError(f"rollups group by one of {', '.join(GROUP_COLUMNS)}, not {group_by!r}")
    if view not in VIEWS:
        raise ValueError(f"rollups sum one of {', '.join(VIEWS)}, not {view!r}")
    periods = [p for p in PERIODS if buckets is None or buckets[1] >= p * 10**9]
    traces = view == "traces"
    if traces:  # the rows a trace's figures come from (see trace_share)
        row_where = [sa.or_(R.c.root == 1, R.c.kind == "llm", R.c.input_tokens > 0,
                            R.c.output_tokens > 0, R.c.cost_usd.is_not(None))]
        span_where: list[sa.ColumnElement[bool]] = []
    else:
        row_where, span_where = [R.c.kind == "llm"], [S.c.kind == "llm"]
    out: dict[tuple[str | None, int], Rollup] = {}
    for m, acc in _scan(conn, since_ns, until_ns, periods, row_where, span_where, spreads, False):
        if traces:
            acc = trace_share(m["kind"], m["root"], acc)
        group = (m[GROUP_COLUMNS[group_by]] or None) if group_by else None
        if buckets is None:
            b = 0
        else:
            b0, width, count = buckets
            b = min(count - 1, max(0, int((m["start_ns"] - b0) / width)))
        old = out.get((group, b))
        if old is None:
            out[(group, b)] = acc
        else:
            old.merge(acc)
    return out


def check_totals(conn: sa.Connection, since_ns: int | None, until_ns: int | None) -> dict[str, list[float]]:
    """Per check name, [verdicts, verdicts with a value, sum of the values] of
    the passing verdicts stored on spans that started in ``[since_ns, until_ns)``."""
    total = Rollup()
    row_where = [R.c.checks != "{}"]
    for _, acc in _scan(conn, since_ns, until_ns, PERIODS, row_where, [S.c.checks.is_not(None)], (), True):
        total.merge(acc)
    return total.checks
