"""The Experiments screen on a store with two experiments: the list, a
summary, the comparison (the same figures as `chainsight eval compare`), an
item's trace, and untrusted text shown literally. Snapshot at 120x40."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from test_app import make_app, screen_text, settle
from textual.pilot import Pilot
from textual.widgets import DataTable
from tui_seed import NOW_NS

from chainsight.storage import schema
from chainsight.storage.engine import open_engine
from chainsight.storage.query import Store
from chainsight.tui.screens.experiments import ExperimentsScreen
from chainsight.tui.screens.trace_detail import TraceDetailScreen

HOSTILE = "v2 [bold]prompt[/] [@click=app.quit]"
N = 8
WRONG = {"A": {2}, "B": {2, 5, 6}}  # B regressed on items 5 and 6


def add_experiments(url: str) -> list[str]:
    """Two experiments over one dataset with fixed ids and times; returns
    the seeded trace ids the results point at."""
    with Store(url) as reader:
        traces = [t.trace_id for t in reader.list_traces(limit=N).items]
    engine = open_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.insert(schema.datasets).values(
            dataset_id="d" * 32, name="faq", version="0123456789ab", created_ns=NOW_NS - 10**13))
        conn.execute(sa.insert(schema.dataset_items), [
            {"item_id": f"item{n:028x}", "dataset_id": "d" * 32, "position": n, "input": f"question {n}?",
             "expected": f"answer {n}", "metadata": None, "created_ns": NOW_NS - 10**13} for n in range(N)])
        for k, (name, label) in enumerate((("A", "v1 baseline"), ("B", HOSTILE))):
            eid = name.lower() * 32
            values = [0.0 if n in WRONG[name] else 1.0 for n in range(N)]
            mean = sum(values) / N
            conn.execute(sa.insert(schema.experiments).values(
                experiment_id=eid, name=label, dataset_id="d" * 32, status="done",
                metadata={"dataset": "faq", "dataset_version": "0123456789ab", "target": "app:chain"},
                summary={"items": N, "errors": 0, "latency_p50_ms": 420.0 + k, "latency_p95_ms": 900.0,
                         "input_tokens": 1200, "output_tokens": 300, "cost_usd": 0.0042,
                         "scores": {"exact_match": {"mean": mean, "low": mean - 0.2, "high": min(1, mean + 0.1),
                                                    "n": N},
                                    "token_f1": {"mean": mean, "low": mean - 0.1, "high": 1.0, "n": N}}},
                created_ns=NOW_NS - (3 - k) * 3600 * 10**9, ended_ns=NOW_NS))
            conn.execute(sa.insert(schema.experiment_results), [
                {"result_id": f"{name}{n:031x}", "experiment_id": eid, "item_id": f"item{n:028x}",
                 "trace_id": traces[n], "input": f"question {n}?", "expected": f"answer {n}",
                 "output": "[red]no idea[/red]" if values[n] == 0 else f"answer {n}", "error": None,
                 "latency_ms": 400.0, "input_tokens": 150, "output_tokens": 40, "cost_usd": None,
                 "scores": {"exact_match": values[n], "token_f1": values[n]}, "created_ns": NOW_NS + n}
                for n in range(N)])
    engine.dispose()
    return traces


async def _compared(pilot: Pilot[Any]) -> None:
    await settle(pilot)
    await pilot.press("4")
    await settle(pilot)
    await pilot.press("enter")  # the highlighted (newest) against the run before it
    await settle(pilot)


def test_snapshot(snap_compare: Any, fresh_url: str) -> None:
    add_experiments(fresh_url)
    assert snap_compare(make_app(fresh_url, NOW_NS), terminal_size=(120, 40), run_before=_compared)


async def test_summary_comparison_and_an_items_trace(fresh_url: str) -> None:
    traces = add_experiments(fresh_url)
    app = make_app(fresh_url, NOW_NS)
    async with app.run_test(size=(140, 50)) as pilot:
        await settle(pilot)
        await pilot.press("4")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, ExperimentsScreen)
        text = screen_text(app)
        assert HOSTILE in text and app.return_code is None  # literal, never markup or an action
        assert "exact_match" in text and "latency p50 421ms" in text.replace(" ms", "ms")
        await pilot.press("down")  # the older one's summary
        await settle(pilot)
        assert "v1 baseline  " + "a" * 32 in screen_text(app)
        await pilot.press("space", "up", "space", "enter")
        await settle(pilot)
        text = screen_text(app)
        assert "2 item(s) regressed" in text
        assert "[red]no idea[/red]" in text
        rows = screen.query_one("#regressions", DataTable)
        assert [rows.get_row_at(i)[2].plain for i in range(rows.row_count)] == ["question 5?", "question 6?"]
        await pilot.press("down", "o")  # the regressed items have the focus
        await settle(pilot)
        assert isinstance(app.screen, TraceDetailScreen) and app.screen.trace_id == traces[6]
        await pilot.press("escape")
        await settle(pilot)
        await pilot.press("4")
        await settle(pilot)
        assert isinstance(app.screen, ExperimentsScreen)


async def test_adding_traces_to_a_dataset_from_the_trace_view(fresh_url: str) -> None:
    from chainsight.storage.evaluation import EvalStore

    app = make_app(fresh_url, NOW_NS)
    notes: list[str] = []
    original = app.notify
    app.notify = lambda message, *a, **k: (notes.append(str(message)), original(message, *a, **k))[1]  # type: ignore[method-assign]

    with Store(fresh_url) as reader:
        first, second = (t.trace_id for t in reader.list_traces(limit=2).items)
        root = next(s for s in (reader.get_trace(first) or pytest.fail()).spans if s.parent_id is None)

    async def add(trace_id: str, name: str) -> None:
        app.open_trace(trace_id)
        await settle(pilot)
        assert isinstance(app.screen, TraceDetailScreen)
        await pilot.press("a")
        await pilot.pause()
        await pilot.press(*name, "enter")
        await settle(pilot)
        await pilot.press("escape")
        await settle(pilot)

    async with app.run_test(size=(120, 40)) as pilot:
        await add(first, "golden")
        await add(second, "golden")
        await add(second, "golden")  # the same trace again: no new version
        await add(first, "bad@name")
    assert notes[0].startswith("trace added to dataset golden@") and notes[0].endswith("(1 items)")
    assert notes[1].endswith("(2 items)") and notes[2].startswith("trace already in dataset golden@")
    assert "invalid dataset name 'bad@name'" in notes[3]
    with EvalStore(fresh_url) as store:
        assert [d.item_count for d in store.list_datasets()] == [2, 1]  # two versions
        items = store.dataset_items(store.get_dataset("golden").dataset_id)
    assert [i.metadata["trace_id"] for i in items] == [first, second]
    assert (items[0].input, items[0].expected) == (root.inputs, root.outputs)
