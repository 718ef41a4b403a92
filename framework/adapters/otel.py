"""OpenTelemetry spans in: GenAI instrumentation from any library becomes Chainsight spans.

Two doors, one mapping (:func:`span_from_otel`):

* ``chainsight serve`` accepts OTLP/HTTP at ``/v1/traces`` (any language);
* :class:`ChainsightSpanProcessor`, added to the user's own ``TracerProvider``
  in this process::

      from opentelemetry.sdk.trace import TracerProvider
      from chainsight.framework.adapters.otel import ChainsightSpanProcessor

      provider = TracerProvider()
      provider.add_span_processor(ChainsightSpanProcessor())   # get_observer()

Attributes read (the first one present wins):

* model: ``gen_ai.request.model``, ``gen_ai.response.model``,
  ``llm.model_name`` (OpenInference);
* provider: ``gen_ai.provider.name``, ``gen_ai.system`` (its older name),
  ``llm.provider``, ``llm.system``;
* tokens: ``gen_ai.usage.input_tokens`` / ``output_tokens`` (or the older
  ``prompt_tokens`` / ``completion_tokens``), ``llm.token_count.prompt`` /
  ``completion``; cached: ``gen_ai.usage.cache_read.input_tokens``,
  ``llm.token_count.prompt_details.cache_read``;
* kind: ``gen_ai.operation.name``, ``openinference.span.kind``,
  ``traceloop.span.kind``; a span with a model and no kind is an ``llm`` span;
* content: ``gen_ai.input.messages`` / ``gen_ai.output.messages``,
  OpenInference's ``input.value`` / ``output.value``, OpenLLMetry's
  ``gen_ai.prompt.N.*`` / ``gen_ai.completion.N.*``;
* time to first token: ``gen_ai.response.time_to_first_chunk`` (seconds).

Everything else stays in ``attributes``. Cost is left to the pipeline's
pricing plugin, like any other span: the spans go through the same plugins
(redaction first). Ids are kept (hex).

This module imports the OpenTelemetry SDK (``pip install 'chainsight[otlp]'``);
``import chainsight`` does not import it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final

from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.trace import StatusCode

from chainsight.framework.model import Span

if TYPE_CHECKING:
    from chainsight.framework.observer import Observer

OPERATION_KINDS: Final = {
    "chat": "llm", "text_completion": "llm", "generate_content": "llm", "completion": "llm",
    "embeddings": "embedding", "execute_tool": "tool", "invoke_agent": "agent",
    "create_agent": "agent", "retrieval": "retriever",
}
OPENINFERENCE_KINDS: Final = {
    "LLM": "llm", "CHAIN": "chain", "TOOL": "tool", "RETRIEVER": "retriever",
    "EMBEDDING": "embedding", "AGENT": "agent", "RERANKER": "other", "GUARDRAIL": "other",
    "EVALUATOR": "other",
}
TRACELOOP_KINDS: Final = {"workflow": "chain", "task": "chain", "agent": "agent", "tool": "tool"}
MODEL_KEYS: Final = ("gen_ai.request.model", "gen_ai.response.model", "llm.model_name")
PROVIDER_KEYS: Final = ("gen_ai.provider.name", "gen_ai.system", "llm.provider", "llm.system")
INPUT_TOKEN_KEYS: Final = ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens", "llm.token_count.prompt")
OUTPUT_TOKEN_KEYS: Final = ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens",
                            "llm.token_count.completion")
CACHED_TOKEN_KEYS: Final = ("gen_ai.usage.cache_read.input_tokens", "gen_ai.usage.cache_read_input_tokens",
                            "llm.token_count.prompt_details.cache_read")
REASONING_TOKEN_KEYS: Final = ("gen_ai.usage.reasoning_tokens",
                               "llm.token_count.completion_details.reasoning")
_INDEXED = re.compile(r"^gen_ai\.(prompt|completion)\.(\d+)\.(.+)$")
_CONTENT_KEYS: Final = ("gen_ai.input.messages", "gen_ai.output.messages", "input.value", "output.value")


def _first(attributes: Mapping[str, Any], keys: Iterable[str]) -> Any:
    for key in keys:
        value = attributes.get(key)
        if value is not None and value != "":
            return value
    return None


def _int(value: Any) -> int | None:
    try:
        return None if value is None or isinstance(value, bool) else int(value)
    except (TypeError, ValueError):
        return None


def _maybe_json(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _kind(attributes: Mapping[str, Any], model: Any) -> str:
    operation = attributes.get("gen_ai.operation.name")
    if operation in OPERATION_KINDS:
        return OPERATION_KINDS[operation]
    oi = attributes.get("openinference.span.kind")
    if isinstance(oi, str) and oi.upper() in OPENINFERENCE_KINDS:
        return OPENINFERENCE_KINDS[oi.upper()]
    tl = attributes.get("traceloop.span.kind")
    if tl in TRACELOOP_KINDS:
        return TRACELOOP_KINDS[tl]
    return "llm" if model else "other"


def _indexed_messages(attributes: Mapping[str, Any], which: str) -> list[dict[str, Any]] | None:
    """OpenLLMetry's ``gen_ai.prompt.0.role`` / ``.content`` as a list of messages."""
    messages: dict[int, dict[str, Any]] = {}
    for key, value in attributes.items():
        match = _INDEXED.match(key)
        if match and match.group(1) == which:
            messages.setdefault(int(match.group(2)), {})[match.group(3)] = value
    return [messages[i] for i in sorted(messages)] or None


