"""``chainsight replay``: a model call recorded through LangChain (the demo's
fake chat model, redacted by the default plugins) into a real SQLite store,
sent again through litellm (``mock_response``, offline) and recorded as a new,
linked trace."""

from __future__ import annotations

import dataclasses
import json
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
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
from chainsight.framework.model import REDACTED, WITHHELD, Span  # noqa: E402
from chainsight.framework.observer import Observer  # noqa: E402
from chainsight.framework.replay import (  # noqa: E402
    REPLAY_CALL_PENDING,
    REPLAY_EDITED,
    REPLAY_MASKED,
    REPLAY_OF_SPAN,
    REPLAY_OF_TRACE,
    ReplayError,
    default_model,
    masked_in,
    masked_notice,
    parse_messages,
    request_from_span,
    run_replay,
    to_messages,
    with_messages,
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


def record_chat(url: str, spill: Path, *, question: str = QUESTION, answer: str = ANSWER) -> dict[str, str]:
    """A prompt | chat model chain, recorded with the default plugins (redaction
    masks the e-mail address): the ids of its trace, root and model call."""
    obs = Observer(url, strict=True, entry_points=False, spill_path=spill)
    try:
        prompt = ChatPromptTemplate.from_messages([("system", SYSTEM), ("human", "{question}")])
        chain = prompt | StreamingDemoModel(responses=[answer], sleep=0.0, model_label="gpt-4o-mini")
        chain.invoke({"question": question}, config={"callbacks": [CallbackHandler(obs)]})
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


LISTS = ("callbacks", "input_callback", "success_callback", "failure_callback",
         "_async_success_callback", "_async_failure_callback")


def test_litellm_s_global_callback_lists_are_left_as_they_were(
        store: dict[str, str], received: Received, capsys: pytest.CaptureFixture[str]) -> None:
    """litellm adds a per-call callback to its global lists for good; replay takes it out."""
    def ours() -> list[tuple[str, object]]:
        return [(name, c) for name in LISTS for c in getattr(litellm, name) if isinstance(c, LitellmCallback)]

    before = ours()
    assert main(["replay", store["llm"], "--db", store["url"], "--mock-response", "ok"]) == 0
    assert main(["replay", store["llm"], "--db", store["url"], "--model", "nosuchprovider-x"]) == 1
    assert ours() == before
    assert len(replays(store["url"])) == 2


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
    out = capsys.readouterr().out
    assert "(messages edited)" in out
    assert received.calls[0]["messages"] == [SENT[0], {"role": "user",
                                                       "content": "How long is the refund window?"}]
    (detail,) = replays(store["url"])
    root = next(s for s in detail.spans if s.parent_id is None)
    assert root.attributes[REPLAY_EDITED] is True
    # the edit took the placeholder out: nothing masked is sent, and nothing says it is
    assert REPLAY_MASKED not in root.attributes
    assert "replayed masked" not in out and "email 1 in this call" in out


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


def test_a_call_recorded_without_content_is_refused(tmp_path: Path, litellm_call: Callable[..., tuple[str, str]], received: Received,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    url, trace_id = litellm_call("bare.db", capture_content=False)
    received.calls.clear()
    assert main(["replay", trace_id, "--db", url]) == 1
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


# ---- parameters, timeouts, ids ----------------------------------------------------------


def test_max_tokens_reaches_litellm(store: dict[str, str], received: Received,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", store["llm"], "--db", store["url"], "--max-tokens", "64",
                 "--mock-response", "ok"]) == 0
    (call,) = received.calls
    assert call["params"]["max_tokens"] == 64 and call["params"]["temperature"] == 0.2
    (detail,) = replays(store["url"])
    assert next(s for s in detail.spans if s.kind == "llm").attributes["max_tokens"] == 64
    assert "max_tokens 64" in capsys.readouterr().out


def test_none_drops_a_stored_parameter(store: dict[str, str], received: Received,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", store["llm"], "--db", store["url"], "--temperature", "none",
                 "--max-tokens", "None", "--mock-response", "ok", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    (call,) = received.calls
    assert "temperature" not in call["params"] and "max_tokens" not in call["params"]
    assert data["request"]["params"] == {}
    (detail,) = replays(store["url"])
    replay = next(s for s in detail.spans if s.kind == "llm")
    assert "temperature" not in (replay.attributes or {}) and "max_tokens" not in (replay.attributes or {})


def test_help_names_none_and_the_timeout_and_bad_values_are_refused(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["replay", "--help"])
    assert done.value.code == 0
    help_text = " ".join(capsys.readouterr().out.split())
    assert "'none' sends no temperature" in help_text and "'none' sends no limit" in help_text
    assert "--timeout SECONDS" in help_text and "(default: 60)" in help_text
    for args, message in ((["--temperature", "warm"], "not a number (or 'none'): 'warm'"),
                          (["--max-tokens", "0"], "must be at least 1: '0'"),
                          (["--timeout", "0"], "must be more than 0: '0'")):
        with pytest.raises(SystemExit) as done:
            main(["replay", "abc", *args])
        assert done.value.code == 2
        assert message in capsys.readouterr().err


@pytest.fixture
def silent_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An OpenAI-compatible base URL whose server takes connections (the
    kernel's backlog) and never answers, named by OPENAI_BASE_URL."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    base = f"http://127.0.0.1:{server.getsockname()[1]}/v1"
    monkeypatch.setenv("OPENAI_BASE_URL", base)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    try:
        yield base
    finally:
        server.close()


def test_the_call_is_given_up_after_the_timeout(store: dict[str, str], received: Received,
                                                silent_endpoint: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    result: dict[str, int] = {}

    def replay() -> None:
        result["code"] = main(["replay", store["llm"], "--db", store["url"], "--timeout", "0.5"])

    thread = threading.Thread(target=replay, daemon=True)
    started = time.monotonic()
    thread.start()
    thread.join(60)
    assert not thread.is_alive(), "the replay still waits for an endpoint that never answers"
    assert time.monotonic() - started < 30  # litellm retries twice: about 3 x 0.5 s
    assert result["code"] == 1
    err = capsys.readouterr().err
    assert "the replay failed" in err and "Timeout" in err
    (detail,) = replays(store["url"])
    replay_call = next(s for s in detail.spans if s.kind == "llm")
    assert replay_call.status == "error" and "Timeout" in (replay_call.error or "")


def test_a_call_whose_span_has_not_ended_is_said(tmp_path: Path, received: Received) -> None:
    url = f"sqlite:///{tmp_path / 'pending.db'}"
    span = Span("chat", "llm", span_id="a" * 32, trace_id="b" * 32)
    span.inputs, span.model = [{"role": "user", "content": "hi"}], "gpt-4o-mini"
    # A stream nobody reads: litellm sends its end event only once it is consumed.
    request = dataclasses.replace(request_from_span(span), params={"stream": True})
    obs = Observer(url, strict=True, entry_points=False, spill_path=tmp_path / "spill")
    try:
        outcome = run_replay(request, obs, mock_response="hello", end_wait_s=0.2)
        assert obs.flush(10)
    finally:
        obs.shutdown()
    assert outcome.error is None
    (warning,) = outcome.warnings
    assert "had not ended 0.2 s after the call returned, so it is not recorded" in warning
    assert f"root span in trace {outcome.trace_id} has no model call under it" in warning
    with Store(url) as store:
        detail = store.get_trace(outcome.trace_id)
    assert detail is not None
    root = next(s for s in detail.spans if s.parent_id is None)
    assert root.attributes[REPLAY_CALL_PENDING] is True


def test_an_ambiguous_id_is_refused(store: dict[str, str], received: Received,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    prefix = store["llm"][:6]  # UUIDv7: the spans of one run share their clock digits
    assert main(["replay", prefix, "--db", store["url"]]) == 1
    err = capsys.readouterr().err
    assert f"{prefix!r} matches several spans" in err and "give more of the id" in err
    assert received.calls == []


def test_a_trace_with_several_model_calls_is_refused(tmp_path: Path, received: Received,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'two.db'}"
    obs = Observer(url, strict=True, entry_points=False, spill_path=tmp_path / "spill")
    try:
        callback = LitellmCallback(obs)
        with obs.span("two calls"):
            for text in ("one", "two"):
                litellm.completion(model="gpt-4o-mini", messages=[{"role": "user", "content": text}],
                                   mock_response=text, callbacks=[callback])
            assert callback.wait_pending(10)
        assert callback.flush(10)
    finally:
        obs.shutdown()
    with Store(url) as store:
        (trace,) = store.list_traces().items
        detail = store.get_trace(trace.trace_id)
    assert detail is not None
    calls = [s for s in detail.spans if s.kind == "llm"]
    assert len(calls) == 2
    received.calls.clear()
    assert main(["replay", trace.trace_id, "--db", url]) == 1
    err = capsys.readouterr().err
    assert f"trace {trace.trace_id} has 2 model calls; name one by its span id" in err
    assert all(call.span_id[-8:] in err for call in calls)
    assert received.calls == []


def test_a_failed_azure_call_says_it_needs_a_deployment_name(tmp_path: Path, litellm_call: Callable[..., tuple[str, str]], received: Received,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("AZURE_API_KEY", "AZURE_OPENAI_API_KEY", "AZURE_API_BASE", "AZURE_OPENAI_ENDPOINT",
                 "AZURE_AD_TOKEN", "AZURE_OPENAI_AD_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    url, trace_id = litellm_call("azure.db", model="azure/gpt-4o")
    received.calls.clear()
    assert main(["replay", trace_id, "--db", url, "--timeout", "10"]) == 1
    err = capsys.readouterr().err
    assert "the replay failed" in err
    assert "an Azure model is named by its deployment (azure/DEPLOYMENT)" in err
    assert "if 'azure/gpt-4o' is not a deployment of yours, name one as the model" in err


def test_content_masked_only_in_the_output_is_not_said_to_be_sent(
        tmp_path: Path, received: Received, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CHAINSIGHT_CONFIG", raising=False)
    url = f"sqlite:///{tmp_path / 'out.db'}"
    ids = record_chat(url, tmp_path / "spill", question="What is the refund policy?",
                      answer="Write to bob@example.com")
    assert main(["replay", ids["llm"], "--db", url, "--mock-response", "ok", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["masked"] == {} and data["masked_in_call"] == {"email": 1}
    assert data["masked_notice"] == ("redaction had masked email 1 in this call (its messages or its "
                                     "output); no placeholder of the form [redacted:KIND] is in the "
                                     "messages sent")
    (detail,) = replays(url)
    root = next(s for s in detail.spans if s.parent_id is None)
    assert REPLAY_MASKED not in root.attributes
    assert main(["replay", ids["llm"], "--db", url, "--mock-response", "ok"]) == 0
    out = capsys.readouterr().out
    assert "in this call" in out and "replayed masked" not in out


# ---- the core: masked content, providers, parameters ----------------------------------------


def test_placeholders_are_counted_in_the_messages_sent() -> None:
    messages = [{"role": "user", "content": [{"type": "text", "text": "[redacted:email] and [redacted:email]"}]},
                {"role": "assistant", "content": "",
                 "tool_calls": [{"function": {"arguments": '{"card": "[redacted:card]"}'}}]}]
    assert masked_in(messages) == {"card": 1, "email": 2}
    assert masked_in([{"role": "user", "content": "<email hidden>, [redacted:ip]"}],
                     "<{kind} hidden>") == {"email": 1}
    assert masked_in([{"role": "user", "content": "*** and ***"}], "***") == {"masked": 2}
    assert masked_in([{"role": "user", "content": "every word"}], "{kind}") == {}

    span = Span("chat", "llm", span_id="s" * 32, trace_id="t" * 32)
    span.model, span.inputs = "gpt-4o", [{"role": "user", "content": "mail [redacted:email]"}]
    span.outputs = "call [redacted:phone]"
    span.attributes = {REDACTED: {"email": 1, "phone": 1}}
    request = request_from_span(span)
    assert request.masked == {"email": 1} and request.masked_in_call == {"email": 1, "phone": 1}
    notice = masked_notice(request.masked, request.masked_in_call, request.placeholder)
    assert notice.startswith("masked content replayed masked: the messages hold redaction "
                             "placeholders (email 1)")
    edited = with_messages(request, [{"role": "user", "content": "mail me"}])
    assert edited.masked == {} and edited.edited
    assert masked_notice({}, {}) == ""


def test_fireworks_and_together_take_litellm_s_provider_names() -> None:
    span = Span("chat", "llm", span_id="s" * 32, trace_id="t" * 32)
    span.model, span.provider = "accounts/fireworks/models/llama-v3p1-8b-instruct", "fireworks"
    assert default_model(span) == "fireworks_ai/accounts/fireworks/models/llama-v3p1-8b-instruct"
    span.model, span.provider = "meta-llama/Llama-3-8b-chat-hf", "together"
    assert default_model(span) == "together_ai/meta-llama/Llama-3-8b-chat-hf"
    span.model, span.provider = "together_ai/llama-3-8b", "together_ai"
    assert default_model(span) == "together_ai/llama-3-8b"  # already prefixed: as it is


def test_a_litellm_span_s_slashed_model_keeps_its_provider(tmp_path: Path, litellm_call: Callable[..., tuple[str, str]], received: Received) -> None:
    """litellm records ``openrouter/anthropic/claude-3-haiku`` as the model
    ``anthropic/claude-3-haiku`` of the provider ``openrouter``."""
    url, trace_id = litellm_call("router.db", model="openrouter/anthropic/claude-3-haiku")
    with Store(url) as store:
        detail = store.get_trace(trace_id)
    assert detail is not None
    (span,) = detail.spans
    assert (span.model, span.provider) == ("anthropic/claude-3-haiku", "openrouter")
    assert default_model(span) == "openrouter/anthropic/claude-3-haiku"


def test_only_the_replayed_parameters_can_be_dropped() -> None:
    span = Span("chat", "llm", span_id="s" * 32, trace_id="t" * 32)
    span.model, span.inputs = "gpt-4o", [{"role": "user", "content": "hi"}]
    span.attributes = {"temperature": 0.3, "max_tokens": 10}
    assert request_from_span(span, drop=["temperature"]).params == {"max_tokens": 10}
    with pytest.raises(ReplayError, match="cannot drop top_p: replay sends only temperature, max_tokens"):
        request_from_span(span, drop=["top_p"])
