"""The trace and span a piece of code runs in, for the user's own log records.

Add :class:`TraceContextFilter` to a handler and every record logged inside a
traced run carries ``trace_id`` and ``span_id`` (empty strings outside one)::

    import logging
    from chainsight.framework.trace_context import TraceContextFilter

    handler = logging.StreamHandler()
    handler.addFilter(TraceContextFilter())
    handler.setFormatter(logging.Formatter("%(asctime)s %(trace_id)s %(span_id)s %(message)s"))
    logging.getLogger().addHandler(handler)

The span is the innermost of: a span opened with ``observer.span()`` /
``@observe``, the LangChain run active in this context (when a Chainsight
``CallbackHandler`` traces it), and an OpenTelemetry span (when OpenTelemetry
is in use). Nothing is imported to look: LangChain and OpenTelemetry are only
asked when the application already imported them.
"""

from __future__ import annotations

import logging
import sys

from chainsight.framework.model import Span
from chainsight.framework.observer import current_span


def _langchain_span() -> Span | None:
    """The span of the LangChain run active in this context, if a Chainsight
    handler traces it (its ``span_for_run``)."""
    module = sys.modules.get("langchain_core.runnables.config")
    var = getattr(module, "var_child_runnable_config", None) if module is not None else None
    config = var.get() if var is not None else None
    callbacks = config.get("callbacks") if config else None
    run_id = getattr(callbacks, "parent_run_id", None)
    if run_id is None:
        return None
    handlers = getattr(callbacks, "handlers", None)
    for handler in handlers or ():
        span_for_run = getattr(handler, "span_for_run", None)
        if span_for_run is not None:
            span = span_for_run(run_id)
            if span is not None:
                return span
    return None


def _otel_ids() -> tuple[str, str] | None:
    trace_module = sys.modules.get("opentelemetry.trace")
    if trace_module is None:
        return None
    context = trace_module.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


def current_ids() -> tuple[str, str] | None:
    """``(trace_id, span_id)`` of the innermost span running here, or None."""
    manual = current_span()
    try:
        chain = _langchain_span()
    except Exception:  # a foreign handler misbehaving must not break logging
        chain = None
    spans = [s for s in (manual, chain) if s is not None]
    if spans:
        inner = max(spans, key=lambda s: s.start_ns)  # both enclose us: the later is deeper
        return inner.trace_id, inner.span_id
    try:
        return _otel_ids()
    except Exception:
        return None


class TraceContextFilter(logging.Filter):
    """Sets ``record.trace_id`` and ``record.span_id`` (``default`` outside a
    trace); never drops a record."""

    def __init__(self, name: str = "", default: str = "") -> None:
        super().__init__(name)
        self.default = default

    def filter(self, record: logging.LogRecord) -> bool:
        ids = current_ids()
        record.trace_id, record.span_id = ids if ids is not None else (self.default, self.default)
        return True
