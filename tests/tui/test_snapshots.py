"""Snapshots of the main screens on the seeded store, with "now" frozen.

Regenerate with ``pytest tests/tui/test_snapshots.py --snapshot-update`` and
look at the SVGs under ``__snapshots__`` before committing them.
"""

from __future__ import annotations

from typing import Any

import pytest
from test_app import make_app, settle
from textual.pilot import Pilot


async def _ready(pilot: Pilot[Any]) -> None:
    await settle(pilot)


@pytest.mark.parametrize("size", [(120, 40), (80, 24), (200, 60)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_traces(snap_compare: Any, store_url: str, now_ns: int, size: tuple[int, int]) -> None:
    assert snap_compare(make_app(store_url, now_ns), terminal_size=size, run_before=_ready)


def test_trace_detail(snap_compare: Any, store_url: str, now_ns: int) -> None:
    async def open_llm_span(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        await pilot.press("down", "down", "enter")
        await settle(pilot)
        await pilot.press("down", "down", "down")
        await settle(pilot)

    assert snap_compare(make_app(store_url, now_ns), terminal_size=(120, 40),
                        run_before=open_llm_span)


def test_metrics(snap_compare: Any, store_url: str, now_ns: int) -> None:
    async def to_metrics(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        await pilot.press("2")
        await settle(pilot)

    assert snap_compare(make_app(store_url, now_ns), terminal_size=(120, 40),
                        run_before=to_metrics)


def test_alerts(snap_compare: Any, store_url: str, now_ns: int) -> None:
    async def to_alerts(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        await pilot.press("3")
        await settle(pilot)

    assert snap_compare(make_app(store_url, now_ns), terminal_size=(120, 40), run_before=to_alerts)
