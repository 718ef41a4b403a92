"""Built-in plugin ``otlp``: send spans to an OpenTelemetry backend (OTLP/HTTP, protobuf).

Opt-in: nothing is sent until ``[plugins.otlp] endpoint`` is set (e.g.
``http://localhost:4318/v1/traces``; Jaeger, Tempo, an OpenTelemetry
Collector...). Spans keep their trace id, their parentage (span ids are
mapped to OpenTelemetry's 64 bits; the full Chainsight id is the attribute
``chainsight.span_id``) and their timestamps, and are described in the
OpenTelemetry GenAI semantic conventions (``gen_ai.operation.name``,
``gen_ai.provider.name``, ``gen_ai.request.model``, ``gen_ai.usage.*``...).
Scores (checks, judges, feedback given before the span was sent) become
``gen_ai.evaluation.result`` events on the span they judge. Content (inputs
and outputs) is sent only with ``include_content = true``, and always as
stored, that is after redaction.

The pipeline worker only converts a batch and queues it (``spans_finished``
must not block); a thread of the plugin's own sends it with
``timeout_s``. When the queue is full (the backend is slow or down) a batch
is dropped, counted and logged: the spans are still in the store. At exit,
``shutdown`` sends what it can within the seconds left and counts the rest,
so a dead endpoint never holds the exit past its deadline.
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from chainsight.framework import hookimpl
from chainsight.framework.model import Score, Span

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan

log = logging.getLogger("chainsight.otlp")

CONFIG_SCHEMA: Final[dict[str, Any]] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "endpoint": {"type": ["string", "null"], "default": None,
                     "description": "OTLP/HTTP traces URL (http://HOST:4318/v1/traces); off when absent."},
        "headers": {"type": "object", "default": {},
                    "additionalProperties": {"type": ["string", "object"]},
                    "description": "HTTP headers (an API key: { env = \"NAME\" })."},
        "timeout_s": {"type": "number", "exclusiveMinimum": 0, "maximum": 60, "default": 2.0,
                      "description": "Per request, retries included."},
        "include_content": {"type": "boolean", "default": False,
                            "description": "Send inputs and outputs (as stored: redacted)."},
        "service_name": {"type": "string", "minLength": 1, "default": "chainsight"},
        "max_queued_batches": {"type": "integer", "minimum": 1, "default": 64},
    },
}

SCOPE: Final = "chainsight"
# Chainsight span kinds -> gen_ai.operation.name; other kinds carry none.
OPERATIONS: Final = {"llm": "chat", "embedding": "embeddings", "tool": "execute_tool",
                     "agent": "invoke_agent", "retriever": "retrieval"}
HEX: Final = frozenset("0123456789abcdef")


def _hex_id(value: str | None, hex_digits: int) -> int | None:
    """An OpenTelemetry id (``hex_digits`` * 4 bits) for a Chainsight id: the
    id itself when it is that long or shorter hex, its last digits when longer
    (ordered ids and uuid7 put their random bits last), else a hash."""
    if not value:
        return None
    text = value.lower().replace("-", "")
    if text and set(text) <= HEX:
        number = int(text[-hex_digits:], 16)
    else:
        number = int.from_bytes(hashlib.blake2b(value.encode(), digest_size=hex_digits // 2).digest(), "big")
    return number or 1  # 0 is OpenTelemetry's "invalid"


def span_id_of(value: str | None) -> int | None:
    return _hex_id(value, 16)


def trace_id_of(value: str) -> int:
    return _hex_id(value, 32) or 1


def _json(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)


def genai_attributes(span: Span, *, include_content: bool = False) -> dict[str, Any]:
    """The span's OpenTelemetry attributes, GenAI semantic conventions first."""
    a: dict[str, Any] = {"chainsight.span_id": span.span_id, "chainsight.kind": span.kind}
    operation = OPERATIONS.get(span.kind)
    if operation:
        a["gen_ai.operation.name"] = operation
    extra = dict(span.attributes or {})
    if span.provider:
        a["gen_ai.provider.name"] = span.provider
    if span.model:
        a["gen_ai.request.model"] = span.model
        a["gen_ai.response.model"] = str(extra.get("response_model") or span.model)
    for key, value in (("gen_ai.usage.input_tokens", span.input_tokens),
                       ("gen_ai.usage.output_tokens", span.output_tokens),
                       ("gen_ai.usage.cache_read.input_tokens", span.cached_tokens),
                       ("chainsight.usage.reasoning_tokens", span.reasoning_tokens)):
        if value is not None:
            a[key] = int(value)
    if span.tokens_estimated:
        a["chainsight.usage.estimated"] = True
    if span.cost_usd is not None:
        a["chainsight.cost_usd"] = float(span.cost_usd)
    if span.first_token_ns is not None:
        a["gen_ai.response.time_to_first_chunk"] = (span.first_token_ns - span.start_ns) / 1e9
    reasons = extra.get("finish_reasons") or extra.get("finish_reason")
    if reasons:
        a["gen_ai.response.finish_reasons"] = [str(r) for r in
                                               (reasons if isinstance(reasons, list) else [reasons])]
    if span.kind == "tool":
        a["gen_ai.tool.name"] = span.name
        if extra.get("tool_call_id"):
            a["gen_ai.tool.call.id"] = str(extra["tool_call_id"])
    if span.kind == "agent":
        a["gen_ai.agent.name"] = span.name
    if span.error_type:
        a["error.type"] = span.error_type
    if span.user_id:
        a["user.id"] = span.user_id
    if span.session_id:
        a["session.id"] = span.session_id
    if span.tags:
        a["chainsight.tags"] = [str(t) for t in span.tags]
    if include_content:
        if span.inputs is not None:
            a["gen_ai.input.messages" if span.kind == "llm" else "chainsight.inputs"] = _json(span.inputs)
        if span.outputs is not None:
            a["gen_ai.output.messages" if span.kind == "llm" else "chainsight.outputs"] = _json(span.outputs)
    return a


