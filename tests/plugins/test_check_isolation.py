"""A check that raises or overruns its budget on one span does not stop the
other checks (non-strict), and one that keeps failing is degraded."""

from __future__ import annotations

import time
from pathlib import Path

from chainsight.framework import hookimpl
from chainsight.framework.model import Score, Span
from chainsight.framework.observer import Observer
from tests.plugins.cases.store import rows, score_rows

CHECKS = [("refusal", "chainsight.plugins.refusal"), ("length", "chainsight.plugins.length"), ("toxicity", "chainsight.plugins.toxicity")]


class Raising:
    """A check that raises on spans named 'boom'."""

    name = "raising"

    @hookimpl
    def check_span(self, span: Span) -> list[Score] | None:
        if span.name == "boom":
            raise RuntimeError("check bug")
        return [Score("raising", "check", span.trace_id, span.span_id, 1.0)]


class Slow:
    """A check that sleeps past the budget on spans named 'slow'."""

    name = "slow"

    @hookimpl
    def check_span(self, span: Span) -> list[Score] | None:
        if span.name == "slow":
            time.sleep(0.1)  # 20 budgets
        return [Score("slow", "check", span.trace_id, span.span_id, 1.0)]


def test_raising_and_slow_checks_do_not_stop_the_others(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'i.db'}"
    obs = Observer(url, strict=False, entry_points=False, builtins=CHECKS, plugins=[Raising(), Slow()],
                   spill_path=tmp_path / "spill", pipeline={"check_budget_ms": 5, "degrade_after": 3})
    try:
        for name in ("boom", "slow", "fine"):
            with obs.span(name, kind="llm") as span:
                span.outputs = "I can't help with that."
        assert obs.flush(10)
        health = obs.dispatcher.health
        assert health["raising"].failures == 1 and not health["raising"].degraded
        assert health["slow"].slow == 1
        for _ in range(3):
            with obs.span("boom", kind="llm") as span:
                span.outputs = "ok"
        assert obs.flush(10)
        assert health["raising"].degraded
    finally:
        obs.shutdown()
    spans = {r["span_id"]: r["name"] for r in rows(url, "spans")}
    by_span: dict[str, set[str]] = {}
    for r in score_rows(url):
        by_span.setdefault(spans[r["span_id"]] + ":" + r["span_id"], set()).add(r["name"])
    for key, names in by_span.items():
        assert {"refusal", "length", "toxicity", "slow"} <= names, key
        assert ("raising" in names) == (not key.startswith("boom")), key
    assert len(by_span) == 6
