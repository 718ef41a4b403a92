"""The Prometheus metrics of LLM calls, on a registry of their own.

Used by ``chainsight serve`` (fed from the store) and by the in-process
``prometheus`` plugin (fed by the pipeline). Names follow the seed and
Prometheus conventions; every label that comes from data (model, provider,
error type, check name) is folded into ``other`` past ``max_label_values``
distinct values, so a stream of odd model names cannot blow up the series
count.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from chainsight.framework.model import Sample, Score, Span
from chainsight.plugins.metric_sources import cache_hit, failed_checks, feedback_value

OTHER: Final = "other"
UNKNOWN: Final = "unknown"
LATENCY_BUCKETS: Final = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0)
TTFT_BUCKETS: Final = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0)
TPOT_BUCKETS: Final = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
TOKEN_TYPES: Final = ("input", "output", "cached", "reasoning")
# Gauges read from stored samples: the sample's name is the metric's.
GPU_GAUGES: Final = ("llm_gpu_utilization_percent", "llm_gpu_memory_used_bytes",
                     "llm_gpu_memory_utilization_percent", "llm_gpu_memory_total_bytes",
                     "llm_gpu_temperature_celsius", "llm_gpu_power_watts")
PIPELINE_COUNTERS: Final = ("queued", "dropped", "written", "failed", "spilled")


class LabelFolder:
    """Keeps the first ``limit`` distinct values of a label; later ones read ``other``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._kept: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, value: object) -> str:
        text = UNKNOWN if value is None or value == "" else str(value)
        if text in self._kept:
            return text
        with self._lock:
            if len(self._kept) < self.limit:
                self._kept.add(text)
                return text
        return OTHER


class _PipelineCollector(Collector):
    """``chainsight_spans_*_total`` from a mapping someone keeps current."""

    def __init__(self, read: Any) -> None:
        self._read = read

    def collect(self) -> Iterator[CounterMetricFamily]:
        totals: Mapping[str, float] = self._read()
        for key in PIPELINE_COUNTERS:
            family = CounterMetricFamily(f"chainsight_spans_{key}",
                                         f"Spans the Chainsight pipelines {key} (all processes)")
            family.add_metric([], float(totals.get(key, 0)))
            yield family


class _GaugeCollector(Collector):
    """GPU (and other sampled) gauges: the latest sample per name and label set."""

    def __init__(self, fold: LabelFolder) -> None:
        self._fold = fold
        self._latest: dict[tuple[str, str], tuple[int, float]] = {}
        self._lock = threading.Lock()

    def update(self, samples: Iterable[Sample]) -> None:
        with self._lock:
            for sample in samples:
                if sample.name not in GPU_GAUGES or sample.value is None:
                    continue
                key = (sample.name, self._fold((sample.labels or {}).get("gpu_id")))
                seen = self._latest.get(key)
                if seen is None or sample.time_ns >= seen[0]:
                    self._latest[key] = (sample.time_ns, float(sample.value))

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._lock:
            latest = dict(self._latest)
        for name in GPU_GAUGES:
            family = GaugeMetricFamily(name, f"{name} (latest sample per GPU)", labels=["gpu_id"])
            for (metric, gpu_id), (_, value) in sorted(latest.items()):
                if metric == name:
                    family.add_metric([gpu_id], value)
            yield family


