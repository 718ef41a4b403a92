"""OTLP out: spans reach an OTLP/HTTP receiver in the GenAI conventions; a dead
endpoint never holds the exit past its deadline and loses nothing from the store."""

from __future__ import annotations

import time
from typing import Any

import pytest
from otlp_receiver import BlackHole, OtlpReceiver

from chainsight.framework.config import Settings
from chainsight.framework.model import Score, Span
from chainsight.framework.observer import Observer
from chainsight.plugins.otlp import OtlpExporter, span_id_of, trace_id_of
from chainsight.storage.query import Store

MS = 1_000_000


def attrs(span: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in span.attributes:
        v = kv.value
        kind = v.WhichOneof("value")
        out[kv.key] = list(x.string_value for x in v.array_value.values) if kind == "array_value" \
            else getattr(v, kind)
    return out


def record_agent_run(obs: Observer) -> dict[str, Span]:
    with obs.span("agent run", kind="agent", user_id="u7") as root:
        with obs.span("ChatOpenAI", kind="llm") as llm:
            llm.model, llm.provider = "gpt-4o-mini", "openai"
            llm.input_tokens, llm.output_tokens = 120, 30
            llm.inputs = {"messages": [{"role": "user", "content": "mail me at bob@example.com"}]}
            llm.outputs = {"text": "sure"}
            llm.first_token_ns = llm.start_ns + 40 * MS
            llm.attributes = {"finish_reasons": ["stop"]}
        with obs.span("search", kind="tool") as tool:
            tool.inputs = {"query": "weather"}
    return {"root": root, "llm": llm, "tool": tool}


def observer(url: str, otlp: dict[str, Any]) -> Observer:
    settings = Settings(plugins={"otlp": otlp}, pipeline={"shutdown_timeout_s": 3.0})
    return Observer(url, settings=settings, strict=True, entry_points=False)


def test_spans_reach_a_local_receiver_with_genai_attributes_parentage_and_times(sqlite_url: str) -> None:
    receiver = OtlpReceiver()
    obs = observer(sqlite_url, {"endpoint": receiver.endpoint, "service_name": "shop"})
    try:
        spans = record_agent_run(obs)
        obs.record_score(Score("relevance", "check", spans["llm"].trace_id, spans["llm"].span_id, 0.9,
                               passed=True, comment="on topic"))
        assert obs.flush(10.0)
    finally:
        obs.shutdown()
    receiver.close()
    got = {s.name: s for s in receiver.spans()}
    assert set(got) == {"agent run", "ChatOpenAI", "search"}
    assert receiver.content_types[0] == "application/x-protobuf"
    root, llm, tool = got["agent run"], got["ChatOpenAI"], got["search"]
    trace = trace_id_of(spans["root"].trace_id).to_bytes(16, "big")
    assert root.trace_id == llm.trace_id == tool.trace_id == trace
    assert root.parent_span_id == b""
    assert llm.parent_span_id == root.span_id == span_id_of(spans["root"].span_id).to_bytes(8, "big")
    assert tool.parent_span_id == root.span_id
    assert (llm.start_time_unix_nano, llm.end_time_unix_nano) == (spans["llm"].start_ns, spans["llm"].end_ns)
    a = attrs(llm)
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.provider.name"] == "openai"
    assert a["gen_ai.request.model"] == a["gen_ai.response.model"] == "gpt-4o-mini"
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (120, 30)
    assert a["gen_ai.response.finish_reasons"] == ["stop"]
    assert a["gen_ai.response.time_to_first_chunk"] == pytest.approx(0.04)
    assert a["chainsight.span_id"] == spans["llm"].span_id
    assert "gen_ai.input.messages" not in a and "gen_ai.output.messages" not in a  # content is opt-in
    assert attrs(tool)["gen_ai.tool.name"] == "search" and attrs(tool)["gen_ai.operation.name"] == "execute_tool"
    assert attrs(root)["gen_ai.agent.name"] == "agent run" and attrs(root)["user.id"] == "u7"
    events = [{kv.key: kv.value for kv in ev.attributes} for ev in llm.events]
    assert {ev.name for ev in llm.events} == {"gen_ai.evaluation.result"}
    assert {"relevance", "pii", "refusal"} <= {e["gen_ai.evaluation.name"].string_value for e in events}
    [e] = [e for e in events if e["gen_ai.evaluation.name"].string_value == "relevance"]
    assert e["gen_ai.evaluation.name"].string_value == "relevance"
    assert e["gen_ai.evaluation.score.value"].double_value == 0.9
    assert e["gen_ai.evaluation.explanation"].string_value == "on topic"
    resource = {kv.key: kv.value.string_value for kv in receiver.requests[0].resource_spans[0].resource.attributes}
    assert resource["service.name"] == "shop"


def test_content_is_sent_only_when_enabled_and_only_redacted(sqlite_url: str) -> None:
    receiver = OtlpReceiver()
    obs = observer(sqlite_url, {"endpoint": receiver.endpoint, "include_content": True})
    try:
        record_agent_run(obs)
        assert obs.flush(10.0)
    finally:
        obs.shutdown()
    receiver.close()
    llm = next(s for s in receiver.spans() if s.name == "ChatOpenAI")
    sent = attrs(llm)["gen_ai.input.messages"]
    assert "bob@example.com" not in sent and "mail me at" in sent  # redaction ran first


@pytest.mark.parametrize("dead", ["refused", "black hole"])
def test_a_dead_endpoint_bounds_exit_and_loses_nothing_from_the_store(sqlite_url: str, dead: str) -> None:
    hole = BlackHole()
    endpoint = hole.endpoint
    if dead == "refused":
        hole.close()  # nothing listens there any more
    obs = observer(sqlite_url, {"endpoint": endpoint, "timeout_s": 30})  # longer than the deadline
    try:
        for _ in range(20):
            record_agent_run(obs)
            time.sleep(0.01)  # several batches
        assert obs.flush(10.0)  # stored: the exporter does not hold the pipeline
        exporter = obs.plugins.pm.get_plugin("otlp")
        started = time.monotonic()
    finally:
        obs.shutdown(timeout=2.0)
    took = time.monotonic() - started
    hole.close()
    assert took < 3.0, f"exit took {took:.1f} s against a 2 s deadline"
    assert exporter.sent == 0
    with Store(sqlite_url) as store:
        assert store.count_traces() == 20


def test_the_queue_drops_whole_batches_and_counts_them_when_the_endpoint_is_behind() -> None:
    hole = BlackHole()
    exporter = OtlpExporter()
    exporter.start({"endpoint": hole.endpoint, "timeout_s": 5, "max_queued_batches": 1})
    try:
        for i in range(5):
            exporter.export([Span(f"s{i}", "chain", start_ns=time.time_ns())])
        assert exporter.dropped >= 3  # one in flight, one queued, the rest dropped
    finally:
        exporter.shutdown(0.1)
        hole.close()
    assert exporter.sent == 0 and exporter.dropped + exporter.failed >= 4
