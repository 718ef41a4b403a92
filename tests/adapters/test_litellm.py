"""The litellm adapter against real litellm calls (``mock_response``, offline)."""

from __future__ import annotations

import os

# Offline litellm (FIELD_NOTES): set before litellm is imported anywhere.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("LITELLM_OFFLINE_MODE", "true")
os.environ.setdefault("LITELLM_MODE", "PRODUCTION")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("LANGSMITH_TRACING", "false")

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

litellm = pytest.importorskip("litellm")

from litellm.integrations.custom_logger import CustomLogger  # noqa: E402

from chainsight.framework.adapters.litellm import LitellmCallback  # noqa: E402
from chainsight.framework.config import Settings  # noqa: E402
from chainsight.framework.observer import Observer  # noqa: E402

MESSAGES = [{"role": "user", "content": "Say hello"}]
# gpt-4o in litellm's bundled map: $2.50 / 1M input, $10 / 1M output.
GPT4O_IN, GPT4O_OUT = 2.5e-6, 10e-6

_CALLBACK_LISTS = (
    "callbacks",
    "success_callback",
    "failure_callback",
    "input_callback",
    "service_callback",
    "_async_success_callback",
    "_async_failure_callback",
    "_async_input_callback",
)


@pytest.fixture(autouse=True)
def litellm_globals() -> Iterator[None]:
    """Save and restore litellm's global callback lists around each test."""
    saved = {name: list(getattr(litellm, name)) for name in _CALLBACK_LISTS if hasattr(litellm, name)}
    suppress = litellm.suppress_debug_info
    litellm.suppress_debug_info = True
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(litellm, name, value)
        litellm.suppress_debug_info = suppress


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'runs.db'}"


@pytest.fixture
def observer(db_url: str, tmp_path: Path) -> Iterator[Observer]:
    obs = Observer(
        db_url, settings=Settings(), strict=True, entry_points=False,
        builtins=[("pricing", "chainsight.plugins.pricing")], spill_path=tmp_path / "spill.jsonl",
    )
    try:
        yield obs
    finally:
        obs.shutdown()


@pytest.fixture
def callback(observer: Observer) -> LitellmCallback:
    cb = LitellmCallback(observer)
    litellm.callbacks = [cb]
    return cb


def spans(db_url: str) -> list[dict[str, Any]]:
    from chainsight.storage.engine import open_engine

    engine = open_engine(db_url)  # migrated, so an empty store has the tables
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT * FROM spans ORDER BY start_ns, span_id"))
        return [dict(r._mapping) for r in rows]


def llm_spans(db_url: str) -> list[dict[str, Any]]:
    return [s for s in spans(db_url) if s["kind"] == "llm"]


def attributes(span: dict[str, Any]) -> dict[str, Any]:
    value = span["attributes"]
    return json.loads(value) if isinstance(value, str) else (value or {})


# ---- sync ------------------------------------------------------------------


def test_completion_is_one_priced_span(callback: LitellmCallback, db_url: str) -> None:
    before = time.time_ns()
    litellm.completion(model="gpt-4o", messages=MESSAGES, mock_response="Hello there")
    after = time.time_ns()
    assert callback.flush(10)

    [span] = llm_spans(db_url)
    assert span["name"] == "litellm.completion"
    assert span["parent_id"] is None
    assert span["status"] == "ok"
    assert span["model"] == "gpt-4o"
    assert span["provider"] == "openai"
    # litellm's non-stream mock usage is a fixed 10 prompt / 20 completion tokens
    assert (span["input_tokens"], span["output_tokens"]) == (10, 20)
    assert span["cost_usd"] == pytest.approx(10 * GPT4O_IN + 20 * GPT4O_OUT, rel=1e-9)
    attrs = attributes(span)
    assert attrs["litellm.response_cost"] == pytest.approx(span["cost_usd"], rel=1e-9)
    assert attrs["finish_reason"] == "stop"
    assert before <= span["start_ns"] <= span["end_ns"] <= after
    assert span["first_token_ns"] is None  # not streamed: no fake TTFT
    assert "Say hello" in span["inputs"]
    assert "Hello there" in span["outputs"]
    assert callback.duplicates_dropped == 0


