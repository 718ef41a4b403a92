"""OTLP in: OpenTelemetry GenAI spans from any instrumentation become Chainsight
spans with model, tokens and cost, through the same plugins."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Status, StatusCode

from chainsight.framework.adapters.otel import ChainsightSpanProcessor
from chainsight.framework.config import Settings
from chainsight.framework.observer import Observer
from chainsight.plugins.serve import Serve
from chainsight.storage.query import Store
from chainsight.storage.writer import StoreWriter, WriteBatch


def post(url: str, body: bytes, content_type: str) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=5) as r:
            return r.status, bytes(r.read())
    except urllib.error.HTTPError as error:
        return error.code, bytes(error.read())


def genai_run(provider: TracerProvider) -> None:
    """What an OpenLLMetry-style instrumentation emits: a workflow and a chat call."""
    tracer = provider.get_tracer("openllmetry-like")
    with tracer.start_as_current_span("support workflow", attributes={"traceloop.span.kind": "workflow"}):
        with tracer.start_as_current_span("chat gpt-4o-mini", attributes={
            "gen_ai.operation.name": "chat",
            "gen_ai.system": "openai",  # the older name of gen_ai.provider.name
            "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.usage.input_tokens": 1000,
            "gen_ai.usage.output_tokens": 200,
            "gen_ai.response.time_to_first_chunk": 0.25,
            "gen_ai.prompt.0.role": "user",
            "gen_ai.prompt.0.content": "my card is 4111 1111 1111 1111",
            "gen_ai.completion.0.content": "noted",
        }):
            time.sleep(0.3)
        with tracer.start_as_current_span("lookup", attributes={"gen_ai.operation.name": "execute_tool"}) as tool:
            tool.set_status(Status(StatusCode.ERROR, "not found"))
            tool.set_attribute("error.type", "KeyError")


OPENINFERENCE_JSON = {"resourceSpans": [{
    "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "ts-app"}}]},
    "scopeSpans": [{"scope": {"name": "openinference"}, "spans": [{
        "traceId": "5b8efff798038103d269b633813fc60c",
        "spanId": "eee19b7ec3c1b174",
        "name": "ChatCompletion",
        "kind": 3,
        "startTimeUnixNano": "1795790000000000000",
        "endTimeUnixNano": "1795790001500000000",
        "status": {"code": 1},
        "attributes": [
            {"key": "openinference.span.kind", "value": {"stringValue": "LLM"}},
            {"key": "llm.model_name", "value": {"stringValue": "gpt-4o"}},
            {"key": "llm.provider", "value": {"stringValue": "openai"}},
            {"key": "llm.token_count.prompt", "value": {"intValue": "50"}},
            {"key": "llm.token_count.completion", "value": {"intValue": "10"}},
            {"key": "input.value", "value": {"stringValue": "{\"q\": \"hi\"}"}},
            {"key": "output.value", "value": {"stringValue": "hello"}},
        ],
    }]}],
}]}


def test_genai_and_openinference_spans_posted_to_serve_land_in_the_store(sqlite_url: str) -> None:
    StoreWriter(sqlite_url).write(WriteBatch())  # an empty store
    Store(sqlite_url).close()
    serve = Serve(sqlite_url, {}, settings=Settings())
    _, port = serve.start(port=0)
    endpoint = f"http://127.0.0.1:{port}/v1/traces"
    try:
        provider = TracerProvider(resource=Resource.create({"service.name": "support-bot"}))
        provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=endpoint, timeout=5)))
        genai_run(provider)
        provider.shutdown()  # protobuf, through the SDK's own exporter
        status, body = post(endpoint, json.dumps(OPENINFERENCE_JSON).encode(), "application/json")
        assert (status, body) == (200, b"{}")
        assert serve.received == 4
        assert serve.ingest_observer().flush(10.0)
    finally:
        serve.stop()
    with Store(sqlite_url) as store:
        chat = _span(store, "chat gpt-4o-mini")
        root = _span(store, "support workflow")
        tool = _span(store, "lookup")
        oi = _span(store, "ChatCompletion")
    assert (root.kind, chat.kind, tool.kind, oi.kind) == ("chain", "llm", "tool", "llm")
    assert chat.parent_id == root.span_id and chat.trace_id == root.trace_id
    assert (chat.model, chat.provider, chat.input_tokens, chat.output_tokens) == ("gpt-4o-mini", "openai", 1000, 200)
    assert chat.cost_usd is not None and chat.cost_usd > 0  # priced by the pricing plugin
    assert chat.first_token_ns == chat.start_ns + 250_000_000
    assert "4111" not in json.dumps(chat.inputs) and chat.inputs[0]["role"] == "user"  # redacted
    assert chat.attributes["service.name"] == "support-bot"
    assert (tool.status, tool.error_type, tool.error) == ("error", "KeyError", "not found")
    assert (oi.model, oi.input_tokens, oi.output_tokens) == ("gpt-4o", 50, 10)
    assert oi.span_id == "eee19b7ec3c1b174" and oi.trace_id == "5b8efff798038103d269b633813fc60c"
    assert oi.cost_usd is not None and oi.cost_usd > 0
    assert oi.inputs == {"q": "hi"} and oi.outputs == "hello"
    assert oi.end_ns - oi.start_ns == 1_500_000_000


def _span(store: Store, name: str) -> Any:
    import sqlalchemy as sa

    from chainsight.storage import schema
    from chainsight.storage.follow import span_from_row

    s = schema.spans
    with store.engine.connect() as conn:
        row = conn.execute(sa.select(s).where(s.c.name == name)).one()
    return span_from_row(row)


@pytest.mark.parametrize(("body", "content_type", "status", "says"), [
    (b"not protobuf \xff\xff", "application/x-protobuf", 400, b"not an OTLP protobuf"),
    (b"{not json", "application/json", 400, b"not an OTLP JSON"),
    (b"{}", "text/plain", 415, b"is not OTLP"),
])
def test_bad_requests_are_refused_with_the_reason(sqlite_url: str, body: bytes, content_type: str,
                                                  status: int, says: bytes) -> None:
    StoreWriter(sqlite_url).write(WriteBatch())
    serve = Serve(sqlite_url, {})
    _, port = serve.start(port=0)
    try:
        got, text = post(f"http://127.0.0.1:{port}/v1/traces", body, content_type)
    finally:
        serve.stop()
    assert got == status and says in text


def test_the_span_processor_records_a_users_own_tracer_provider(sqlite_url: str) -> None:
    obs = Observer(sqlite_url, settings=Settings(), strict=True, entry_points=False)
    provider = TracerProvider()
    provider.add_span_processor(ChainsightSpanProcessor(obs))
    try:
        genai_run(provider)
        assert provider.force_flush()
    finally:
        obs.shutdown()
    with Store(sqlite_url) as store:
        chat = _span(store, "chat gpt-4o-mini")
        root = _span(store, "support workflow")
    assert chat.parent_id == root.span_id and chat.input_tokens == 1000 and chat.cost_usd


def test_a_chunked_body_is_refused_not_read_as_empty(sqlite_url: str) -> None:
    import http.client

    StoreWriter(sqlite_url).write(WriteBatch())
    serve = Serve(sqlite_url, {})
    _, port = serve.start(port=0)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("POST", "/v1/traces", body=iter([b"{}"]), encode_chunked=True,
                     headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"})
        response = conn.getresponse()
        assert response.status == 411 and b"Content-Length" in response.read()
        conn.close()
    finally:
        serve.stop()
    assert serve.received == 0