class LlmMetrics:
    """The metrics, on ``registry`` (a fresh one of their own by default)."""

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        latency_buckets: Sequence[float] = LATENCY_BUCKETS,
        ttft_buckets: Sequence[float] = TTFT_BUCKETS,
        tpot_buckets: Sequence[float] = TPOT_BUCKETS,
        max_label_values: int = 50,
        pipeline_totals: Any = None,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)  # process_cpu_seconds_total, process_resident_memory_bytes...
        self.model = LabelFolder(max_label_values)
        self.provider = LabelFolder(max_label_values)
        self.error_type = LabelFolder(max_label_values)
        self.check = LabelFolder(max_label_values)
        self.requests = Counter("llm_requests", "LLM calls", ["model", "provider", "status"], registry=r)
        self.latency = Histogram("llm_request_latency_seconds", "LLM call latency", ["model"],
                                 buckets=tuple(latency_buckets), registry=r)
        self.ttft = Histogram("llm_time_to_first_token_seconds", "Time to the first token",
                              ["model"], buckets=tuple(ttft_buckets), registry=r)
        self.tpot = Histogram("llm_time_per_output_token_seconds",
                              "Time per output token after the first", ["model"],
                              buckets=tuple(tpot_buckets), registry=r)
        self.tokens = Counter("llm_tokens", "Tokens", ["model", "type"], registry=r)
        self.cost = Counter("llm_cost_dollars", "Spend in US dollars (priced calls)", ["model"], registry=r)
        self.errors = Counter("llm_errors", "Failed LLM calls", ["model", "error_type"], registry=r)
        self.refusals = Counter("llm_refusals", "Answers the refusal check flagged", registry=r)
        self.check_failures = Counter("llm_check_failures", "Failed quality checks", ["check"], registry=r)
        self.feedback = Counter("llm_feedback", "User feedback", ["value"], registry=r)
        self.cache_hits = Counter("llm_cache_hits", "LLM calls a response cache answered", registry=r)
        self.cache_misses = Counter("llm_cache_misses", "LLM calls no response cache answered", registry=r)
        self.gauges = _GaugeCollector(LabelFolder(max_label_values))
        r.register(self.gauges)
        self._pipeline: dict[str, float] = {}
        r.register(_PipelineCollector(pipeline_totals or (lambda: self._pipeline)))

    def observe_spans(self, spans: Iterable[Span]) -> None:
        for span in spans:
            if span.kind == "llm":
                self._observe_llm(span)

    def _observe_llm(self, span: Span) -> None:
        model = self.model(span.model)
        self.requests.labels(model, self.provider(span.provider), span.status or UNKNOWN).inc()
        start, end, first = span.start_ns, span.end_ns, span.first_token_ns
        if end is not None:
            self.latency.labels(model).observe(max(0.0, (end - start) / 1e9))
        if first is not None:
            self.ttft.labels(model).observe(max(0.0, (first - start) / 1e9))
            out = span.output_tokens
            if end is not None and out is not None and out >= 2:
                self.tpot.labels(model).observe(max(0.0, (end - first) / 1e9 / (out - 1)))
        for kind in TOKEN_TYPES:
            count = getattr(span, f"{kind}_tokens")
            if count:
                self.tokens.labels(model, kind).inc(count)
        if span.cost_usd:
            self.cost.labels(model).inc(span.cost_usd)
        if span.status == "error":
            self.errors.labels(model, self.error_type(span.error_type)).inc()
        if cache_hit(span.attributes):
            self.cache_hits.inc()
        else:
            self.cache_misses.inc()

    def observe_scores(self, scores: Sequence[Score]) -> None:
        for name in failed_checks(scores):
            self.check_failures.labels(self.check(name)).inc()
            if name == "refusal":
                self.refusals.inc()
        for score in scores:
            value = feedback_value(score)
            if value is not None:
                self.feedback.labels(value).inc()

    def observe_samples(self, samples: Iterable[Sample]) -> None:
        self.gauges.update(samples)

    def set_pipeline_totals(self, totals: Mapping[str, float]) -> None:
        self._pipeline = dict(totals)


def metrics_options(config: Mapping[str, Any]) -> dict[str, Any]:
    """:class:`LlmMetrics` keyword arguments from a ``[plugins.prometheus]`` table."""
    names = ("latency_buckets", "ttft_buckets", "tpot_buckets", "max_label_values")
    return {name: config[name] for name in names if config.get(name) is not None}