def test_streaming_completion_has_ttft_and_real_tokens(callback: LitellmCallback, db_url: str) -> None:
    chunks = list(litellm.completion(
        model="gpt-4o", messages=MESSAGES, mock_response="Hello there my good friend", stream=True
    ))
    assert len(chunks) > 1
    assert callback.flush(10)

    [span] = llm_spans(db_url)
    assert span["status"] == "ok"
    assert span["output_tokens"] and span["output_tokens"] > 1
    assert span["input_tokens"] and span["input_tokens"] > 0
    assert span["first_token_ns"] is not None
    assert span["start_ns"] <= span["first_token_ns"] <= span["end_ns"]
    # every chunk with output the caller received (not the final, empty finish chunk)
    with_text = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(with_text) > 1
    assert span["chunk_count"] == len(with_text)
    expected = span["input_tokens"] * GPT4O_IN + span["output_tokens"] * GPT4O_OUT
    assert span["cost_usd"] == pytest.approx(expected, rel=1e-9)
    assert "Hello there my good friend" in span["outputs"]

    # TPOT as the trace summary derives it
    engine = sa.create_engine(db_url)
    with engine.connect() as conn:
        ttft_ms, tpot_ms = conn.execute(sa.text("SELECT ttft_ms, tpot_ms FROM traces")).one()
    engine.dispose()
    assert ttft_ms == pytest.approx((span["first_token_ns"] - span["start_ns"]) / 1e6)
    assert tpot_ms == pytest.approx(
        (span["end_ns"] - span["first_token_ns"]) / 1e6 / (span["output_tokens"] - 1)
    )


def test_failed_completion_records_the_litellm_exception_type(
    callback: LitellmCallback, db_url: str
) -> None:
    with pytest.raises(litellm.exceptions.InternalServerError):
        litellm.completion(model="gpt-4o", messages=MESSAGES, mock_response=Exception("boom"))
    error = litellm.RateLimitError(message="slow down", llm_provider="openai", model="gpt-4o")
    with pytest.raises(litellm.RateLimitError):
        litellm.completion(model="gpt-4o", messages=MESSAGES, mock_response=error)
    assert callback.flush(10)

    first, second = llm_spans(db_url)
    assert (first["status"], first["error_type"]) == ("error", "InternalServerError")
    assert "boom" in first["error"]
    assert (second["status"], second["error_type"]) == ("error", "RateLimitError")
    assert "slow down" in second["error"]
    for span in (first, second):
        assert span["end_ns"] >= span["start_ns"]
        assert span["cost_usd"] is None


def test_a_call_that_failed_before_it_ran_has_no_tokens_and_no_cost(
    db_url: str, tmp_path: Path
) -> None:
    """With the default token estimate on, a failed call is not charged an estimate of its prompt."""
    obs = Observer(db_url, settings=Settings(), strict=True, entry_points=False,
                   builtins=[("token_estimate", "chainsight.plugins.token_estimate"),
                             ("pricing", "chainsight.plugins.pricing")],
                   spill_path=tmp_path / "spill.jsonl")
    try:
        cb = LitellmCallback(obs)
        litellm.callbacks = [cb]
        with pytest.raises(litellm.exceptions.InternalServerError):
            litellm.completion(model="gpt-4o", messages=MESSAGES, mock_response=Exception("boom"))
        litellm.completion(model="gpt-4o", messages=MESSAGES, mock_response="fine")
        assert cb.flush(10)
    finally:
        obs.shutdown()
    failed, ok = sorted(llm_spans(db_url), key=lambda r: r["status"] != "error")
    assert failed["status"] == "error"
    assert (failed["input_tokens"], failed["output_tokens"], failed["cost_usd"]) == (None, None, None)
    assert not failed["tokens_estimated"]
    assert ok["cost_usd"] == pytest.approx(10 * GPT4O_IN + 20 * GPT4O_OUT, rel=1e-9)


def test_call_inside_manual_span_nests_there(
    callback: LitellmCallback, observer: Observer, db_url: str
) -> None:
    with observer.span("pipeline", user_id="u1", session_id="s1") as outer:
        litellm.completion(model="gpt-4o", messages=MESSAGES, mock_response="x")
    assert callback.flush(10)

    [span] = llm_spans(db_url)
    assert span["parent_id"] == outer.span_id
    assert span["trace_id"] == outer.trace_id
    assert span["user_id"] == "u1"
    assert span["session_id"] == "s1"


def test_prefixed_model_is_priced_through_normalisation(callback: LitellmCallback, db_url: str) -> None:
    litellm.completion(model="openrouter/openai/gpt-4o", messages=MESSAGES, mock_response="x")
    assert callback.flush(10)
    [span] = llm_spans(db_url)
    assert span["provider"] == "openrouter"
    assert span["cost_usd"] == pytest.approx(10 * GPT4O_IN + 20 * GPT4O_OUT, rel=1e-9)


