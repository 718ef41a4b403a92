"""Deterministic stores for the TUI tests, snapshots and benchmark.

Everything is derived from a seeded ``random.Random`` and a fixed ``NOW_NS``,
so ids, times and values (and therefore snapshots) never change.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Final

from chainsight.framework.model import Alert, Sample, Score, Span
from chainsight.storage.writer import StoreWriter, WriteBatch

NOW_NS: Final = 1_750_000_000_000_000_000  # 2025-06-15 15:06:40 UTC
SECOND: Final = 1_000_000_000
MODELS: Final = (("gpt-4o", "openai", 2.5e-6, 1e-5), ("gpt-4o-mini", "openai", 1.5e-7, 6e-7),
                 ("claude-3-5-sonnet", "anthropic", 3e-6, 1.5e-5), ("llama-local", "ollama", None, None))
USERS: Final = ("alice", "bob", "carol", "dave", None)
CHAINS: Final = ("rag_answer", "support_agent", "summarize_doc", "classify_ticket")
# Markup, an ANSI escape, and a bidi override (U+202E shows "RTL\u202egnp.exe" as "RTLexe.png").
HOSTILE: Final = ("[/]", "[bold", "[@click=app.quit]x[/]", "\x1b[31mred\x1b[0m",
                  "RTL\u202egnp.exe")


def _id(rng: random.Random, bits: int) -> str:
    return f"{rng.getrandbits(bits):0{bits // 4}x}"


def make_trace(rng: random.Random, start_ns: int, n_spans: int | None = None,
               name: str | None = None) -> list[Span]:
    """One trace: a root chain with retriever, prompt, LLM and tool children."""
    trace_id = _id(rng, 128)
    model, provider, in_price, out_price = rng.choice(MODELS)
    user = rng.choice(USERS)
    failed = rng.random() < 0.08
    root = Span(name or rng.choice(CHAINS), "chain", span_id=_id(rng, 64), trace_id=trace_id,
                start_ns=start_ns)
    root.user_id, root.session_id = user, f"s-{rng.randrange(40):02d}" if user else None
    root.inputs = {"question": f"How do I reset my password? (#{rng.randrange(1000)})"}
    root.tags = ["prod"] if rng.random() < 0.7 else ["staging"]
    spans = [root]
    t = start_ns + rng.randrange(1, 20) * 1_000_000
    count = n_spans if n_spans is not None else rng.randrange(3, 7)
    for i in range(count - 1):
        kind = ("retriever", "prompt", "llm", "tool", "llm", "parser")[i % 6]
        parent = root if kind != "parser" or len(spans) < 3 else spans[-1]
        span = Span(f"{kind}_{i}" if kind != "llm" else model, kind, span_id=_id(rng, 64),
                    trace_id=trace_id, parent_id=parent.span_id, start_ns=t)
        dur = rng.randrange(5, 60) * 1_000_000
        if kind == "retriever":
            span.outputs = {"documents": [{"page_content": "Open Settings → Security.",
                                           "metadata": {"source": "kb/42"}}]}
        elif kind == "llm":
            dur = rng.randrange(300, 3000) * 1_000_000
            span.model, span.provider = model, provider
            span.input_tokens, span.output_tokens = rng.randrange(80, 1500), rng.randrange(20, 400)
            span.first_token_ns = t + rng.randrange(80, 600) * 1_000_000
            span.chunk_count = span.output_tokens
            if in_price is not None and out_price is not None:
                span.cost_usd = span.input_tokens * in_price + span.output_tokens * out_price
            span.inputs = {"messages": [[{"role": "system", "content": "You are helpful."},
                                         {"role": "user", "content": "How do I reset it?"}]]}
            span.outputs = {"content": "Open Settings, then Security, then Reset password."}
            span.attributes = {"temperature": 0.2, "max_tokens": 512}
        elif kind == "tool":
            span.inputs = {"query": "password reset"}
            span.outputs = {"result": "ok"}
        span.end_ns = t + dur
        span.status = "ok"
        spans.append(span)
        t = span.end_ns + rng.randrange(1, 10) * 1_000_000
    if failed:
        spans[-1].status = "error"
        spans[-1].error_type = "TimeoutError"
        spans[-1].error = "upstream timed out after 30s"
        root.status, root.error, root.error_type = "error", spans[-1].error, "TimeoutError"
    else:
        root.status = "ok"
        root.outputs = {"answer": "Open Settings, then Security, then Reset password."}
    root.end_ns = t + rng.randrange(1, 10) * 1_000_000
    return spans


def seeded_batches(n_traces: int = 300, seed: int = 7, now_ns: int = NOW_NS,
                   span_window_s: int = 6 * 3600) -> Iterator[WriteBatch]:
    """Batches of a few hundred traces spread over ``span_window_s`` before ``now_ns``."""
    rng = random.Random(seed)
    spans: list[Span] = []
    scores: list[Score] = []
    failed: list[str] = []  # the newest failed traces: behind the firing alert
    step = span_window_s * SECOND // max(1, n_traces)
    for i in range(n_traces):
        start = now_ns - (n_traces - i) * step + rng.randrange(step // 2)
        trace = make_trace(rng, start)
        spans.extend(trace)
        root = trace[0]
        if root.status == "error":
            failed = [root.trace_id, *failed][:3]
        if rng.random() < 0.5:
            value = round(rng.random(), 2)
            scores.append(Score("groundedness", "check", root.trace_id, None, value, None,
                                value >= 0.5, None, score_id=_id(rng, 64),
                                created_ns=root.end_ns or start))
        if len(spans) >= 2000:
            yield WriteBatch(spans=spans, scores=scores)
            spans, scores = [], []
    samples = [Sample("gpu.utilization", float(40 + 50 * ((m * 7) % 11) / 10), "nvml",
                      now_ns - (360 - m) * 60 * SECOND, {"gpu_id": "0"}) for m in range(360)]
    alerts = [
        Alert("error_rate", "firing", "critical", 0.12, 0.05, now_ns - 600 * SECOND, None,
              "error rate 12% over 5m (threshold 5%)", {"model": "gpt-4o"}, alert_id="a1",
              trace_ids=tuple(failed)),
        Alert("p95_latency", "resolved", "warning", 4.1, 3.0, now_ns - 7200 * SECOND,
              now_ns - 6600 * SECOND, "p95 latency 4.1s", {}, alert_id="a2"),
    ]
    yield WriteBatch(spans=spans, scores=scores, samples=samples, alerts=alerts)


def build_store(url: str, n_traces: int = 300, seed: int = 7, now_ns: int = NOW_NS) -> None:
    writer = StoreWriter(url)
    try:
        for batch in seeded_batches(n_traces, seed, now_ns):
            writer.write(batch)
    finally:
        writer.close()


def build_hostile_store(url: str, now_ns: int = NOW_NS) -> str:
    """A small store whose every untrusted field holds markup and ANSI escapes.

    Returns the hostile trace's id.
    """
    nasty = " ".join(HOSTILE)
    rng = random.Random(99)
    spans = make_trace(rng, now_ns - 30 * SECOND, n_spans=4, name=nasty)
    root = spans[0]
    root.user_id = nasty
    root.session_id = nasty
    root.tags = list(HOSTILE)
    for span in spans[1:]:
        span.name = f"{span.kind} {nasty}"
        span.outputs = {"content": nasty, nasty: [nasty]}
        span.inputs = nasty
        if span.kind == "llm":
            span.model = nasty
            span.inputs = {"messages": [[{"role": nasty, "content": nasty}]]}
    spans[-1].status, spans[-1].error, spans[-1].error_type = "error", nasty, nasty
    root.status, root.error = "error", nasty
    others = [s for i in range(5) for s in make_trace(rng, now_ns - (100 + i * 60) * SECOND)]
    score = Score("groundedness", "check", root.trace_id, None, 0.2, nasty, False, nasty,
                  score_id="hostile-score", created_ns=now_ns - 20 * SECOND)
    alert = Alert(nasty, "firing", nasty, 1.0, 0.5, now_ns - 60 * SECOND, None, nasty,
                  {"model": nasty}, alert_id="hostile-alert", description=nasty,
                  trace_ids=(root.trace_id, others[0].trace_id))
    writer = StoreWriter(url)
    try:
        writer.write(WriteBatch(spans=spans + others, scores=[score], alerts=[alert]))
    finally:
        writer.close()
    return root.trace_id
