"""Pilot tests: every screen by keyboard, filtering, paging, trace detail, feedback."""

from __future__ import annotations

import json
import stat
import threading
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, Static

from chainsight.framework.cli_render import short_id
from chainsight.storage.query import Store
from chainsight.tui import format as fmt
from chainsight.tui.app import ChainsightApp
from chainsight.tui.export import export_path, write_private
from chainsight.tui.screens.alert_traces import AlertTracesScreen
from chainsight.tui.screens.alerts import AlertsScreen
from chainsight.tui.screens.experiments import ExperimentsScreen
from chainsight.tui.screens.help import HelpScreen
from chainsight.tui.screens.metrics import CALLS_TITLE, TRACES_TITLE, MetricsScreen
from chainsight.tui.screens.trace_detail import TraceDetailScreen
from chainsight.tui.screens.traces import TracesScreen
from chainsight.tui.widgets.waterfall import SpanTree


def screen_text(app: ChainsightApp) -> str:
    """What the terminal shows right now, as plain text."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


async def settle(pilot: Pilot[Any]) -> None:
    """Let workers finish and their results be painted."""
    for _ in range(3):
        await pilot.pause()
        await pilot.app.workers.wait_for_complete()
    await pilot.pause()


async def wait_for(pilot: Pilot[Any], condition: Any, timeout: float = 5.0) -> bool:
    """Pause until ``condition()`` holds (a slow CI machine gets ``timeout``)."""
    for _ in range(int(timeout / 0.05)):
        if condition():
            return True
        await pilot.pause(0.05)
    return bool(condition())


def make_app(url: str, now_ns: int, **kwargs: Any) -> ChainsightApp:
    return ChainsightApp(url, now_ns=now_ns, store_label="seeded.db", **kwargs)


def table(app: ChainsightApp, selector: str = "#traces") -> DataTable[Any]:
    return app.screen.query_one(selector, DataTable)


async def test_every_screen_by_keyboard(store_url: str, now_ns: int) -> None:
    app = make_app(store_url, now_ns)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, TracesScreen)
        assert table(app).row_count == 100
        assert "300 traces" in screen_text(app)
        await pilot.press("2")
        await settle(pilot)
        assert isinstance(app.screen, MetricsScreen)
        assert "latency p95" in screen_text(app)
        assert table(app, "#aggregates").row_count == 1
        assert table(app, "#by-model").row_count > 1
        await pilot.press("3")
        await settle(pilot)
        assert isinstance(app.screen, AlertsScreen)
        assert "error_rate" in screen_text(app)
        await pilot.press("4")
        await settle(pilot)
        assert isinstance(app.screen, ExperimentsScreen)
        assert "No experiments" in screen_text(app)
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        await pilot.press("1")
        await settle(pilot)
        assert isinstance(app.screen, TracesScreen)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, TraceDetailScreen)
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, TracesScreen)
        assert app.return_code is None


async def test_command_palette_switches_screens(store_url: str, now_ns: int) -> None:
    app = make_app(store_url, now_ns)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"Alerts")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, AlertsScreen)


async def test_filter_good_and_bad(store_url: str, now_ns: int) -> None:
    app = make_app(store_url, now_ns)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, TracesScreen)
        await pilot.press("slash")
        assert isinstance(app.focused, Input)
        await pilot.press(*"status:error", "enter")
        await settle(pilot)
        assert screen.items and all(t.status == "error" for t in screen.items)
        errors = len(screen.items)
        assert errors < 300

        await pilot.press("slash", "ctrl+a", "ctrl+k", *"cost>>cheap", "enter")
        await settle(pilot)
        error = screen.query_one("#filter-error", Static)
        assert error.display and "cost" in str(error.render())
        assert len(screen.items) == errors  # the table keeps the last good result
        assert app.return_code is None

        await pilot.press("slash", "ctrl+a", "ctrl+k", *"user:alice latency>1s", "enter")
        await settle(pilot)
        assert not screen.query_one("#filter-error", Static).display
        assert all(t.user_id == "alice" and t.duration_s > 1 for t in screen.items)


async def test_paging_loads_next_page_at_the_end(store_url: str, now_ns: int) -> None:
    app = make_app(store_url, now_ns, page_size=50)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, TracesScreen)
        assert table(app).row_count == 50
        await pilot.press("ctrl+end")
        await settle(pilot)
        assert table(app).row_count == 100
        for _ in range(6):
            await pilot.press("ctrl+end")
            await settle(pilot)
        assert table(app).row_count == 300
        assert screen.next_cursor is None
        starts = [t.start_ns for t in screen.items]
        assert starts == sorted(starts, reverse=True)
        assert len({t.trace_id for t in screen.items}) == 300


async def test_sort_by_cost(store_url: str, now_ns: int) -> None:
    app = make_app(store_url, now_ns)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, TracesScreen)
        while screen.order != "cost":
            await pilot.press("s")
        await settle(pilot)
        costs = [t.cost_usd for t in screen.items if t.cost_usd is not None]
        assert costs == sorted(costs, reverse=True)
        await pilot.press("o")
        await settle(pilot)
        costs = [t.cost_usd for t in screen.items if t.cost_usd is not None]
        assert costs == sorted(costs)


async def test_open_trace_and_select_spans(store_url: str, now_ns: int) -> None:
    app = make_app(store_url, now_ns)
    async with app.run_test(size=(140, 45)) as pilot:
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, TraceDetailScreen)
        tree = screen.query_one(SpanTree)
        assert tree.span_count == len(screen.detail.spans) >= 3
        seen_llm = False
        for _ in range(tree.span_count):
            await pilot.press("down")
            await pilot.pause()
            row = screen.selected
            if row is not None and row.span is not None and row.span.kind == "llm":
                seen_llm = True
                body = str(screen.query_one("#span-body", Static).render())
                for word in ("tokens in", "tokens out", "cost", "TTFT", "TPOT", "inputs",
                             "outputs", "messages", row.span.model):
                    assert word in body
                assert "█" in screen_text(app)  # the waterfall bars
                break
        assert seen_llm


async def test_feedback_is_stored(fresh_url: str, now_ns: int, tmp_path: Path) -> None:
    app = make_app(fresh_url, now_ns)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, TraceDetailScreen)
        trace_id = screen.trace_id
        await pilot.press("plus")
        await settle(pilot)
        await pilot.press("r")
        await pilot.pause()
        await pilot.press("4")
        await settle(pilot)
        await pilot.press("c")
        await pilot.pause()
        await pilot.press(*"wrong [/] page", "enter")
        await settle(pilot)
        assert app.return_code is None
    with Store(fresh_url) as store:
        scores = store.list_scores(trace_id=trace_id, source="feedback")
    by_name = {s.name: s for s in scores}
    assert by_name["thumbs"].value == 1.0
    assert by_name["rating"].value == 4.0
    assert by_name["comment"].comment == "wrong [/] page"


async def test_feedback_comment_is_masked_and_starts_no_pipeline(
    fresh_url: str, now_ns: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The TUI writes feedback straight to the store: the redaction plugin
    masks the comment first, and no Observer pipeline thread is started."""
    started: list[str] = []
    start = threading.Thread.start

    def record_start(thread: threading.Thread) -> None:
        started.append(thread.name)
        start(thread)

    monkeypatch.setattr(threading.Thread, "start", record_start)
    app = make_app(fresh_url, now_ns)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, TraceDetailScreen)
        trace_id = screen.trace_id
        await pilot.press("c")
        await pilot.pause()
        await pilot.press(*"mail alice@example.com please", "enter")
        await settle(pilot)
        await app.workers.wait_for_complete()
    with Store(fresh_url) as store:
        scores = store.list_scores(trace_id=trace_id, source="feedback")
    comments = [s.comment for s in scores if s.name == "comment"]
    assert len(comments) == 1
    assert "alice@example.com" not in str(comments[0])
    assert str(comments[0]).startswith("mail ") and str(comments[0]).endswith(" please")
    assert started, "no thread was started at all: the recorder is not working"
    assert not [name for name in started if name.startswith("chainsight-pipeline")], started


