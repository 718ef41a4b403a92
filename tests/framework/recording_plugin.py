"""A test plugin that implements every hook and records what it saw."""

from __future__ import annotations

import argparse
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from chainsight.framework import hookimpl
from chainsight.framework.extension import CommandRegistry
from chainsight.framework.model import Alert, Sample, Score, Span


class EveryHook:
    """Implements every hook: a check, a trace check, a sink, a sampler, a notifier..."""

    name = "every_hook"
    CONFIG_SCHEMA: Mapping[str, Any] = {
        "type": "object",
        "properties": {
            "price_per_token": {"type": "number", "default": 0.001},
            "label": {"type": "string", "default": "fine"},
        },
        "additionalProperties": False,
    }

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.config: Mapping[str, Any] | None = None
        self.observer: Any = None
        self.calls: dict[str, int] = {}
        self.processed: list[str] = []
        self.finished: list[str] = []
        self.traces: list[tuple[str, list[str]]] = []
        self.samples: list[Sample] = []
        self.alerts: list[Alert] = []
        self.feedback: list[Score] = []
        self.shutdown_timeout: float | None = None
        self.threads: set[str] = set()

    def _saw(self, hook: str) -> None:
        with self.lock:
            self.calls[hook] = self.calls.get(hook, 0) + 1
            self.threads.add(f"{hook}:{threading.current_thread().name}")

    # startup
    @hookimpl
    def configure(self, observer: Any, config: Mapping[str, Any]) -> None:
        self._saw("configure")
        self.observer, self.config = observer, config

    @hookimpl
    def register_commands(self, cli: CommandRegistry) -> None:
        self._saw("register_commands")

        def configure(parser: argparse.ArgumentParser) -> None:
            parser.add_argument("--shout", action="store_true")

        cli.add("every-hook", "say hello", configure, lambda ns: 0)

    # pipeline
    @hookimpl
    def price_span(self, span: Span) -> float | None:
        self._saw("price_span")
        assert self.config is not None
        return float(span.total_tokens or 0) * float(self.config["price_per_token"])

    @hookimpl
    def process_span(self, span: Span) -> None:
        self._saw("process_span")
        span.set_attribute("every_hook.processed", True)
        self.processed.append(span.name)

    @hookimpl
    def check_span(self, span: Span) -> list[Score]:
        self._saw("check_span")
        assert span.attributes and span.attributes.get("every_hook.processed"), "checks run after process_span"
        label = self.config["label"] if self.config else None
        return [Score("name_length", "check", span.trace_id, span.span_id, float(len(span.name)), label, True)]

    @hookimpl
    def spans_finished(self, spans: Sequence[Span]) -> None:
        self._saw("spans_finished")
        assert isinstance(spans, tuple)
        self.finished.extend(s.name for s in spans)

    @hookimpl
    def trace_finished(self, root: Span, spans: Sequence[Span]) -> list[Score] | None:
        self._saw("trace_finished")
        self.traces.append((root.name, sorted(s.name for s in spans)))
        return [Score("trace_hook", "check", root.trace_id, None, float(len(spans)), "counted", True)]

    @hookimpl
    def collect_samples(self) -> list[Sample]:
        self._saw("collect_samples")
        return [Sample("test_gauge", 42.0, source="constant", labels={"gpu_id": "0"})]

    @hookimpl
    def samples_collected(self, samples: Sequence[Sample]) -> None:
        self._saw("samples_collected")
        self.samples.extend(samples)

    @hookimpl
    def alert_changed(self, alert: Alert) -> None:
        self._saw("alert_changed")
        self.alerts.append(alert)

    @hookimpl
    def feedback_recorded(self, score: Score) -> None:
        self._saw("feedback_recorded")
        self.feedback.append(score)

    @hookimpl
    def shutdown(self, timeout: float) -> None:
        self._saw("shutdown")
        self.shutdown_timeout = timeout


class RaisesEverywhere:
    """Raises in every pipeline hook."""

    name = "raises_everywhere"

    @hookimpl
    def price_span(self, span: Span) -> float | None:
        raise RuntimeError("price_span exploded")

    @hookimpl
    def process_span(self, span: Span) -> None:
        raise RuntimeError("process_span exploded")

    @hookimpl
    def spans_finished(self, spans: Sequence[Span]) -> None:
        raise RuntimeError("spans_finished exploded")

    @hookimpl
    def trace_finished(self, root: Span, spans: Sequence[Span]) -> list[Score] | None:
        raise RuntimeError("trace_finished exploded")

    @hookimpl
    def feedback_recorded(self, score: Score) -> None:
        raise RuntimeError("feedback_recorded exploded")

    @hookimpl
    def shutdown(self) -> None:
        raise RuntimeError("shutdown exploded")
