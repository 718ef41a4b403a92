"""The Alerts screen over alerts the real evaluator recorded: Enter opens the
traces behind one, Enter on a trace opens it, Esc goes back, ``t`` filters."""

from __future__ import annotations

from pathlib import Path

from test_app import make_app, screen_text, settle, table

from chainsight.framework.model import Alert, Span
from chainsight.framework.store_api import WriteBatch
from chainsight.plugins.alert_engine import Evaluator
from chainsight.plugins.alert_rules import load_rules
from chainsight.storage.query import Store
from chainsight.storage.writer import StoreWriter
from chainsight.tui.screens.alert_traces import AlertTracesScreen
from chainsight.tui.screens.alerts import AlertsScreen
from chainsight.tui.screens.trace_detail import TraceDetailScreen
from chainsight.tui.screens.traces import TracesScreen

SECOND = 10**9
NOW = 1_800_000_000 * SECOND


def _calls(url: str) -> set[str]:
    """Ten model calls a second for two minutes; every tenth takes 5 s. Returns the slow traces."""
    spans, slow = [], set()
    for i in range(1200):
        span = Span("ChatOpenAI", "llm", start_ns=NOW - 120 * SECOND + i * SECOND // 10)
        latency = 5.0 if i % 10 == 0 else 0.2
        span.end_ns = span.start_ns + int(latency * SECOND)
        span.status, span.model, span.provider = "ok", "gpt-4o", "openai"
        if latency > 1:
            slow.add(span.trace_id)
        spans.append(span)
    writer = StoreWriter(url)
    writer.write(WriteBatch(spans=spans))
    writer.close()
    return slow


def _evaluate(url: str) -> list[Alert]:
    rules = load_rules({"default_rules": False, "rules": [
        {"name": "slow_calls", "metric": "latency_p95", "threshold": 2.0, "window": "1m",
         "group_by": ["model"]}]})
    emitted: list[Alert] = []
    with Store(url) as store:
        Evaluator(store, rules, emitted.append, lambda: NOW, lease=False, max_trace_ids=8).evaluate()
    writer = StoreWriter(url)
    writer.write(WriteBatch(alerts=emitted))
    writer.close()
    return emitted


async def test_enter_opens_the_traces_behind_an_alert(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'alerts.db'}"
    slow = _calls(url)
    (alert,) = _evaluate(url)
    assert alert.state == "firing" and len(alert.trace_ids) == 8 and set(alert.trace_ids) <= slow

    app = make_app(url, NOW)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("3")
        await settle(pilot)
        assert isinstance(app.screen, AlertsScreen)
        assert "slow_calls" in screen_text(app) and "model=gpt-4o" in screen_text(app)

        await pilot.press("enter")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, AlertTracesScreen)
        assert [t.trace_id for t in screen.traces] == list(alert.trace_ids)
        assert table(app, "#alert-traces").row_count == 8
        assert "8 traces behind it" in screen_text(app)

        await pilot.press("down", "enter")
        await settle(pilot)
        assert isinstance(app.screen, TraceDetailScreen)
        assert app.screen.trace_id == alert.trace_ids[1]

        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, AlertTracesScreen)
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, AlertsScreen)

        await pilot.press("t")
        await settle(pilot)
        assert isinstance(app.screen, TracesScreen)
        assert "model:gpt-4o" in app.screen.filter_text