def evaluation_event_attributes(score: Score) -> dict[str, Any]:
    """A score as the attributes of a ``gen_ai.evaluation.result`` event."""
    a: dict[str, Any] = {"gen_ai.evaluation.name": score.name, "chainsight.score.source": score.source}
    if score.value is not None:
        a["gen_ai.evaluation.score.value"] = float(score.value)
    label = score.label
    if label is None and score.passed is not None:
        label = "pass" if score.passed else "fail"
    if label is not None:
        a["gen_ai.evaluation.score.label"] = label
    if score.comment:
        a["gen_ai.evaluation.explanation"] = score.comment
    return a


def to_readable_spans(spans: Iterable[Span], scores: Iterable[Score], *, include_content: bool,
                      service_name: str) -> list[ReadableSpan]:
    """OpenTelemetry SDK spans (what its exporters take) for Chainsight spans;
    each score becomes an event on its span (a trace's on its root)."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import Event, ReadableSpan
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope
    from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

    spans = list(spans)
    by_span: dict[str, list[Score]] = {}
    roots = {s.trace_id: s.span_id for s in spans if s.parent_id is None}
    for score in scores:
        target = score.span_id or roots.get(score.trace_id)
        if target:
            by_span.setdefault(target, []).append(score)
    resource = Resource.create({"service.name": service_name})
    scope = InstrumentationScope(SCOPE)
    flags = TraceFlags(TraceFlags.SAMPLED)
    out = []
    for span in spans:
        trace_id = trace_id_of(span.trace_id)
        context = SpanContext(trace_id, span_id_of(span.span_id) or 1, False, flags)
        parent_id = span_id_of(span.parent_id)
        parent = SpanContext(trace_id, parent_id, False, flags) if parent_id else None
        end = span.end_ns if span.end_ns is not None else span.start_ns
        events = [Event("gen_ai.evaluation.result", evaluation_event_attributes(s),
                        s.created_ns if s.created_ns else end)
                  for s in by_span.get(span.span_id, ())]
        if span.status == "error":
            status = Status(StatusCode.ERROR, str(span.error or span.error_type or "error")[:1000])
        elif span.status == "ok":
            status = Status(StatusCode.OK)
        else:
            status = Status(StatusCode.UNSET)
        kind = SpanKind.CLIENT if span.kind in ("llm", "embedding") else SpanKind.INTERNAL
        out.append(ReadableSpan(
            span.name, context, parent, resource, genai_attributes(span, include_content=include_content),
            events, kind=kind, status=status, start_time=span.start_ns, end_time=end,
            instrumentation_scope=scope,
        ))
    return out


class OtlpExporter:
    """The plugin: one per observer (or per ``chainsight serve``)."""

    CONFIG_SCHEMA: Final = CONFIG_SCHEMA

    def __init__(self) -> None:
        self.endpoint: str | None = None
        self.include_content = False
        self.service_name = "chainsight"
        self.sent = 0          # spans the endpoint accepted
        self.failed = 0        # spans it refused or never answered for
        self.dropped = 0       # spans not sent: the queue was full, or exit came first
        self._exporter: Any = None
        self._queue: queue.Queue[list[ReadableSpan] | None] = queue.Queue(64)
        self._thread: threading.Thread | None = None
        self._scores: dict[str, list[Score]] = {}
        self._last_warning = 0.0
        self._idle = threading.Condition()
        self._busy = 0

    @hookimpl
    def configure(self, config: Mapping[str, Any]) -> None:
        self.start(config)

    def start(self, config: Mapping[str, Any]) -> None:
        endpoint = config.get("endpoint")
        if not endpoint:
            return
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError as exc:
            raise RuntimeError("[plugins.otlp] endpoint is set but the OTLP exporter is not "
                               f"installed: pip install 'chainsight[otlp]' ({exc})") from None
        headers = {str(k): str(v) for k, v in (config.get("headers") or {}).items()}
        self.endpoint = str(endpoint)
        self.include_content = bool(config.get("include_content", False))
        self.service_name = str(config.get("service_name") or "chainsight")
        self._exporter = OTLPSpanExporter(endpoint=self.endpoint, headers=headers,
                                          timeout=float(config.get("timeout_s", 2.0)))
        self._queue = queue.Queue(int(config.get("max_queued_batches", 64)))
        self._thread = threading.Thread(target=self._send_loop, name="chainsight-otlp", daemon=True)
        self._thread.start()

    # ---- feeding (the pipeline worker, or chainsight serve) -------------------------
    @hookimpl
    def process_score(self, score: Score) -> None:
        if self._exporter is not None:  # sent with its span, in the next spans_finished
            self._scores.setdefault(score.span_id or score.trace_id, []).append(score)

    @hookimpl
    def spans_finished(self, spans: Sequence[Span]) -> None:
        if self._exporter is None:
            return
        held, self._scores = self._scores, {}
        ids = {s.span_id for s in spans} | {s.trace_id for s in spans if s.parent_id is None}
        scores = [sc for key in ids for sc in held.pop(key, ())]
        # Scores left over are for spans sent already (feedback given later):
        # they stay in the store; OTLP has no way to add events to a sent span.
        self.export(spans, scores)

    def export(self, spans: Sequence[Span], scores: Sequence[Score] = ()) -> None:
        """Queue spans (and the scores on them) for sending; never blocks."""
        if self._exporter is None or not spans:
            return
        batch = to_readable_spans(spans, scores, include_content=self.include_content,
                                  service_name=self.service_name)
        try:
            self._queue.put_nowait(batch)
        except queue.Full:
            self.dropped += len(batch)
            self._warn(f"OTLP export to {self.endpoint} is behind: {len(batch)} spans not sent "
                       f"({self.dropped} in all; they are in the store)")

    def _warn(self, message: str) -> None:
        now = time.monotonic()
        if now - self._last_warning >= 10.0:
            self._last_warning = now
            log.warning("%s", message)

    # ---- sending (the plugin's thread) ------------------------------------------------
    def _send_loop(self) -> None:
        from opentelemetry.sdk.trace.export import SpanExportResult

        while True:
            batch = self._queue.get()
            if batch is None:
                return
            with self._idle:
                self._busy += 1
            try:
                result = self._exporter.export(batch)
            except Exception as exc:  # the SDK returns FAILURE; be sure anyway
                result = None
                log.debug("OTLP export raised", exc_info=exc)
            with self._idle:
                self._busy -= 1
                if result == SpanExportResult.SUCCESS:
                    self.sent += len(batch)
                else:
                    self.failed += len(batch)
                    self._warn(f"OTLP export to {self.endpoint} failed: {len(batch)} spans not "
                               f"sent ({self.failed} in all; they are in the store)")
                self._idle.notify_all()

    @hookimpl
    def shutdown(self, timeout: float) -> None:
        """Send what is queued within ``timeout`` seconds; count the rest."""
        if self._exporter is None:
            return
        deadline = time.monotonic() + max(0.0, timeout)
        with self._idle:
            while (self._busy or not self._queue.empty()) and time.monotonic() < deadline:
                self._idle.wait(min(0.05, max(0.0, deadline - time.monotonic())))
        left = 0
        while True:
            try:
                batch = self._queue.get_nowait()
            except queue.Empty:
                break
            if batch:
                left += len(batch)
        if left:
            self.dropped += left
            log.warning("OTLP export to %s: %d spans not sent by the exit deadline "
                        "(they are in the store)", self.endpoint, left)
        try:
            self._queue.put_nowait(None)
        except queue.Full:  # pragma: no cover - just drained
            pass
        self._exporter.shutdown()  # interrupts a retry in progress
        self._exporter = None


def create_plugin() -> OtlpExporter:
    """A fresh instance per observer (called by the plugin loader)."""
    return OtlpExporter()
