"""Helpers for the LangChain adapter tests: read traces back through the query API."""

from __future__ import annotations

from typing import Any

from chainsight.framework.model import Span
from chainsight.framework.observer import Observer


def trace_spans(observer: Observer, root_run_id: str) -> list[Span]:
    """Flush, then every stored span of the trace whose root run (span) id is
    ``root_run_id`` (the trace id itself is random), by start time."""
    traces = all_traces(observer)
    assert root_run_id in traces, f"no trace with root run {root_run_id}"
    return traces[root_run_id]


def all_traces(observer: Observer) -> dict[str, list[Span]]:
    """Flush, then {root span id: spans} for every stored trace."""
    from chainsight.storage.query import Store, TraceFilter

    assert observer.flush(timeout=20)
    store = Store(observer.storage_url)
    page = store.list_traces(TraceFilter(), limit=10_000)
    traces: dict[str, list[Span]] = {}
    for t in page.items:
        detail = store.get_trace(t.trace_id)
        assert detail is not None
        spans = sorted(detail.spans, key=lambda s: (s.start_ns, s.span_id))
        [root] = [s for s in spans if s.parent_id is None]
        traces[root.span_id] = spans
    return traces


def tree(spans: list[Span]) -> Any:
    """The span tree as nested ``(name, kind, [children])`` in start order,
    checking on the way that every span has exactly one root and one trace."""
    assert len({s.trace_id for s in spans}) == 1, "spans of several traces"
    children: dict[str | None, list[Span]] = {}
    ids = {s.span_id for s in spans}
    for span in spans:
        assert span.parent_id is None or span.parent_id in ids, f"orphan {span!r}"
        children.setdefault(span.parent_id, []).append(span)
    roots = children.get(None, [])
    assert len(roots) == 1, f"expected one root, got {roots}"

    def build(span: Span) -> Any:
        kids = sorted(children.get(span.span_id, []), key=lambda s: (s.start_ns, s.span_id))
        return (span.name, span.kind, [build(k) for k in kids])

    return build(roots[0])


def by_kind(spans: list[Span], kind: str) -> list[Span]:
    return [s for s in spans if s.kind == kind]