def test_unknown_model_is_unpriced_not_zero(callback: LitellmCallback, db_url: str) -> None:
    litellm.completion(model="openai/my-own-model-xyz", messages=MESSAGES, mock_response="x")
    assert callback.flush(10)
    [span] = llm_spans(db_url)
    assert span["input_tokens"] == 10
    assert span["cost_usd"] is None


# ---- duplicates --------------------------------------------------------------


def test_duplicate_end_events_make_one_span(callback: LitellmCallback, db_url: str) -> None:
    captured: list[dict[str, Any]] = []

    class Capture(CustomLogger):
        def log_success_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
            captured.append(kwargs)

    capture = Capture()
    litellm.callbacks = [callback, capture]
    litellm.completion(model="gpt-4o", messages=MESSAGES, mock_response="x")
    assert callback.flush(10)
    deadline = time.monotonic() + 5
    while not captured and time.monotonic() < deadline:
        time.sleep(0.01)
    [kwargs] = captured

    # litellm may deliver the same call again as sync, async and stream events
    callback.log_success_event(kwargs, None, None, None)
    asyncio.run(callback.async_log_success_event(kwargs, None, None, None))
    callback.log_failure_event(kwargs, None, None, None)
    assert callback.flush(10)

    assert len(llm_spans(db_url)) == 1
    assert callback.duplicates_dropped == 3
    assert callback.spans_recorded == 1


def test_events_without_the_payload_are_ignored(callback: LitellmCallback, db_url: str) -> None:
    callback.log_success_event({"litellm_call_id": "x"}, None, None, None)
    callback.log_stream_event({"litellm_call_id": "x"}, None, None, None)
    assert callback.flush(5)
    assert llm_spans(db_url) == []
    assert callback.internal_errors == 0


# ---- async -------------------------------------------------------------------


def test_twenty_concurrent_acompletions_make_twenty_spans(
    callback: LitellmCallback, db_url: str
) -> None:
    async def main() -> None:
        results = await asyncio.gather(*[
            litellm.acompletion(model="gpt-4o", messages=MESSAGES, mock_response=f"answer {i}")
            for i in range(20)
        ])
        assert len(results) == 20
        # the loop ends right after: aflush must keep every event
        assert await callback.aflush(10)

    asyncio.run(main())
    rows = llm_spans(db_url)
    assert len(rows) == 20
    assert len({r["span_id"] for r in rows}) == 20
    assert len({attributes(r)["litellm.call_id"] for r in rows}) == 20
    assert {r["name"] for r in rows} == {"litellm.acompletion"}
    for r in rows:
        assert r["status"] == "ok"
        assert r["parent_id"] is None
        assert (r["input_tokens"], r["output_tokens"]) == (10, 20)
        assert r["cost_usd"] == pytest.approx(10 * GPT4O_IN + 20 * GPT4O_OUT, rel=1e-9)
        assert r["end_ns"] >= r["start_ns"]
    assert {json.loads(r["outputs"])["content"] for r in rows} == {f"answer {i}" for i in range(20)}


def test_async_stream_and_failure(callback: LitellmCallback, db_url: str) -> None:
    async def main() -> None:
        stream = await litellm.acompletion(
            model="gpt-4o", messages=MESSAGES, mock_response="Hi async stream here", stream=True
        )
        async for _ in stream:
            pass
        with pytest.raises(litellm.exceptions.InternalServerError):
            await litellm.acompletion(model="gpt-4o", messages=MESSAGES, mock_response=Exception("nope"))
        assert await callback.aflush(10)

    asyncio.run(main())
    ok, failed = sorted(llm_spans(db_url), key=lambda r: r["status"] == "error")
    assert ok["status"] == "ok" and ok["first_token_ns"] is not None
    assert ok["start_ns"] <= ok["first_token_ns"] <= ok["end_ns"]
    assert ok["output_tokens"] > 1 and ok["cost_usd"] > 0
    assert failed["status"] == "error" and failed["error_type"] == "InternalServerError"


def test_async_call_inside_manual_span_nests(
    callback: LitellmCallback, observer: Observer, db_url: str
) -> None:
    async def main() -> str:
        with observer.span("agent") as outer:
            await asyncio.gather(*[
                litellm.acompletion(model="gpt-4o", messages=MESSAGES, mock_response="x")
                for _ in range(3)
            ])
        assert await callback.aflush(10)
        return outer.span_id

    outer_id = asyncio.run(main())
    rows = llm_spans(db_url)
    assert len(rows) == 3
    assert {r["parent_id"] for r in rows} == {outer_id}


