"""The TUI shows the same scores whether a passing check is stored on its
span (the lean form) or as a score row (how it was stored before, and how a
check recorded after its span is still stored)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from test_app import make_app, screen_text, settle
from textual.widgets import Static
from tui_seed import NOW_NS, SECOND

from chainsight.framework.model import Score, Span
from chainsight.storage import schema
from chainsight.storage.query import Store
from chainsight.storage.writer import StoreWriter, WriteBatch
from chainsight.tui.screens.trace_detail import TraceDetailScreen


def records() -> tuple[list[Span], list[Score]]:
    spans: list[Span] = []
    scores: list[Score] = []
    for i in range(6):
        start = NOW_NS - (600 - 60 * i) * SECOND
        root = Span(f"run-{i}", "chain", start_ns=start)
        llm = Span("model", "llm", trace_id=root.trace_id, parent_id=root.span_id, start_ns=start + 1)
        llm.model, llm.outputs, llm.end_ns, llm.status = "gpt-4o", f"answer {i}", start + SECOND, "ok"
        root.end_ns, root.status = start + 2 * SECOND, "ok"
        spans += [llm, root]
        at = llm.end_ns + 1000
        scores += [
            Score("refusal", "check", root.trace_id, llm.span_id, 0.0, "answered", True,
                  "no refusal pattern", created_ns=at),
            Score("toxicity", "check", root.trace_id, llm.span_id, 0.01 * i, "clean", i != 3,
                  f"toxicity {0.01 * i:.2f}", created_ns=at + 1),
            Score("pii", "check", root.trace_id, llm.span_id, float(i == 2), "clean", i != 2,
                  None, created_ns=at + 2),
        ]
        if i % 2:
            scores.append(Score("thumbs", "feedback", root.trace_id, None, 1.0, "up", True,
                                created_ns=at + 5))
    return spans, scores


def build(url: str, spans: list[Span], scores: list[Score], *, lean: bool) -> None:
    """Lean: spans and their checks in one batch. Otherwise the checks
    arrive after their spans were stored, and every one is a row."""
    writer = StoreWriter(url)
    if lean:
        writer.write(WriteBatch(spans=spans, scores=scores))
    else:
        writer.write(WriteBatch(spans=spans))
        writer.write(WriteBatch(scores=scores))
    writer.close()


async def shown(url: str) -> tuple[str, str]:
    """The metrics screen's quality panel, and the detail of the newest trace
    with its model call selected."""
    app = make_app(url, NOW_NS)
    async with app.run_test(size=(140, 50)) as pilot:
        await settle(pilot)
        await pilot.press("2")
        await settle(pilot)
        quality = app.screen.query_one("#quality", Static).render()
        await pilot.press("1")
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, TraceDetailScreen)
        await pilot.press("down")
        await settle(pilot)
        detail = screen_text(app)
    return str(quality), detail


async def test_the_tui_shows_both_forms_alike(tmp_path: Path) -> None:
    lean, rows = f"sqlite:///{tmp_path / 'lean.db'}", f"sqlite:///{tmp_path / 'rows.db'}"
    spans, scores = records()
    build(lean, spans, scores, lean=True)
    build(rows, spans, scores, lean=False)
    counts: dict[str, Any] = {}
    for url in (lean, rows):
        with Store(url) as store, store.engine.connect() as conn:
            counts[url] = conn.execute(schema.scores.select()).all()
    assert len(counts[lean]) == 5 and len(counts[rows]) == 21  # failures and feedback stay rows
    lean_quality, lean_detail = await shown(lean)
    rows_quality, rows_detail = await shown(rows)
    assert "check/refusal  n=6" in lean_quality and "pass 83" in lean_quality
    assert lean_quality == rows_quality
    assert "no refusal pattern" in lean_detail and "toxicity 0.05" in lean_detail
    assert lean_detail == rows_detail
