"""Replay from the trace screen (``p`` on a model call), driven by Pilot: a
real LangChain call recorded (and redacted) into SQLite, replayed through
litellm with ``mock_response``, both answers side by side."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

litellm = pytest.importorskip("litellm")
pytest.importorskip("langchain_core")

from langchain_core.prompts import ChatPromptTemplate  # noqa: E402
from test_app import make_app, screen_text, settle, wait_for  # noqa: E402
from textual.widgets import Input  # noqa: E402
from tui_seed import HOSTILE  # noqa: E402

from chainsight.framework.adapters.langchain import CallbackHandler  # noqa: E402
from chainsight.framework.observer import Observer  # noqa: E402
from chainsight.framework.replay import REPLAY_OF_SPAN  # noqa: E402
from chainsight.plugins.demo.models import StreamingDemoModel  # noqa: E402
from chainsight.storage.query import Store  # noqa: E402
from chainsight.tui.screens.replay import ReplayScreen  # noqa: E402
from chainsight.tui.screens.trace_detail import TraceDetailScreen  # noqa: E402
from chainsight.tui.widgets.keybar import shown_bindings  # noqa: E402

ANSWER = "Refunds take thirty days."
MOCK = "Fourteen days [bold]now[/] [@click=app.quit]x[/]"


@pytest.fixture(autouse=True)
def litellm_globals() -> Iterator[None]:
    saved, suppress = list(litellm.callbacks), litellm.suppress_debug_info
    try:
        yield
    finally:
        litellm.callbacks, litellm.suppress_debug_info = saved, suppress


@pytest.fixture
def chat_url(tmp_path: Path) -> str:
    """One prompt | chat model trace whose question held an e-mail address (masked)."""
    url = f"sqlite:///{tmp_path / 'chat.db'}"
    obs = Observer(url, strict=True, entry_points=False, spill_path=tmp_path / "spill")
    try:
        prompt = ChatPromptTemplate.from_messages([("system", "Shop assistant."), ("human", "{q}")])
        chain = prompt | StreamingDemoModel(responses=[ANSWER], sleep=0.0, model_label="gpt-4o-mini")
        chain.invoke({"q": "Refunds? I am ann@example.com"}, config={"callbacks": [CallbackHandler(obs)]})
        assert obs.flush(10)
    finally:
        obs.shutdown()
    return url


async def _select_llm(pilot: Any, screen: TraceDetailScreen) -> None:
    for _ in range(10):
        row = screen.selected
        if row is not None and row.span is not None and row.span.kind == "llm":
            return
        await pilot.press("down")
        await pilot.pause()
    raise AssertionError("no llm span in the trace")


def _keys(screen: Any) -> set[str]:
    return {binding.key for binding, _enabled in shown_bindings(screen)}


async def test_replay_a_model_call_side_by_side(chat_url: str, now_ns: int) -> None:
    app = make_app(chat_url, now_ns, replay_mock_response=MOCK)
    async with app.run_test(size=(160, 50)) as pilot:
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, TraceDetailScreen)
        assert "p" not in _keys(screen)  # the root chain span: nothing to replay
        await _select_llm(pilot, screen)
        original = screen.selected.span  # type: ignore[union-attr]
        assert "p" in _keys(screen)
        await pilot.press("p")
        await pilot.pause()
        replay = app.screen
        assert isinstance(replay, ReplayScreen)
        model = replay.query_one("#replay-model", Input)
        assert model.value == "openai/gpt-4o-mini"  # prefilled from the span
        assert replay.query_one("#replay-temperature", Input).value == "0.2"
        model.value = "gpt-4o"
        replay.query_one("#replay-temperature", Input).value = "0.9"
        model.focus()
        await pilot.press("enter")
        assert await wait_for(pilot, lambda: replay.outcome is not None and not replay.running, 60)
        await pilot.pause()
        text = screen_text(app)
        assert app.screen is replay and app.return_code is None
        assert ANSWER in text
        assert MOCK in text  # the model's answer, literally: never markup
        assert "masked content replayed masked" in text and "email 1" in text
        assert "gpt-4o-mini" in text and "temperature 0.9" in text and "temperature 0.2" in text
        assert "10 → 20" in text  # litellm's mock usage, read back from the store
        assert "$0.0" in text  # priced
        assert f"recorded as trace {replay.outcome.trace_id}" in text  # type: ignore[union-attr]
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is screen
    with Store(chat_url) as store:
        detail = store.get_trace(replay.outcome.trace_id)  # type: ignore[union-attr]
    assert detail is not None and "replay" in detail.trace.tags
    root = next(s for s in detail.spans if s.parent_id is None)
    assert root.attributes[REPLAY_OF_SPAN] == original.span_id
    call = next(s for s in detail.spans if s.kind == "llm")
    assert call.model == "gpt-4o" and call.attributes["temperature"] == 0.9
    assert "[redacted:email]" in str(call.inputs) and "ann@example.com" not in str(call.inputs)


async def test_a_failed_replay_shows_its_error_and_hostile_text_stays_literal(
        hostile: tuple[str, str], now_ns: int) -> None:
    url, _trace_id = hostile
    app = make_app(url, now_ns)  # no mock: the hostile model name is no litellm model
    async with app.run_test(size=(200, 50)) as pilot:
        await settle(pilot)
        await pilot.press("enter")  # the hostile trace is the newest
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, TraceDetailScreen)
        await _select_llm(pilot, screen)
        await pilot.press("p")
        await pilot.pause()
        replay = app.screen
        assert isinstance(replay, ReplayScreen)
        assert "[@click=app.quit]x[/]" in screen_text(app)  # the span's name and output, literally
        replay.query_one("#replay-model", Input).focus()
        await pilot.press("enter")
        assert await wait_for(pilot, lambda: replay.outcome is not None and not replay.running, 60)
        await pilot.pause()
        text = screen_text(app)
        assert app.return_code is None and app.screen is replay
        assert "replay failed" in text
        assert replay.outcome is not None and replay.outcome.error
        for literal in ("[/]", "[bold"):
            assert literal in text
        assert any(h in text for h in HOSTILE if h.startswith("["))
