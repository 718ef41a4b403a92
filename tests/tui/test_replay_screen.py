"""Replay from the trace screen (``p`` on a model call), driven by Pilot: a
real LangChain call recorded (and redacted) into SQLite, replayed through
litellm with ``mock_response``, both answers side by side."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

litellm = pytest.importorskip("litellm")
pytest.importorskip("langchain_core")

from langchain_core.prompts import ChatPromptTemplate  # noqa: E402
from test_app import make_app, notifications, screen_text, settle, wait_for  # noqa: E402
from textual.widgets import Input  # noqa: E402
from tui_seed import HOSTILE  # noqa: E402

from chainsight.framework.adapters.langchain import CallbackHandler  # noqa: E402
from chainsight.framework.cli import main  # noqa: E402
from chainsight.framework.observer import Observer  # noqa: E402
from chainsight.framework.replay import REPLAY_OF_SPAN  # noqa: E402
from chainsight.plugins.demo.models import StreamingDemoModel  # noqa: E402
from chainsight.storage.query import Store  # noqa: E402
from chainsight.tui.app import ChainsightApp  # noqa: E402
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
        await pilot.press("ctrl+o")  # nothing run yet: nothing to open
        await pilot.pause()
        assert app.screen is replay
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
        await pilot.press("ctrl+o")  # the replay's own trace, over the original's
        await settle(pilot)
        opened = app.screen
        assert isinstance(opened, TraceDetailScreen) and opened is not screen
        assert opened.trace_id == replay.outcome.trace_id  # type: ignore[union-attr]
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


def _replays(url: str) -> list[Any]:
    with Store(url) as store:
        return [store.get_trace(t.trace_id) for t in store.list_traces().items if "replay" in (t.tags or ())]


async def _open_replay(pilot: Any, app: ChainsightApp) -> tuple[TraceDetailScreen, ReplayScreen]:
    await settle(pilot)
    await pilot.press("enter")
    await settle(pilot)
    screen = app.screen
    assert isinstance(screen, TraceDetailScreen)
    await _select_llm(pilot, screen)
    await pilot.press("p")
    await pilot.pause()
    replay = app.screen
    assert isinstance(replay, ReplayScreen)
    return screen, replay


async def test_chainsight_config_reaches_the_replay_s_recording(
        chat_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`chainsight --config FILE tui`: the replay is recorded with that file's
    redaction replacement, not the default configuration's."""
    config = tmp_path / "custom.toml"
    config.write_text('[plugins.redaction]\nreplacement = "<{kind} hidden>"\n')
    monkeypatch.setenv("CHAINSIGHT_REPLAY_MOCK_RESPONSE", "Write to bob@example.com")
    apps: list[ChainsightApp] = []
    monkeypatch.setattr(ChainsightApp, "run", lambda self, *a, **k: apps.append(self))  # the app, not a terminal
    assert main(["--config", str(config), "tui", "--db", chat_url]) == 0
    (app,) = apps
    async with app.run_test(size=(160, 50)) as pilot:
        _screen, replay = await _open_replay(pilot, app)
        # the stored messages hold the default's placeholder, not this file's form: said as such
        assert ("redaction had masked email 1 in this call (its messages or its output); no placeholder "
                "of the form <KIND hidden> is in the messages sent") in " ".join(screen_text(app).split())
        replay.query_one("#replay-model", Input).focus()
        await pilot.press("enter")
        assert await wait_for(pilot, lambda: replay.outcome is not None and not replay.running, 60)
        assert replay.outcome is not None and replay.outcome.error is None
    (detail,) = _replays(chat_url)
    call = next(s for s in detail.spans if s.kind == "llm")
    assert "Write to <email hidden>" in str(call.outputs)
    assert "bob@example.com" not in str(call.outputs) and "[redacted:" not in str(call.outputs)


class _SlowModel(BaseHTTPRequestHandler):
    """An OpenAI-compatible chat endpoint that answers once the test lets it."""

    server: Any

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.received.set()
        self.server.release.wait(60)
        body = json.dumps({
            "id": "chatcmpl-slow", "object": "chat.completion", "created": 0, "model": "gpt-4o-mini",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": "a late answer"}}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
        }).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def slow_model(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SlowModel)
    server.received, server.release = threading.Event(), threading.Event()  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{server.server_address[1]}/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    try:
        yield server
    finally:
        server.release.set()  # type: ignore[attr-defined]
        server.shutdown()
        server.server_close()
        thread.join(10)


async def test_escape_while_a_replay_runs_drops_its_result(chat_url: str, now_ns: int, slow_model: Any) -> None:
    app = make_app(chat_url, now_ns)  # no mock: the call goes to the slow endpoint
    notes = notifications(app)
    async with app.run_test(size=(160, 50)) as pilot:
        screen, replay = await _open_replay(pilot, app)
        replay.query_one("#replay-model", Input).focus()
        await pilot.press("enter")
        assert await wait_for(pilot, slow_model.received.is_set, 30)
        assert replay.running
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is screen
        slow_model.release.set()
        assert await wait_for(pilot, lambda: any("closed while it ran" in n for n in notes), 60), notes
        await pilot.pause()
        assert app.return_code is None and app.screen is screen
        assert replay.outcome is None  # dropped: nothing was written to the closed screen
    (detail,) = _replays(chat_url)
    (note,) = [n for n in notes if "closed while it ran" in n]
    assert note == f"the replay closed while it ran finished; recorded as trace {detail.trace.trace_id}"
    assert "a late answer" in str(next(s for s in detail.spans if s.kind == "llm").outputs)


async def test_a_temperature_that_is_no_number_sends_nothing(chat_url: str, now_ns: int) -> None:
    app = make_app(chat_url, now_ns, replay_mock_response=MOCK)
    async with app.run_test(size=(160, 50)) as pilot:
        _screen, replay = await _open_replay(pilot, app)
        replay.query_one("#replay-temperature", Input).value = "warm"
        replay.query_one("#replay-model", Input).focus()
        await pilot.press("enter")
        await settle(pilot)
        assert "temperature: not a number: 'warm'" in screen_text(app)
        assert replay.request is None and not replay.running and replay.outcome is None
        assert app.screen is replay
    assert _replays(chat_url) == []


async def test_p_on_a_call_stored_without_content_says_why(
        litellm_call: Callable[..., tuple[str, str]], now_ns: int) -> None:
    url, _ = litellm_call("bare.db", capture_content=False)
    app = make_app(url, now_ns, replay_mock_response=MOCK)
    notes = notifications(app)
    async with app.run_test(size=(160, 50)) as pilot:
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, TraceDetailScreen)
        await _select_llm(pilot, screen)
        await pilot.press("p")
        await pilot.pause()
        assert app.screen is screen  # no replay screen
    (note,) = notes
    assert "cannot be replayed: it has no stored messages (recorded without content" in note
    assert screen.selected is not None and screen.selected.span is not None
    assert screen.selected.span.span_id in note
