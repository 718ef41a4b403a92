"""Builders of realistic spans for the storage tests."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from chainsight.framework.model import Span

MS = 1_000_000


def three_level_trace(
    t0: int,
    *,
    name: str = "rag",
    user_id: str | None = "alice",
    session_id: str | None = "s1",
    model: str = "gpt-4o",
    cost: float | None = 0.002,
    error: bool = False,
    tags: list[str] | None = None,
    duration_ms: int = 100,
) -> list[Span]:
    """root chain -> retriever + agent step -> llm: 4 spans, root first."""
    root = Span(name, "chain", start_ns=t0)
    root.inputs = {"question": f"what is {name}?"}
    root.outputs = {"answer": "42"}
    root.user_id, root.session_id = user_id, session_id
    root.tags = tags if tags is not None else ["prod"]
    root.metadata = {"version": 3}
    root.end_ns = t0 + duration_ms * MS
    root.status = "error" if error else "ok"
    if error:
        root.error, root.error_type = "boom", "ValueError"
    retr = Span("retrieve", "retriever", trace_id=root.trace_id, parent_id=root.span_id,
                start_ns=t0 + 1 * MS)
    retr.outputs = [{"page_content": "doc one"}, {"page_content": "doc two"}]
    retr.end_ns, retr.status = t0 + 10 * MS, "ok"
    step = Span("agent", "agent", trace_id=root.trace_id, parent_id=root.span_id,
                start_ns=t0 + 11 * MS)
    step.end_ns, step.status = t0 + 90 * MS, "ok"
    llm = Span("ChatOpenAI", "llm", trace_id=root.trace_id, parent_id=step.span_id,
               start_ns=t0 + 12 * MS)
    llm.model, llm.provider = model, "openai"
    llm.inputs = {"messages": [{"role": "user", "content": "hi"}]}
    llm.outputs = {"text": "hello there"}
    llm.input_tokens, llm.output_tokens, llm.cached_tokens = 100, 11, 5
    llm.cost_usd = cost
    llm.first_token_ns = t0 + 32 * MS  # ttft 20 ms
    llm.end_ns = t0 + 82 * MS  # tpot = 50 ms / 10
    llm.chunk_count = 11
    llm.attributes = {"temperature": 0.2, "nested": {"a": [1, 2]}}
    llm.status = "ok"
    return [root, retr, step, llm]


def plain(value: Any) -> Any:
    """Dataclasses, tuples and dicts as plain dicts and lists, to compare answers."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if hasattr(value, "to_dict") and not isinstance(value, dict):
        return plain(value.to_dict())
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def assert_same(got: Any, want: Any, where: str = "", rel: float = 1e-9) -> None:
    """Equal, floats to ``rel`` (1e-9: sums added up in another order)."""
    if isinstance(want, float) and isinstance(got, float):
        assert got == pytest.approx(want, rel=rel, abs=1e-12), where
    elif isinstance(want, dict) and isinstance(got, dict):
        assert got.keys() == want.keys(), where
        for key in want:
            assert_same(got[key], want[key], f"{where}.{key}", rel)
    elif isinstance(want, list) and isinstance(got, list):
        assert len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            assert_same(g, w, f"{where}[{i}]", rel)
    else:
        assert got == want, where
