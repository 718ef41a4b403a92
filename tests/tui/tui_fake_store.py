"""An in-memory stand-in for storage.query.Store, for failure-injection tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from chainsight.framework.model import Alert, Sample, Score, Span, Trace


@dataclass
class Page:
    items: list[Trace]
    next_cursor: str | None


@dataclass
class Detail:
    trace: Trace
    spans: list[Span]
    scores: list[Score] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)


class FakeStore:
    """Serves fixed traces; ``down`` makes every read raise StoreUnavailable."""

    down = False
    opened = 0

    def __init__(self, traces: list[Trace], spans: list[Span] | None = None,
                 alerts: list[Alert] | None = None) -> None:
        self.traces = traces
        self.spans = spans or []
        self.alerts = alerts or []
        FakeStore.opened += 1

    def _check(self) -> None:
        if FakeStore.down:
            from chainsight.storage.engine import StoreUnavailable

            raise StoreUnavailable("database is locked")

    def list_traces(self, filters: Any = None, *, limit: int = 50, cursor: str | None = None,
                    order: str = "start_ns", descending: bool = True) -> Page:
        self._check()
        start = int(cursor or 0)
        items = sorted(self.traces, key=lambda t: t.start_ns, reverse=descending)
        page = items[start : start + limit]
        more = start + limit < len(items)
        return Page(page, str(start + limit) if more else None)

    def count_traces(self, filters: Any = None) -> int:
        self._check()
        return len(self.traces)

    def get_trace(self, trace_id: str) -> Detail | None:
        self._check()
        for trace in self.traces:
            if trace.trace_id.startswith(trace_id):
                return Detail(trace, [s for s in self.spans if s.trace_id == trace.trace_id])
        return None

    def list_alerts(self, state: str | None = None, limit: int = 100) -> list[Alert]:
        self._check()
        return [a for a in self.alerts if state is None or a.state == state][:limit]

    def get_traces(self, trace_ids: list[str]) -> list[Trace]:
        self._check()
        return [t for i in trace_ids for t in self.traces if t.trace_id == i]

    def list_samples(self, **kwargs: Any) -> list[Sample]:
        self._check()
        return []

    def list_scores(self, **kwargs: Any) -> list[Score]:
        self._check()
        return []

    def score_stats(self, *args: Any, **kwargs: Any) -> list[Any]:
        self._check()
        return []

    def aggregates(self, *args: Any, **kwargs: Any) -> list[Any]:
        self._check()
        return []

    def timeseries(self, *args: Any, **kwargs: Any) -> list[Any]:
        self._check()
        return []

    def close(self) -> None:
        pass