# ---- LangChain -----------------------------------------------------------------


def test_call_inside_langchain_runnable_nests_under_it(
    callback: LitellmCallback, observer: Observer, db_url: str
) -> None:
    pytest.importorskip("langchain_core")
    from langchain_core.runnables import RunnableLambda

    from chainsight.framework.adapters.langchain import CallbackHandler

    def ask(question: str) -> str:
        response = litellm.completion(
            model="gpt-4o", messages=[{"role": "user", "content": question}], mock_response="42"
        )
        return str(response.choices[0].message.content)

    def shout(text: str) -> str:
        return text.upper()

    chain = RunnableLambda(ask, name="ask") | RunnableLambda(shout, name="shout")
    handler = CallbackHandler(observer)
    assert chain.invoke("meaning?", config={"callbacks": [handler]}) == "42"
    assert callback.flush(10)

    rows = spans(db_url)
    by_name = {r["name"]: r for r in rows}
    llm = by_name["litellm.completion"]
    assert llm["parent_id"] == by_name["ask"]["span_id"]
    assert llm["trace_id"] == by_name["ask"]["trace_id"]
    assert len({r["trace_id"] for r in rows}) == 1


def test_async_call_inside_langchain_runnable_nests_under_it(
    callback: LitellmCallback, observer: Observer, db_url: str
) -> None:
    pytest.importorskip("langchain_core")
    from langchain_core.runnables import RunnableLambda

    from chainsight.framework.adapters.langchain import CallbackHandler

    async def ask(question: str) -> str:
        response = await litellm.acompletion(
            model="gpt-4o", messages=[{"role": "user", "content": question}], mock_response="7"
        )
        return str(response.choices[0].message.content)

    handler = CallbackHandler(observer)

    async def main() -> str:
        out = await RunnableLambda(ask, name="ask_async").ainvoke("q", config={"callbacks": [handler]})
        assert await callback.aflush(10)
        return str(out)

    assert asyncio.run(main()) == "7"
    by_name = {r["name"]: r for r in spans(db_url)}
    assert by_name["litellm.acompletion"]["parent_id"] == by_name["ask_async"]["span_id"]


def test_manual_span_inside_runnable_is_the_innermost_parent(
    callback: LitellmCallback, observer: Observer, db_url: str
) -> None:
    pytest.importorskip("langchain_core")
    from langchain_core.runnables import RunnableLambda

    from chainsight.framework.adapters.langchain import CallbackHandler

    def step(x: str) -> str:
        with observer.span("inner-step"):
            litellm.completion(model="gpt-4o", messages=MESSAGES, mock_response="x")
        return x

    RunnableLambda(step, name="outer").invoke("q", config={"callbacks": [CallbackHandler(observer)]})
    assert callback.flush(10)
    by_name = {r["name"]: r for r in spans(db_url)}
    assert by_name["litellm.completion"]["parent_id"] == by_name["inner-step"]["span_id"]


def test_langchain_lookup_without_handler_is_a_root_span(callback: LitellmCallback, db_url: str) -> None:
    pytest.importorskip("langchain_core")
    from langchain_core.runnables import RunnableLambda

    RunnableLambda(
        lambda x: litellm.completion(model="gpt-4o", messages=MESSAGES, mock_response="x")
    ).invoke("q")
    assert callback.flush(10)
    [span] = llm_spans(db_url)
    assert span["parent_id"] is None


# ---- cost of the callback ------------------------------------------------------


def test_callback_is_cheap_on_the_callers_path(callback: LitellmCallback, observer: Observer) -> None:
    captured: list[dict[str, Any]] = []

    class Capture(CustomLogger):
        def log_success_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
            captured.append(kwargs)

    litellm.callbacks = [Capture()]
    litellm.completion(model="gpt-4o", messages=MESSAGES, mock_response="Hello there")
    deadline = time.monotonic() + 5
    while not captured and time.monotonic() < deadline:
        time.sleep(0.01)
    kwargs = captured[0]

    n = 2000
    events = [dict(kwargs, litellm_call_id=str(uuid.uuid4())) for _ in range(n)]
    started = time.perf_counter()
    for event in events:
        callback.log_pre_api_call("gpt-4o", MESSAGES, event)
        callback.log_success_event(event, None, None, None)
    per_call = (time.perf_counter() - started) / n
    assert callback.spans_recorded == n
    assert callback.internal_errors == 0
    # generous bound for slow CI; measured ~10-20 µs here
    assert per_call < 500e-6, f"{per_call * 1e6:.0f} µs per call"