def notifications(app: ChainsightApp) -> list[str]:
    """Record the text of every notification ``app`` shows from now on."""
    notes: list[str] = []
    notify = app.notify

    def record(message: str, *args: Any, **kwargs: Any) -> None:
        notes.append(str(message))
        notify(message, *args, **kwargs)

    app.notify = record  # type: ignore[method-assign]
    return notes


async def test_export_and_copy(store_url: str, now_ns: int, tmp_path: Path) -> None:
    app = make_app(store_url, now_ns, export_dir=tmp_path / "out")
    notes = notifications(app)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, TraceDetailScreen)
        await pilot.press("e")
        await settle(pilot)
        await pilot.press("y")
        await pilot.pause()
        trace_id = screen.trace_id
    path = tmp_path / "out" / f"trace-{trace_id}.json"
    doc = json.loads(path.read_text())
    assert doc["trace"]["trace_id"] == trace_id
    assert len(doc["spans"]) == screen.detail.trace.span_count
    assert json.loads(app.clipboard)["trace"]["trace_id"] == trace_id
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert f"exported to {path}" in notes


async def test_export_goes_to_the_user_data_folder_not_the_cwd(
        store_url: str, now_ns: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    app = make_app(store_url, now_ns)  # no export_dir: the default
    notes = notifications(app)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        trace_id = app.screen.trace_id  # type: ignore[attr-defined]
        await pilot.press("e")
        await settle(pilot)
    path = tmp_path / "data" / "chainsight" / "exports" / f"trace-{trace_id}.json"
    assert path.is_file() and list(work.iterdir()) == []
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [stat.S_IMODE(p.stat().st_mode) for p in (path.parent, path.parent.parent)] == [
        0o700, 0o700]
    assert notes[-1] == f"exported to {path}"  # the full path


def test_export_path_keeps_a_hostile_trace_id_in_its_folder(tmp_path: Path) -> None:
    path = export_path(tmp_path, "../../etc/passwd/x\u202e")
    assert path.parent == tmp_path.absolute()
    assert path.name == "trace-_.._etc_passwd_x_.json"
    assert export_path(Path("rel"), "abc").is_absolute()


def test_rewriting_an_export_makes_it_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "trace-x.json"
    path.write_text("old")
    path.chmod(0o644)
    write_private(path, "new")
    assert path.read_text() == "new" and stat.S_IMODE(path.stat().st_mode) == 0o600


async def test_alert_jumps_to_its_traces(store_url: str, now_ns: int) -> None:
    app = make_app(store_url, now_ns)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("3")
        await settle(pilot)
        await pilot.press("enter")  # the traces it kept
        await settle(pilot)
        assert isinstance(app.screen, AlertTracesScreen)
        assert app.screen.traces and all(t.status == "error" for t in app.screen.traces)
        await pilot.press("escape", "t")  # the traces its labels and time point at
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, TracesScreen)
        assert "model:gpt-4o" in screen.filter_text and "status:error" in screen.filter_text
        assert all(t.status == "error" for t in screen.items)


