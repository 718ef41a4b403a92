"""A test plugin that implements every hook and records what it saw."""

from __future__ import annotations

import argparse
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from chainsight.framework import hookimpl
from chainsight.framework.extension import CommandRegistry, Register
from chainsight.framework.model import Alert, Sample, Score, Span


class EveryHook:
    """Implements every hook; its checks, exporter, sampler and notifier too."""

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
        self.exported: list[str] = []
        self.notified: list[Alert] = []
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
    def register_checks(self, register: Register) -> None:
        self._saw("register_checks")
        register(_LengthOfName(self))
        register(_TraceSize())

    @hookimpl
    def register_exporters(self, register: Register) -> None:
        self._saw("register_exporters")
        register(_ListExporter(self))

    @hookimpl
    def register_samplers(self, register: Register) -> None:
        self._saw("register_samplers")
        register(_ConstantSampler())

    @hookimpl
    def register_notifiers(self, register: Register) -> None:
        self._saw("register_notifiers")
        register(_ListNotifier(self))

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
    def shutdown(self) -> None:
        self._saw("shutdown")


class _LengthOfName:
    name = "name_length"

    def __init__(self, owner: EveryHook) -> None:
        self.owner = owner

    def check_span(self, span: Span) -> Iterable[Score]:
        assert span.attributes and span.attributes.get("every_hook.processed"), "checks run after process_span"
        label = self.owner.config["label"] if self.owner.config else None
        return [Score(self.name, "check", span.trace_id, span.span_id, float(len(span.name)), label, True)]


class _TraceSize:
    name = "trace_size"

    def check_trace(self, root: Span, spans: Sequence[Span]) -> Iterable[Score]:
        return [Score(self.name, "check", root.trace_id, root.span_id, float(len(spans)), None, len(spans) < 100)]


class _ListExporter:
    name = "list_exporter"

    def __init__(self, owner: EveryHook) -> None:
        self.owner = owner
        self.shut = False

    def export(self, spans: Sequence[Span]) -> None:
        self.owner.exported.extend(s.span_id for s in spans)

    def shutdown(self, timeout: float) -> None:
        self.shut = True


class _ConstantSampler:
    name = "constant"
    interval_s = 0.05

    def sample(self) -> Iterable[Sample]:
        return [Sample("test_gauge", 42.0, source="constant", labels={"gpu_id": "0"})]


class _ListNotifier:
    name = "list_notifier"

    def __init__(self, owner: EveryHook) -> None:
        self.owner = owner

    def notify(self, alert: Alert) -> None:
        self.owner.notified.append(alert)


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
