"""Built-in plugin ``stats``: ``chainsight stats --since 1h`` prints, from the store,
the figures the Grafana dashboard (``chainsight export grafana``) shows from
Prometheus: LLM calls and calls/s, error rate and errors by type, latency
p50/p95/p99, TTFT and TPOT p50/p95, tokens and tokens/s, spend in all and by
model, check failures, feedback, cache hit rate and the latest GPU readings.
What counts as a check failure, a feedback value or a cache hit is said once,
in :mod:`chainsight.plugins.metric_sources`.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from typing import Any, Final

import sqlalchemy as sa

from chainsight.framework import hookimpl
from chainsight.framework.commands import (
    Column,
    display_url,
    fmt_cost,
    fmt_int,
    fmt_seconds,
    open_store,
    parse_time,
    print_json,
    print_table,
)
from chainsight.framework.extension import CommandRegistry
from chainsight.plugins.metric_sources import cache_hit, check_failures, feedback_value
from chainsight.storage import schema

MAX_SCORES: Final = 1_000_000
GPU_NAMES: Final = ("llm_gpu_utilization_percent", "llm_gpu_memory_used_bytes")


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--since", default="1h",
                        help="a duration back from now (30m, 2h, 7d) or an ISO date/time (default 1h)")
    parser.add_argument("--until", help="like --since: the end of the window (default: now)")


def llm_stats(store: Any, since_ns: int, until_ns: int) -> dict[str, Any]:
    """The figures, as one JSON-able mapping."""
    from chainsight.storage.follow import latest_samples

    seconds = max(1e-9, (until_ns - since_ns) / 1e9)
    [overall] = [r for r in store.aggregates(since_ns, until_ns, group_by="kind")] or [None]
    by_model = store.aggregates(since_ns, until_ns, group_by="model")
    s = schema.spans
    window = [s.c.kind == "llm", s.c.start_ns >= since_ns, s.c.start_ns < until_ns]
    with store.engine.connect() as conn:
        errors = conn.execute(
            sa.select(s.c.error_type, sa.func.count()).where(*window, s.c.status == "error")
            .group_by(s.c.error_type)).all()
        hits = sum(1 for (attributes,) in conn.execute(sa.select(s.c.attributes).where(*window))
                   if cache_hit(attributes))
    # Failures from the store's sums: the passing verdicts (most of them) are
    # summed in the rollups, never read one by one.
    failures = check_failures(store.score_stats(since_ns, until_ns))
    feedback = store.list_scores(source="feedback", since_ns=since_ns, limit=MAX_SCORES)
    votes = Counter(v for sc in feedback if sc.created_ns < until_ns
                    if (v := feedback_value(sc)) is not None)
    calls = overall.count if overall else 0
    gpus = latest_samples(store.engine, GPU_NAMES, since_ns)

    return {
        "since_ns": since_ns, "until_ns": until_ns, "seconds": seconds,
        "llm_calls": calls,
        "calls_per_second": calls / seconds,
        "errors": overall.error_count if overall else 0,
        "error_rate": overall.error_rate if overall and calls else None,
        "errors_by_type": {str(t or "unknown"): n for t, n in errors},
        "latency_seconds": {"p50": overall.latency_p50, "p95": overall.latency_p95,
                            "p99": overall.latency_p99} if overall else {},
        "ttft_seconds": {"p50": overall.ttft_p50, "p95": overall.ttft_p95} if overall else {},
        "tpot_seconds": {"p50": overall.tpot_p50, "p95": overall.tpot_p95} if overall else {},
        "input_tokens": overall.input_tokens if overall else 0,
        "output_tokens": overall.output_tokens if overall else 0,
        "tokens_per_second": ((overall.input_tokens + overall.output_tokens) / seconds) if overall else 0.0,
        "cost_usd": overall.cost_usd if overall else None,
        "unpriced_calls": overall.unpriced_count if overall else 0,
        "by_model": [{"model": r.group, "llm_calls": r.count, "errors": r.error_count,
                      "input_tokens": r.input_tokens, "output_tokens": r.output_tokens,
                      "cost_usd": r.cost_usd, "latency_p95_seconds": r.latency_p95} for r in by_model],
        "check_failures": dict(sorted(failures.items())),
        "refusals": failures.get("refusal", 0),
        "feedback": dict(sorted(votes.items())),
        "cache_hits": hits,
        "cache_hit_rate": hits / calls if calls else None,
        "gpu": [{"gpu_id": g.labels.get("gpu_id"), "metric": g.name, "value": g.value} for g in gpus],
    }


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _run(ns: argparse.Namespace) -> int:
    until_ns = parse_time(ns.until) if ns.until else time.time_ns()
    since_ns = parse_time(ns.since, now_ns=until_ns)
    with open_store(ns.db) as store:
        stats = llm_stats(store, since_ns, until_ns)
    if ns.json:
        print_json(stats)
        return 0
    lat, ttft, tpot = stats["latency_seconds"], stats["ttft_seconds"], stats["tpot_seconds"]

    def quantiles(q: dict[str, float | None]) -> str:
        return " / ".join(fmt_seconds(q.get(k)) for k in ("p50", "p95", "p99") if k in q) or "-"

    rows = [
        ["LLM calls", f"{fmt_int(stats['llm_calls'])} ({stats['calls_per_second']:.3g}/s)"],
        ["errors", f"{fmt_int(stats['errors'])} ({_pct(stats['error_rate'])})"
         + "".join(f", {t} {n}" for t, n in stats["errors_by_type"].items())],
        ["latency p50 / p95 / p99", quantiles(lat)],
        ["TTFT p50 / p95", quantiles(ttft)],
        ["TPOT p50 / p95", quantiles(tpot)],
        ["tokens in / out", f"{fmt_int(stats['input_tokens'])} / {fmt_int(stats['output_tokens'])} "
                            f"({stats['tokens_per_second']:.3g}/s)"],
        ["spend", f"{fmt_cost(stats['cost_usd'])}"
                  + (f" ({stats['unpriced_calls']} unpriced)" if stats["unpriced_calls"] else "")],
        ["check failures", ", ".join(f"{k} {v}" for k, v in stats["check_failures"].items()) or "none"],
        ["feedback", ", ".join(f"{k} {v}" for k, v in stats["feedback"].items()) or "none"],
        ["cache hit rate", _pct(stats["cache_hit_rate"])],
    ]
    rows += [[f"GPU {g['gpu_id']} {g['metric'].removeprefix('llm_gpu_')}", f"{g['value']:g}"]
             for g in stats["gpu"]]
    print_table((Column("figure"), Column("value", max_width=80, flex=True)), rows,
                title=f"{display_url(ns.db)}, last {fmt_seconds(stats['seconds'])}")
    if stats["by_model"]:
        print_table(
            (Column("model", max_width=40, flex=True), Column("calls", "right"), Column("errors", "right"),
             Column("tokens in", "right"), Column("tokens out", "right"), Column("spend", "right"),
             Column("p95", "right")),
            [[m["model"] or "-", fmt_int(m["llm_calls"]), fmt_int(m["errors"]), fmt_int(m["input_tokens"]),
              fmt_int(m["output_tokens"]), fmt_cost(m["cost_usd"]), fmt_seconds(m["latency_p95_seconds"])]
             for m in stats["by_model"]])
    return 0


@hookimpl
def register_commands(cli: CommandRegistry) -> None:
    cli.add("stats", "LLM call figures from the store: rates, latency, tokens, spend, quality "
            "(the Grafana dashboard's, e.g. --since 1h)", _configure, _run)