async def test_live_tail_shows_new_traces(fresh_url: str, now_ns: int) -> None:
    import random

    from tui_seed import make_trace

    from chainsight.storage.writer import StoreWriter, WriteBatch

    app = make_app(fresh_url, now_ns, live_interval=0.1)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("t")
        assert app.screen.live  # type: ignore[attr-defined]
        spans = make_trace(random.Random(5), now_ns + 1_000_000, name="brand_new_trace")
        writer = StoreWriter(fresh_url)
        writer.write(WriteBatch(spans=spans))
        writer.close()
        for _ in range(50):  # live tail polls every 0.1 s; allow a slow machine 5 s
            await pilot.pause(0.1)
            if "301 traces" in screen_text(app):
                break
        await settle(pilot)
        assert table(app).get_row_at(0)[1].plain == "brand_new_trace"
        assert "301 traces" in screen_text(app)


@pytest.mark.parametrize("size", [(80, 24), (200, 60)])
async def test_traces_fit_small_and_large_terminals(store_url: str, now_ns: int,
                                                    size: tuple[int, int]) -> None:
    app = make_app(store_url, now_ns)
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        text = screen_text(app)
        assert "name" in text and "cost" in text
        assert table(app).virtual_size.width <= size[0]


async def test_metrics_keep_traces_and_model_calls_apart(store_url: str, now_ns: int) -> None:
    app = make_app(store_url, now_ns)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("2")
        await settle(pilot)
        traces, calls = table(app, "#aggregates"), table(app, "#by-model")
        heads = [[str(c.label) for c in t.columns.values()][:2] for t in (traces, calls)]
        assert heads == [["", "traces"], ["model", "calls"]]
        assert traces.row_count == 1 and traces.get_row_at(0)[0].plain == "all"
        with Store(store_url) as store:
            models = {str(r.group) for r in store.aggregates(now_ns - 6 * 3600 * 10**9, now_ns,
                                                             group_by="model")}
        assert {calls.get_row_at(i)[0].plain for i in range(calls.row_count)} == models
        text = screen_text(app)
        assert TRACES_TITLE in text and CALLS_TITLE in text
        assert text.index(TRACES_TITLE) < text.index("all  ") < text.index(CALLS_TITLE)
        await pilot.press("g")  # group by model off: the model-call table goes, titles too
        await settle(pilot)
        assert not calls.display and CALLS_TITLE not in screen_text(app)
        assert traces.row_count == 1


