"""``chainsight replay``: a model call recorded through LangChain (the demo's
fake chat model, redacted by the default plugins) into a real SQLite store,
sent again through litellm (``mock_response``, offline) and recorded as a new,
linked trace."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

litellm = pytest.importorskip("litellm")
pytest.importorskip("langchain_core")

from langchain_core.messages import AIMessage, HumanMessage, SystemMessage  # noqa: E402
from langchain_core.prompts import ChatPromptTemplate  # noqa: E402
from litellm.integrations.custom_logger import CustomLogger  # noqa: E402

from chainsight.framework.adapters.langchain import CallbackHandler  # noqa: E402
from chainsight.framework.adapters.litellm import LitellmCallback  # noqa: E402
from chainsight.framework.cli import main  # noqa: E402
from chainsight.framework.model import WITHHELD, Span  # noqa: E402
from chainsight.framework.observer import Observer  # noqa: E402
from chainsight.framework.replay import (  # noqa: E402
    REPLAY_EDITED,
    REPLAY_MASKED,
    REPLAY_OF_SPAN,
    REPLAY_OF_TRACE,
    ReplayError,
    default_model,
    parse_messages,
    request_from_span,
    to_messages,
)
from chainsight.plugins.demo.models import StreamingDemoModel  # noqa: E402
from chainsight.storage.query import Store  # noqa: E402

SYSTEM = "You are a shop assistant."
QUESTION = "Mail the refund policy to ann@example.com please"
MASKED_QUESTION = "Mail the refund policy to [redacted:email] please"
ANSWER = "Refunds take thirty days."
SENT = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": MASKED_QUESTION}]


class Received(CustomLogger):
    """What litellm itself was handed, call by call (its pre-call hook)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[dict[str, Any]] = []

    def log_pre_api_call(self, model: Any, messages: Any, kwargs: Any) -> None:
        self.calls.append({"model": model, "messages": json.loads(json.dumps(messages)),
                           "params": dict(kwargs.get("optional_params") or {})})


@pytest.fixture
def received() -> Iterator[Received]:
    """A logger in litellm's global list (saved and restored, as is suppress_debug_info)."""
    saved = list(litellm.callbacks)
    suppress = litellm.suppress_debug_info
    logger = Received()
    litellm.callbacks = [*saved, logger]
    try:
        yield logger
    finally:
        litellm.callbacks = saved
        litellm.suppress_debug_info = suppress


def record_chat(url: str, spill: Path) -> dict[str, str]:
    """A prompt | chat model chain, recorded with the default plugins (redaction
    masks the e-mail address): the ids of its trace, root and model call."""
    obs = Observer(url, strict=True, entry_points=False, spill_path=spill)
    try:
        prompt = ChatPromptTemplate.from_messages([("system", SYSTEM), ("human", "{question}")])
        chain = prompt | StreamingDemoModel(responses=[ANSWER], sleep=0.0, model_label="gpt-4o-mini")
        chain.invoke({"question": QUESTION}, config={"callbacks": [CallbackHandler(obs)]})
        assert obs.flush(10)
    finally:
        obs.shutdown()
    with Store(url) as store:
        (trace,) = store.list_traces().items
        detail = store.get_trace(trace.trace_id)
    assert detail is not None
    call = next(s for s in detail.spans if s.kind == "llm")
    root = next(s for s in detail.spans if s.parent_id is None)
    return {"trace": trace.trace_id, "root": root.span_id, "llm": call.span_id}


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CHAINSIGHT_CONFIG", raising=False)
    monkeypatch.delenv("CHAINSIGHT_TRACING", raising=False)
    url = f"sqlite:///{tmp_path / 'calls.db'}"
    return {"url": url, **record_chat(url, tmp_path / "spill")}


def replays(url: str) -> list[Any]:
    """The stored replay traces, newest first, with their spans."""
    with Store(url) as store:
        traces = [t for t in store.list_traces().items if "replay" in (t.tags or ())]
        return [store.get_trace(t.trace_id) for t in traces]


