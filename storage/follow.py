"""Follow the store: every span and score any process stores, once, in order.

Ids are only roughly time-ordered across processes, so a follower cannot page
by id. It pages by insertion sequence instead: SQLite's rowid (SQLite runs one
write transaction at a time, so rowid order is commit order) and PostgreSQL's
``seq`` column, filled from a sequence (migration 0004).

On PostgreSQL a sequence value is taken when a row is inserted, not when its
transaction commits: transaction A takes 10, B takes 11 and commits first, and
a reader sees 11 before 10 exists. So the cursor is not one number: it is the
highest value seen (``high``) plus the *gaps* below it, values not seen yet,
each with the time it was first noticed. Every poll asks for rows above
``high`` and rows inside the gaps; a gap is given up only after
``window_s`` seconds (a rolled-back transaction, or an ``ON CONFLICT DO
NOTHING`` insert, which uses a value and stores nothing, leaves one forever).
A transaction that commits more than ``window_s`` seconds after a later one
is the one case missed; the writer's transactions last milliseconds.

The position is stored in the ``followers`` table under the follower's name,
so a restart resumes where the last run left off.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Final

import sqlalchemy as sa

from chainsight.framework.model import SPAN_FIELDS, Sample, Score, Span
from chainsight.storage import schema, shared_content, verdicts
from chainsight.storage.engine import open_engine, translate_errors

DEFAULT_WINDOW_S: Final = 60.0
MAX_GAPS: Final = 1000
STREAMS: Final = schema.SEQUENCED_TABLES


@dataclass
class StreamPosition:
    """Where a follower is in one table: the highest sequence value seen and
    the gaps below it, ``[low, high, first_noticed_ns]`` (inclusive)."""

    high: int = 0
    gaps: list[list[int]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"high": self.high, "gaps": [list(g) for g in self.gaps]}

    @classmethod
    def from_json(cls, data: Any) -> StreamPosition:
        if not isinstance(data, dict):
            return cls()
        gaps = [[int(v) for v in g] for g in data.get("gaps") or () if isinstance(g, list) and len(g) == 3]
        return cls(int(data.get("high") or 0), gaps)

    def take(self, seq: int, now_ns: int) -> bool:
        """Note that ``seq`` was read; False when it was seen before."""
        if seq > self.high:
            if seq > self.high + 1:
                self.gaps.append([self.high + 1, seq - 1, now_ns])
            self.high = seq
            return True
        for i, (low, high, noticed) in enumerate(self.gaps):
            if low <= seq <= high:
                parts = [[low, seq - 1, noticed]] if seq > low else []
                if seq < high:
                    parts.append([seq + 1, high, noticed])
                self.gaps[i : i + 1] = parts
                return True
        return False

    def expire(self, now_ns: int, window_s: float) -> int:
        """Give up gaps older than the window (and the oldest beyond MAX_GAPS);
        how many sequence values were given up."""
        horizon = now_ns - int(window_s * 1e9)
        kept = [g for g in self.gaps if g[2] >= horizon]
        if len(kept) > MAX_GAPS:
            kept = kept[-MAX_GAPS:]
        dropped = sum(g[1] - g[0] + 1 for g in self.gaps) - sum(g[1] - g[0] + 1 for g in kept)
        self.gaps = kept
        return dropped


@dataclass(frozen=True)
class Followed:
    """What one poll found: new spans and scores, in insertion order."""

    spans: tuple[Span, ...] = ()
    scores: tuple[Score, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.spans or self.scores)


def span_from_row(row: Any) -> Span:
    data = {name: row._mapping[name] for name in SPAN_FIELDS}
    data["tokens_estimated"] = bool(data["tokens_estimated"])
    return Span.from_dict(data)


def score_from_row(row: Any) -> Score:
    return Score(
        name=row.name, source=row.source, trace_id=row.trace_id, span_id=row.span_id,
        value=row.value, label=row.label, passed=None if row.passed is None else bool(row.passed),
        comment=row.comment, experiment_id=row.experiment_id, score_id=row.score_id,
        created_ns=row.created_ns,
    )


def _resolve_content(conn: sa.Connection, spans: list[Span], refs: dict[str, str]) -> None:
    """Fill the content these spans store once elsewhere (storage/shared_content.py):
    from a span of the same poll, else from the store."""
    if not refs:
        return
    here = {s.span_id for s in spans}
    wanted = sorted({ref[2:] for text in refs.values() for ref in text.split(" ")} - here)
    sources: list[Any] = []
    if wanted:
        s = schema.spans
        stmt = sa.select(s.c.span_id, s.c.inputs, s.c.outputs, s.c.metadata).where(s.c.span_id.in_(wanted))
        sources = [SimpleNamespace(**r._mapping) for r in conn.execute(stmt)]
    shared_content.resolve([*spans, *sources], refs)


def sequence_column(table: sa.Table, dialect: str) -> sa.ColumnElement[int]:
    """The insertion sequence of ``spans`` or ``scores`` on this database."""
    name = "rowid" if dialect == "sqlite" else schema.SEQUENCE_COLUMN
    return sa.literal_column(f"{table.name}.{name}", sa.BigInteger)


class StoreFollower:
    """Reads what was stored since the last poll. One thread at a time.

    ``poll`` raises :class:`~chainsight.framework.store_api.StoreUnavailable`
    while the store is down; the position is kept, so the next poll resumes.
    """

    def __init__(self, url: str, name: str = "serve", *, window_s: float = DEFAULT_WINDOW_S,
                 limit: int = 5000, engine: sa.Engine | None = None) -> None:
        self.url = url
        self.name = name
        self.window_s = window_s
        self.limit = limit
        self._engine = engine
        self._engine_lock = threading.Lock()  # the engine is shared with other readers' threads
        self.positions: dict[str, StreamPosition] | None = None
        self.given_up = 0  # sequence values whose gap expired (usually never rows)
        self._dirty = False

    def engine(self) -> sa.Engine:
        """The follower's engine (opened on first use), for other reads of the same store."""
        with translate_errors(self.url):
            return self._connect()

    def _connect(self) -> sa.Engine:
        with self._engine_lock:
            if self._engine is None:
                self._engine = open_engine(self.url, create=False)
            return self._engine

    def _load(self, conn: sa.Connection) -> dict[str, StreamPosition]:
        f = schema.followers
        stored = conn.execute(sa.select(f.c.position).where(f.c.name == self.name)).scalar()
        stored = stored if isinstance(stored, dict) else {}
        return {s: StreamPosition.from_json(stored.get(s)) for s in STREAMS}

    def poll(self) -> Followed:
        """Spans and scores stored since the last poll (up to ``limit`` rows
        of each). The spans' content is whole (content stored once is read
        from the span holding it) and the scores include the check verdicts
        stored on the spans, after the score rows."""
        with translate_errors(self.url):
            engine = self._connect()
            with engine.connect() as conn:
                if self.positions is None:
                    self.positions = self._load(conn)
                now = time.time_ns()
                rows = {s: self._read(conn, s, self.positions[s], now) for s in STREAMS}
                spans = [span_from_row(r) for r in rows["spans"]]
                _resolve_content(conn, spans, {r.span_id: r.content_refs for r in rows["spans"]
                                               if r.content_refs})
        for position in self.positions.values():
            self.given_up += position.expire(now, self.window_s)
        stored = [v for r in rows["spans"]
                  for v in verdicts.decode(r.span_id, r.trace_id, r.start_ns, r.end_ns, r.checks)]
        return Followed(tuple(spans), (*(score_from_row(r) for r in rows["scores"]), *stored))

    def _read(self, conn: sa.Connection, stream: str, position: StreamPosition, now: int) -> list[Any]:
        table = schema.metadata.tables[stream]
        seq = sequence_column(table, conn.dialect.name)
        wanted = [seq > position.high, *(seq.between(lo, hi) for lo, hi, _ in position.gaps)]
        stmt = (sa.select(table, seq.label("follow_seq")).where(sa.or_(*wanted))
                .order_by(seq).limit(self.limit))
        fresh = []
        for row in conn.execute(stmt):
            if position.take(int(row.follow_seq), now):
                fresh.append(row)
                self._dirty = True
        return fresh

    def save(self) -> None:
        """Store the position (when it moved), so a restart resumes from it."""
        if not self._dirty or self.positions is None:
            return
        f = schema.followers
        value = {s: p.to_json() for s, p in self.positions.items()}
        with translate_errors(self.url), self._connect().begin() as conn:
            conn.execute(sa.delete(f).where(f.c.name == self.name))
            conn.execute(sa.insert(f).values(name=self.name, position=value,
                                             updated_ns=time.time_ns()))
        self._dirty = False

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None


def latest_samples(engine: sa.Engine, names: Sequence[str], since_ns: int = 0) -> list[Sample]:
    """The latest sample of each of ``names`` per label set, among those taken
    at or after ``since_ns`` (GPU gauges; each process's pipeline counters)."""
    sm = schema.samples
    latest = (
        sa.select(sm.c.name, sm.c.labels_key, sa.func.max(sm.c.time_ns).label("time_ns"))
        .where(sm.c.name.in_(list(names)), sm.c.time_ns >= since_ns)
        .group_by(sm.c.name, sm.c.labels_key)
        .subquery()
    )
    stmt = sa.select(sm.c.name, sm.c.value, sm.c.source, sm.c.time_ns, sm.c.labels).join(
        latest,
        sa.and_(sm.c.name == latest.c.name, sm.c.labels_key == latest.c.labels_key,
                sm.c.time_ns == latest.c.time_ns),
    )
    with engine.connect() as conn:
        return [Sample(r.name, r.value, r.source, r.time_ns, dict(r.labels or {}))
                for r in conn.execute(stmt)]