@pytest.mark.parametrize("size", [(80, 24), (200, 60)])
async def test_sort_arrow_stays_in_the_header(store_url: str, now_ns: int,
                                             size: tuple[int, int]) -> None:
    app = make_app(store_url, now_ns)
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, TracesScreen)
        titles = {c.order: c.title for c in screen.columns if c.order}
        seen = set()
        for _ in range(len(titles)):
            await pilot.press("s")
            await settle(pilot)
            header = screen_text(app).splitlines()[2]
            assert f"{titles[screen.order]} ↓" in header, header
            seen.add(screen.order)
            await pilot.press("o")
            await settle(pilot)
            assert f"{titles[screen.order]} ↑" in screen_text(app).splitlines()[2]
        assert seen == set(titles)


async def test_ages_are_fresh_after_returning_from_a_trace(store_url: str, now_ns: int) -> None:
    app = make_app(store_url, now_ns)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, TracesScreen)
        first = screen.items[0]

        def when() -> str:
            return str(table(app).get_cell(first.trace_id, "when"))

        assert when() == fmt.ago(first.start_ns, now_ns).replace(" ago", "")
        await pilot.press("enter")
        await settle(pilot)
        app.frozen_now = now_ns + 3 * 3600 * 10**9  # three hours spent reading the trace
        await pilot.press("escape")
        await settle(pilot)
        assert when() == fmt.ago(first.start_ns, app.frozen_now).replace(" ago", "") != "22m"
        app.frozen_now += 2 * 86400 * 10**9  # and after a visit to another screen
        await pilot.press("2")
        await settle(pilot)
        await pilot.press("1")
        await settle(pilot)
        assert when() == fmt.ago(first.start_ns, app.frozen_now).replace(" ago", "")


async def test_short_ids_are_the_cli_short_ids(store_url: str, now_ns: int) -> None:
    app = make_app(store_url, now_ns)
    async with app.run_test(size=(200, 60)) as pilot:
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, TracesScreen)
        shown = [str(table(app).get_cell(t.trace_id, "id")) for t in screen.items[:20]]
        assert shown == [short_id(t.trace_id) for t in screen.items[:20]]
        assert all(s in screen_text(app) for s in shown[:5])
