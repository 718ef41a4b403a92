"""The Grafana dashboard that ``chainsight export grafana`` writes (JSON, to
import or provision) over the metrics of ``chainsight
serve`` and the ``prometheus`` plugin: latency p50/p95/p99, requests/s,
tokens/s, TTFT and TPOT, error rate and errors by type, spend cumulative and by
model, GPU, check failures, refusals and feedback, cache hit rate, and the
pipeline's own counters. ``chainsight stats`` prints the same figures from
the store.

The queries use Grafana's ``$__rate_interval`` and a ``$model`` variable
(all models by default) on a ``$datasource`` variable (any Prometheus).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Final

from chainsight.framework.commands import CommandError

UID: Final = "chainsight-llm"
M: Final = 'model=~"$model"'
RATE: Final = "$__rate_interval"


def _quantiles(metric: str, qs: tuple[float, ...]) -> list[tuple[str, str]]:
    return [(f"histogram_quantile({q}, sum by (le) (rate({metric}_bucket{{{M}}}[{RATE}])))", f"p{round(q * 100)}")
            for q in qs]


# (title, unit, [(PromQL, legend)], panel type)
PANELS: Final[list[tuple[str, str, list[tuple[str, str]], str]]] = [
    ("Requests per second", "reqps",
     [(f"sum by (model) (rate(llm_requests_total{{{M}}}[{RATE}]))", "{{model}}")], "timeseries"),
    ("Error rate", "percentunit",
     [(f'sum(rate(llm_requests_total{{{M},status="error"}}[{RATE}])) / sum(rate(llm_requests_total{{{M}}}[{RATE}]))',
       "errors")], "timeseries"),
    ("Latency", "s", _quantiles("llm_request_latency_seconds", (0.5, 0.95, 0.99)), "timeseries"),
    ("Time to first token", "s", _quantiles("llm_time_to_first_token_seconds", (0.5, 0.95)), "timeseries"),
    ("Time per output token", "s", _quantiles("llm_time_per_output_token_seconds", (0.5, 0.95)), "timeseries"),
    ("Tokens per second", "short",
     [(f"sum by (type) (rate(llm_tokens_total{{{M}}}[{RATE}]))", "{{type}}")], "timeseries"),
    ("Spend (cumulative)", "currencyUSD", [(f"sum(llm_cost_dollars_total{{{M}}})", "total")], "timeseries"),
    ("Spend per hour by model", "currencyUSD",
     [(f"sum by (model) (rate(llm_cost_dollars_total{{{M}}}[{RATE}])) * 3600", "{{model}}")], "timeseries"),
    ("Errors by type", "short",
     [(f"sum by (error_type) (rate(llm_errors_total{{{M}}}[{RATE}]))", "{{error_type}}")], "timeseries"),
    ("Check failures", "short",
     [(f"sum by (check) (rate(llm_check_failures_total[{RATE}]))", "{{check}}"),
      (f"sum(rate(llm_refusals_total[{RATE}]))", "refusals")], "timeseries"),
    ("Feedback", "short", [(f"sum by (value) (rate(llm_feedback_total[{RATE}]))", "{{value}}")], "timeseries"),
    ("Cache hit rate", "percentunit",
     [(f"sum(rate(llm_cache_hits_total[{RATE}])) / (sum(rate(llm_cache_hits_total[{RATE}])) "
       f"+ sum(rate(llm_cache_misses_total[{RATE}])))", "hit rate")], "timeseries"),
    ("GPU utilisation", "percent", [("llm_gpu_utilization_percent", "GPU {{gpu_id}}")], "timeseries"),
    ("GPU memory used", "bytes", [("llm_gpu_memory_used_bytes", "GPU {{gpu_id}}")], "timeseries"),
    ("Chainsight pipeline", "short",
     [(f"sum(rate(chainsight_spans_{k}_total[{RATE}]))", k)
      for k in ("written", "dropped", "failed", "spilled")], "timeseries"),
]


def dashboard(title: str = "Chainsight: LLM calls") -> dict[str, Any]:
    """The dashboard, as Grafana's JSON model."""
    datasource = {"type": "prometheus", "uid": "${datasource}"}
    panels = []
    for i, (panel_title, unit, queries, kind) in enumerate(PANELS):
        panels.append({
            "id": i + 1,
            "type": kind,
            "title": panel_title,
            "datasource": datasource,
            "gridPos": {"h": 8, "w": 12, "x": (i % 2) * 12, "y": (i // 2) * 8},
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
            "targets": [{"refId": chr(ord("A") + j), "expr": expr, "legendFormat": legend,
                         "datasource": datasource} for j, (expr, legend) in enumerate(queries)],
        })
    return {
        "uid": UID,
        "title": title,
        "tags": ["chainsight", "llm"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": [
            {"name": "datasource", "label": "Prometheus", "type": "datasource", "query": "prometheus"},
            {"name": "model", "label": "model", "type": "query", "datasource": datasource,
             "query": {"query": "label_values(llm_requests_total, model)", "refId": "models"},
             "definition": "label_values(llm_requests_total, model)",
             "includeAll": True, "multi": True, "allValue": ".*",
             "current": {"text": "All", "value": "$__all"}, "refresh": 2},
        ]},
        "panels": panels,
    }


def queries(board: dict[str, Any]) -> list[str]:
    """Every PromQL expression of a dashboard's panels."""
    return [t["expr"] for panel in board["panels"] for t in panel["targets"]]


def configure_export(parser: argparse.ArgumentParser) -> None:
    """``chainsight export grafana``'s arguments."""
    parser.add_argument("--output", "-o", metavar="FILE", help="write here instead of stdout")
    parser.add_argument("--title", default="Chainsight: LLM calls")


def run_export(ns: argparse.Namespace) -> int:
    """``chainsight export grafana``: the dashboard, on stdout or in a file."""
    text = json.dumps(dashboard(ns.title), indent=2) + "\n"
    if not ns.output:
        sys.stdout.write(text)
        return 0
    try:
        with open(ns.output, "w", encoding="utf-8") as fh:
            fh.write(text)
    except OSError as exc:
        raise CommandError(f"cannot write the dashboard to {ns.output!r}: {exc.strerror or exc}") from None
    sys.stderr.write(f"wrote the Grafana dashboard to {ns.output} (import it, or provision it)\n")
    return 0