def test_replay_is_recorded_as_a_linked_trace_and_sends_the_stored_messages(
        store: dict[str, str], received: Received, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["replay", store["llm"][-10:], "--db", store["url"], "--model", "gpt-4o",
                 "--temperature", "0.7", "--mock-response", "Thirty days [bold]sharp[/]."])
    out, err = capsys.readouterr()
    assert code == 0, err

    # litellm got the stored messages, masked as stored, with the new parameters
    (call,) = received.calls
    assert call["messages"] == SENT
    assert call["model"] == "gpt-4o"
    assert call["params"]["temperature"] == 0.7
    assert call["params"]["max_tokens"] == 512  # the original call's (the demo model reports it)

    # the new trace: tagged, linked, its model call recorded by the normal pipeline
    (detail,) = replays(store["url"])
    root = next(s for s in detail.spans if s.parent_id is None)
    assert root.attributes[REPLAY_OF_SPAN] == store["llm"]
    assert root.attributes[REPLAY_OF_TRACE] == store["trace"]
    assert root.attributes[REPLAY_MASKED] == {"email": 1}
    assert REPLAY_EDITED not in root.attributes
    assert "replay" in root.tags and detail.trace.trace_id != store["trace"]
    replay = next(s for s in detail.spans if s.kind == "llm")
    assert replay.parent_id == root.span_id
    assert replay.inputs == SENT  # what was sent, as the litellm adapter stored it
    assert replay.model == "gpt-4o" and replay.status == "ok"
    assert replay.attributes["temperature"] == 0.7
    assert (replay.input_tokens, replay.output_tokens) == (10, 20)  # litellm's mock usage
    assert replay.cost_usd is not None and replay.cost_usd > 0  # priced by the pricing plugin

    # the screen: both calls side by side, the new trace, the masked notice
    assert f"new trace {detail.trace.trace_id}" in out
    assert "masked content replayed masked" in out and "email 1" in out
    assert ANSWER in out and "Thirty days [bold]sharp[/]." in out
    assert "gpt-4o-mini" in out and "gpt-4o" in out
    assert "temperature 0.7" in out and "temperature 0.2" in out

    # `chainsight show` of the new trace names the original
    assert main(["show", detail.trace.trace_id[-10:], "--db", store["url"]]) == 0
    shown = capsys.readouterr().out
    assert f"replay of span {store['llm']} of trace {store['trace']}" in shown


