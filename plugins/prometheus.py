"""Built-in plugin ``prometheus``: ``/metrics`` served from inside the application.

For a one-process application: with ``[plugins.prometheus] port`` set, the
observer's pipeline feeds the metrics of :mod:`chainsight.plugins.llm_metrics`
(on a registry of their own) and serves them on that port, bound to
127.0.0.1 unless ``host`` says otherwise. With several processes, or to keep
the port out of the application, run ``chainsight serve`` instead: it reads
the same metrics from the store (and takes its buckets and label limit from
this table). Without ``port`` the plugin does nothing.

Counted where: spans in ``spans_finished`` (after they were stored), check
failures and feedback in ``process_score`` (before the score is stored),
GPU gauges in ``samples_collected``; the pipeline's own counters are read
from the observer on each scrape.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from chainsight.framework import hookimpl
from chainsight.framework.model import Sample, Score, Span

if TYPE_CHECKING:
    from chainsight.framework.observer import Observer
    from chainsight.plugins.llm_metrics import LlmMetrics

log = logging.getLogger("chainsight.prometheus")

_BUCKETS: Final = {"type": "array", "items": {"type": "number", "exclusiveMinimum": 0},
                   "minItems": 1, "uniqueItems": True}

CONFIG_SCHEMA: Final[dict[str, Any]] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "port": {"type": ["integer", "null"], "minimum": 0, "maximum": 65535, "default": None,
                 "description": "Serve /metrics from this process on this port; off when absent."},
        "host": {"type": "string", "default": "127.0.0.1"},
        "latency_buckets": {**_BUCKETS, "description": "llm_request_latency_seconds buckets (s)."},
        "ttft_buckets": {**_BUCKETS, "description": "llm_time_to_first_token_seconds buckets (s)."},
        "tpot_buckets": {**_BUCKETS, "description": "llm_time_per_output_token_seconds buckets (s)."},
        "max_label_values": {"type": "integer", "minimum": 1, "default": 50,
                             "description": "Distinct models (providers, error types, checks) "
                                            "kept as labels; later ones are counted as 'other'."},
    },
}


class PrometheusPlugin:
    CONFIG_SCHEMA: Final = CONFIG_SCHEMA

    def __init__(self) -> None:
        self.metrics: LlmMetrics | None = None
        self._server: Any = None
        self.address: tuple[str, int] | None = None

    @hookimpl
    def configure(self, observer: Observer, config: Mapping[str, Any]) -> None:
        if config.get("port") is None:
            return
        try:
            from prometheus_client import start_http_server

            from chainsight.plugins.llm_metrics import LlmMetrics, metrics_options
        except ImportError as exc:
            raise RuntimeError("[plugins.prometheus] port is set but prometheus-client is not "
                               f"installed: pip install 'chainsight[prometheus]' ({exc})") from None

        def totals() -> dict[str, float]:
            stats = observer.stats()
            return {k: float(getattr(stats, k)) for k in ("queued", "dropped", "written", "failed", "spilled")}

        self.metrics = LlmMetrics(**metrics_options(config), pipeline_totals=totals)
        host, port = str(config.get("host") or "127.0.0.1"), int(config["port"])
        try:
            self._server, _thread = start_http_server(port, addr=host, registry=self.metrics.registry)
        except OSError as exc:
            raise RuntimeError(f"[plugins.prometheus]: cannot listen on {host}:{port}: "
                               f"{exc.strerror or exc}") from None
        self.address = (host, int(self._server.server_address[1]))
        log.info("Prometheus metrics on http://%s:%d/metrics", *self.address)

    @hookimpl
    def spans_finished(self, spans: Sequence[Span]) -> None:
        if self.metrics is not None:
            self.metrics.observe_spans(spans)

    @hookimpl
    def process_score(self, score: Score) -> None:
        if self.metrics is not None:
            self.metrics.observe_scores((score,))

    @hookimpl
    def samples_collected(self, samples: Sequence[Sample]) -> None:
        if self.metrics is not None:
            self.metrics.observe_samples(samples)

    @hookimpl
    def shutdown(self, timeout: float) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def create_plugin() -> PrometheusPlugin:
    """A fresh instance per observer (called by the plugin loader)."""
    return PrometheusPlugin()
