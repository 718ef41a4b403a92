"""The demo's closing summary, computed from the store (not from memory)."""

from __future__ import annotations

import json
import sys
from typing import Any


def summarize(url: str, since_ns: int) -> dict[str, Any]:
    from chainsight.framework.commands import open_store
    from chainsight.storage.query import TraceFilter

    with open_store(url) as store:
        (row, *_) = store.aggregates(since_ns=since_ns)
        spans = traces = 0
        cursor: str | None = None
        while True:
            page = store.list_traces(TraceFilter(since_ns=since_ns), limit=1000, cursor=cursor)
            traces += len(page.items)
            spans += sum(t.span_count for t in page.items)
            cursor = page.next_cursor
            if not cursor:
                break
    return {
        "traces": traces, "spans": spans, "errors": row.error_count,
        "p95_latency_s": row.latency_p95, "p95_ttft_s": row.ttft_p95,
        "cost_usd": row.cost_usd, "unpriced": row.unpriced_count,
        "input_tokens": row.input_tokens, "output_tokens": row.output_tokens,
    }


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.0f} ms" if unit == "s" else f"${value:.4f}"


def print_summary(summary: dict[str, Any], url: str, *, as_json: bool = False) -> int:
    from chainsight.framework.commands import display_url

    shown = display_url(url)  # never the password
    if as_json:
        json.dump({**summary, "db": shown}, sys.stdout)
        sys.stdout.write("\n")
    else:
        print(f"recorded into {shown}")
        print(f"  traces        {summary['traces']}")
        print(f"  spans         {summary['spans']}")
        print(f"  errors        {summary['errors']}")
        print(f"  p95 latency   {_fmt(summary['p95_latency_s'], 's')}")
        print(f"  p95 TTFT      {_fmt(summary['p95_ttft_s'], 's')}")
        print(f"  tokens        {summary['input_tokens']} in / {summary['output_tokens']} out")
        cost = _fmt(summary["cost_usd"], "$")
        print(f"  total cost    {cost}" + (f" ({summary['unpriced']} unpriced)" if summary["unpriced"] else ""))
    return 0 if summary["traces"] else 1