def test_json_output_and_the_span_s_own_model(store: dict[str, str], received: Received,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", store["llm"], "--db", store["url"], "--mock-response", "ok",
                 "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert received.calls[0]["model"] == "gpt-4o-mini"  # openai/gpt-4o-mini: the span's provider
    assert data["request"]["model"] == "openai/gpt-4o-mini"
    assert data["request"]["messages"] == SENT
    assert data["request"]["params"] == {"temperature": 0.2, "max_tokens": 512}
    assert data["replay_of"] == {"trace_id": store["trace"], "span_id": store["llm"]}
    assert data["original"]["output"] == ANSWER and data["replay"]["output"] == "ok"
    assert data["replay"]["input_tokens"] == 10 and data["replay"]["cost_usd"] > 0
    assert data["masked"] == {"email": 1} and "masked" in data["masked_notice"]
    assert data["error"] is None and data["stored"] is True
    (detail,) = replays(store["url"])
    assert detail.trace.trace_id == data["trace_id"]


def test_a_trace_id_picks_its_one_model_call(store: dict[str, str], received: Received,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", store["trace"][-10:], "--db", store["url"], "--mock-response", "ok"]) == 0
    assert f"replayed span {store['llm']}" in capsys.readouterr().out


EDITOR = """\
import json, sys
path = sys.argv[1]
messages = json.load(open(path))
messages[-1]["content"] = "How long is the refund window?"
json.dump(messages, open(path, "w"))
"""


def test_edit_sends_the_edited_messages(store: dict[str, str], received: Received, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    script = tmp_path / "editor.py"
    script.write_text(EDITOR)
    monkeypatch.setenv("EDITOR", f"{sys.executable} {script}")
    assert main(["replay", store["llm"], "--db", store["url"], "--edit", "--mock-response", "14 days"]) == 0
    assert "(messages edited)" in capsys.readouterr().out
    assert received.calls[0]["messages"] == [SENT[0], {"role": "user",
                                                       "content": "How long is the refund window?"}]
    (detail,) = replays(store["url"])
    root = next(s for s in detail.spans if s.parent_id is None)
    assert root.attributes[REPLAY_EDITED] is True


def test_bad_json_from_the_editor_is_a_clear_error_and_nothing_runs(
        store: dict[str, str], received: Received, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    script = tmp_path / "editor.py"
    script.write_text("import sys\nopen(sys.argv[1], 'w').write('[\\n  {\"role\": \"user\",\\n'"
                      " '   \"content\": oops}\\n]\\n')\n")
    monkeypatch.setenv("EDITOR", f"{sys.executable} {script}")
    assert main(["replay", store["llm"], "--db", store["url"], "--edit", "--mock-response", "x"]) == 1
    err = capsys.readouterr().err
    assert "the edited messages: line 3, column 15: invalid JSON" in err
    assert "nothing was replayed" in err
    assert received.calls == [] and replays(store["url"]) == []


def test_an_editor_that_fails_replays_nothing(store: dict[str, str], received: Received,
                                              monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("EDITOR", f"{sys.executable} -c 'raise SystemExit(3)'")
    assert main(["replay", store["llm"], "--db", store["url"], "--edit"]) == 1
    assert "exited with status 3" in capsys.readouterr().err
    assert received.calls == []


def test_a_failing_call_is_an_error_span_and_an_error(store: dict[str, str], received: Received,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["replay", store["llm"], "--db", store["url"], "--model", "nosuchprovider-model"])
    out, err = capsys.readouterr()
    assert code == 1
    assert "the replay failed" in err and "nosuchprovider-model" in err
    (detail,) = replays(store["url"])
    assert detail.trace.status == "error"
    replay = next(s for s in detail.spans if s.kind == "llm")
    assert replay.status == "error" and "nosuchprovider-model" in (replay.error or "")
    assert f"in trace {detail.trace.trace_id}" in err
    assert "error" in out  # the replay's column


def test_a_span_that_is_no_model_call_is_refused(store: dict[str, str], received: Received,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", store["root"], "--db", store["url"]]) == 1
    err = capsys.readouterr().err
    assert f"span {store['root']}" in err and "is a chain span, not a model call" in err
    assert received.calls == []


def test_unknown_ids_are_refused(store: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", "nosuchspan", "--db", store["url"]]) == 1
    assert "no span (or trace) matches 'nosuchspan'" in capsys.readouterr().err


def test_a_call_recorded_without_content_is_refused(tmp_path: Path, received: Received,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'bare.db'}"
    obs = Observer(url, strict=True, entry_points=False, spill_path=tmp_path / "spill")
    try:
        callback = LitellmCallback(obs, capture_content=False)
        litellm.completion(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}],
                           mock_response="hello", callbacks=[callback])
        assert callback.flush(10)
    finally:
        obs.shutdown()
    with Store(url) as store:
        (trace,) = store.list_traces().items
    received.calls.clear()
    assert main(["replay", trace.trace_id, "--db", url]) == 1
    err = capsys.readouterr().err
    assert "cannot be replayed: it has no stored messages" in err and "litellm.completion" in err
    assert received.calls == []


# ---- the core: what a stored span turns into ------------------------------------------


def test_langchain_messages_become_chat_messages() -> None:
    dumped = [m.model_dump() for m in (
        SystemMessage("be brief"), HumanMessage("weather?"),
        AIMessage("", tool_calls=[{"id": "c1", "name": "weather", "args": {"city": "Oslo"}}]),
    )]
    dumped.append({"type": "tool", "content": "rain", "tool_call_id": "c1"})
    assert to_messages([dumped]) == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": "",
         "tool_calls": [{"id": "c1", "type": "function",
                         "function": {"name": "weather", "arguments": '{"city": "Oslo"}'}}]},
        {"role": "tool", "content": "rain", "tool_call_id": "c1"},
    ]
    assert to_messages("a plain prompt") == [{"role": "user", "content": "a plain prompt"}]
    assert to_messages({"messages": [{"role": "user", "content": "hi"}]}) == [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(("inputs", "reason"), [
    (None, "no stored messages"),
    (WITHHELD, "withheld"),
    ({"__truncated__": True, "original_bytes": 99999, "preview": "[{"}, "truncated (99999 bytes"),
    ([[{"role": "user", "content": "a"}], [{"role": "user", "content": "b"}]], "a batch of 2"),
    ([{"content": "no role"}], "message 1 has no role"),
])
def test_unusable_inputs_are_refused_with_the_reason(inputs: Any, reason: str) -> None:
    span = Span("chat", "llm", span_id="s" * 32, trace_id="t" * 32)
    span.inputs, span.model = inputs, "gpt-4o"
    with pytest.raises(ReplayError, match=r"span s+ \(chat\)") as caught:
        request_from_span(span)
    assert reason in str(caught.value)


def test_a_span_without_a_model_needs_one() -> None:
    span = Span("chat", "llm", span_id="s" * 32, trace_id="t" * 32)
    span.inputs = [{"role": "user", "content": "hi"}]
    with pytest.raises(ReplayError, match="records no model"):
        request_from_span(span)
    assert request_from_span(span, model="gpt-4o").model == "gpt-4o"
    span.model, span.provider = "gemini-1.5-pro", "google_genai"
    assert default_model(span) == "gemini/gemini-1.5-pro"


def test_edited_messages_must_be_messages() -> None:
    with pytest.raises(ReplayError, match="line 1, column 2: invalid JSON"):
        parse_messages("[oops]", "f.json")
    with pytest.raises(ReplayError, match="expected a JSON array"):
        parse_messages("{}", "f.json")
    with pytest.raises(ReplayError, match='message 2 must be an object with a "role"'):
        parse_messages('[{"role": "user", "content": "a"}, {"content": "b"}]', "f.json")