def span_from_otel(
    name: str,
    *,
    trace_id: str,
    span_id: str,
    parent_id: str | None,
    start_ns: int,
    end_ns: int | None,
    status: str,
    status_message: str | None = None,
    attributes: Mapping[str, Any] | None = None,
    exception_type: str | None = None,
) -> Span:
    """A Chainsight span for one OpenTelemetry span (``status``: ``ok``,
    ``error`` or ``unset``; ids in hex). Its ``end_ns`` is left None: the
    caller ends it with ``observer.end_span(span, end_ns=...)``."""
    attrs = dict(attributes or {})
    model = _first(attrs, MODEL_KEYS)
    span = Span(str(name) or "(unnamed)", _kind(attrs, model), span_id=span_id, trace_id=trace_id,
                parent_id=parent_id or None, start_ns=int(start_ns))
    if model is not None:
        span.model = str(model)
    provider = _first(attrs, PROVIDER_KEYS)
    if provider is not None:
        span.provider = str(provider).lower()
    span.input_tokens = _int(_first(attrs, INPUT_TOKEN_KEYS))
    span.output_tokens = _int(_first(attrs, OUTPUT_TOKEN_KEYS))
    span.cached_tokens = _int(_first(attrs, CACHED_TOKEN_KEYS))
    span.reasoning_tokens = _int(_first(attrs, REASONING_TOKEN_KEYS))
    ttft = attrs.get("gen_ai.response.time_to_first_chunk")
    if isinstance(ttft, int | float) and not isinstance(ttft, bool) and ttft >= 0:
        span.first_token_ns = int(start_ns) + round(ttft * 1e9)
    inputs = _first(attrs, ("gen_ai.input.messages", "input.value"))
    span.inputs = _maybe_json(inputs) if inputs is not None else _indexed_messages(attrs, "prompt")
    outputs = _first(attrs, ("gen_ai.output.messages", "output.value"))
    span.outputs = _maybe_json(outputs) if outputs is not None else _indexed_messages(attrs, "completion")
    user = _first(attrs, ("user.id", "enduser.id"))
    if user is not None:
        span.user_id = str(user)
    session = _first(attrs, ("session.id", "gen_ai.conversation.id"))
    if session is not None:
        span.session_id = str(session)
    rest = {k: v for k, v in attrs.items() if k not in _CONTENT_KEYS and not _INDEXED.match(k)}
    span.attributes = rest or None
    if status == "error":
        span.status = "error"
        span.error_type = str(attrs.get("error.type") or exception_type or "Error")
        span.error = status_message or span.error_type
    else:
        span.status = "ok"  # OpenTelemetry's unset means "no error was recorded"
    return span


def _hex(value: int, digits: int) -> str:
    return format(value, f"0{digits}x")


class ChainsightSpanProcessor(SpanProcessor):
    """An OpenTelemetry ``SpanProcessor`` that records every ended span in
    Chainsight (``observer``: the process observer when None). ``on_end`` runs
    on the thread that ended the span: it converts and enqueues, no I/O."""

    def __init__(self, observer: Observer | None = None) -> None:
        self._observer = observer

    @property
    def observer(self) -> Observer:
        if self._observer is None:
            from chainsight.framework.observer import get_observer

            self._observer = get_observer()
        return self._observer

    def on_end(self, span: ReadableSpan) -> None:
        record_sdk_span(self.observer, span)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.observer.flush(timeout_millis / 1000)


def record_sdk_span(observer: Observer, span: ReadableSpan) -> None:
    """Record an ended OpenTelemetry SDK span."""
    context = span.get_span_context()
    if context is None:  # pragma: no cover - an SDK span always has one
        return
    parent = span.parent
    attributes = dict(span.attributes or {})
    if span.resource is not None:
        service = span.resource.attributes.get("service.name")
        if service is not None:
            attributes.setdefault("service.name", service)
    code = span.status.status_code
    exception_type = next((str(e.attributes.get("exception.type")) for e in span.events
                           if e.name == "exception" and e.attributes
                           and e.attributes.get("exception.type")), None)
    converted = span_from_otel(
        span.name, trace_id=_hex(context.trace_id, 32), span_id=_hex(context.span_id, 16),
        parent_id=_hex(parent.span_id, 16) if parent is not None else None,
        start_ns=span.start_time or 0, end_ns=span.end_time,
        status="error" if code == StatusCode.ERROR else "ok" if code == StatusCode.OK else "unset",
        status_message=span.status.description, attributes=attributes, exception_type=exception_type,
    )
    observer.end_span(converted, end_ns=span.end_time)
