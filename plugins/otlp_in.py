"""OTLP/HTTP traces in (``POST /v1/traces`` on ``chainsight serve``).

Decodes an ``ExportTraceServiceRequest`` (``application/x-protobuf``, or
``application/json`` in the OTLP JSON encoding, whose ids are hex rather than
proto3's base64; either may be gzipped) and records each span through an
observer, mapped by :func:`chainsight.framework.adapters.otel.span_from_otel`:
from there on they are spans like any other (redacted, priced, checked,
stored).
"""

from __future__ import annotations

import base64
import gzip
import json
from typing import Any, Final

from chainsight.framework.adapters.otel import span_from_otel
from chainsight.framework.observer import Observer

MAX_BODY_BYTES: Final = 32 * 1024 * 1024
PROTOBUF: Final = "application/x-protobuf"
JSON: Final = "application/json"
_ID_FIELDS: Final = ("traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id")


class OtlpRequestError(ValueError):
    """A request that cannot be decoded; ``status`` is the HTTP answer."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _hex_ids_to_base64(node: Any) -> None:
    """OTLP JSON writes ids as hex; protobuf's JSON parser wants base64."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _ID_FIELDS and isinstance(value, str) and value:
                try:
                    node[key] = base64.b64encode(bytes.fromhex(value)).decode()
                except ValueError:
                    raise OtlpRequestError(f"{key} {value[:40]!r} is not a hex id") from None
            else:
                _hex_ids_to_base64(value)
    elif isinstance(node, list):
        for item in node:
            _hex_ids_to_base64(item)


def decode(body: bytes, content_type: str, content_encoding: str = "") -> Any:
    """The ``ExportTraceServiceRequest`` in ``body``; :class:`OtlpRequestError` if none."""
    from google.protobuf import json_format
    from google.protobuf.message import DecodeError
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    if content_encoding.strip().lower() == "gzip":
        try:
            body = gzip.decompress(body)
        except (OSError, EOFError) as exc:
            raise OtlpRequestError(f"the gzip body does not decompress: {exc}") from None
    elif content_encoding.strip() not in ("", "identity"):
        raise OtlpRequestError(f"Content-Encoding {content_encoding!r} is not supported (gzip is)", 415)
    media = content_type.split(";", 1)[0].strip().lower()
    request = ExportTraceServiceRequest()
    if media == PROTOBUF:
        try:
            request.ParseFromString(body)
        except DecodeError as exc:
            raise OtlpRequestError(f"not an OTLP protobuf ExportTraceServiceRequest: {exc}") from None
    elif media == JSON:
        try:
            data = json.loads(body)
            _hex_ids_to_base64(data)
            json_format.ParseDict(data, request, ignore_unknown_fields=True)
        except OtlpRequestError:
            raise
        except (ValueError, json_format.ParseError) as exc:
            raise OtlpRequestError(f"not an OTLP JSON ExportTraceServiceRequest: {exc}") from None
    else:
        raise OtlpRequestError(f"Content-Type {content_type!r} is not OTLP: send {PROTOBUF} or {JSON}", 415)
    return request


def any_value(value: Any) -> Any:
    """A Python value for an OTLP ``AnyValue``."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in value.kvlist_value.values}
    if kind == "bytes_value":
        return value.bytes_value.hex()
    return getattr(value, kind)


def record(observer: Observer, request: Any) -> int:
    """Record every span of ``request``; how many."""
    count = 0
    for resource_spans in request.resource_spans:
        resource = {kv.key: any_value(kv.value) for kv in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                attributes = {kv.key: any_value(kv.value) for kv in span.attributes}
                if "service.name" in resource:
                    attributes.setdefault("service.name", resource["service.name"])
                exception_type = next(
                    (str(any_value(kv.value)) for event in span.events if event.name == "exception"
                     for kv in event.attributes if kv.key == "exception.type"), None)
                code = span.status.code  # 0 unset, 1 ok, 2 error
                converted = span_from_otel(
                    span.name, trace_id=span.trace_id.hex(), span_id=span.span_id.hex(),
                    parent_id=span.parent_span_id.hex() or None,
                    start_ns=span.start_time_unix_nano, end_ns=span.end_time_unix_nano,
                    status="error" if code == 2 else "ok" if code == 1 else "unset",
                    status_message=span.status.message or None, attributes=attributes,
                    exception_type=exception_type,
                )
                observer.end_span(converted, end_ns=span.end_time_unix_nano or span.start_time_unix_nano)
                count += 1
    return count


def response_body(media: str) -> tuple[bytes, str]:
    """An empty ``ExportTraceServiceResponse`` (all accepted) in the request's encoding."""
    if media == JSON:
        return b"{}", JSON
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

    return ExportTraceServiceResponse().SerializeToString(), PROTOBUF
