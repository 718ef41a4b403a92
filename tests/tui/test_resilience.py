"""A lost store shows a message and the screens retry until it is back."""

from __future__ import annotations

from typing import Any

from test_app import screen_text, settle, wait_for
from tui_fake_store import FakeStore
from tui_seed import NOW_NS

from chainsight.framework.model import Trace
from chainsight.tui.app import ChainsightApp
from chainsight.tui.data import DataSource, StoreDown


def _app() -> ChainsightApp:
    traces = [Trace(f"{i:032x}", f"t{i}", "ok", NOW_NS - i * 10**9, NOW_NS - i * 10**9 + 10**8)
              for i in range(20)]
    data = DataSource("fake://", store_factory=lambda url: FakeStore(traces))
    return ChainsightApp("fake://", now_ns=NOW_NS, data=data, retry_interval=0.1,
                         health_interval=0.2, store_label="fake")


async def test_lost_store_shows_message_and_recovers() -> None:
    FakeStore.down = True
    try:
        app = _app()
        async with app.run_test(size=(100, 24)) as pilot:
            assert await wait_for(pilot, lambda: "store unavailable" in screen_text(app))
            assert app.screen.query_one("#traces").row_count == 0  # type: ignore[attr-defined]
            assert app.is_running
            FakeStore.down = False
            assert await wait_for(pilot, lambda: "store unavailable" not in screen_text(app))
            await settle(pilot)
            assert app.screen.query_one("#traces").row_count == 20  # type: ignore[attr-defined]
    finally:
        FakeStore.down = False


def test_data_source_reconnects_once_then_raises() -> None:
    opened: list[Any] = []

    def factory(url: str) -> FakeStore:
        store = FakeStore([])
        opened.append(store)
        return store

    data = DataSource("fake://", store_factory=factory)
    assert data.count_traces() == 0
    FakeStore.down = True
    try:
        try:
            data.count_traces()
        except StoreDown as error:
            assert "locked" in str(error)
        else:
            raise AssertionError("StoreDown not raised")
    finally:
        FakeStore.down = False
    assert data.count_traces() == 0
    assert len(opened) == 3  # first open, the reconnect attempt, the open after recovery
    assert data.list_experiments() == []
