"""Builders for the alerting tests: model calls, samples and scores at chosen
times, written to a real store, and a clock the tests move by hand."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from chainsight.framework.model import Alert, Sample, Score, Span
from chainsight.framework.store_api import WriteBatch
from chainsight.storage.writer import StoreWriter

SECOND = 10**9
MINUTE = 60 * SECOND
T0 = 1_800_000_000 * SECOND  # a fixed "midnight" for the tests' clocks


class Clock:
    """Nanoseconds since the epoch, moved by the test."""

    def __init__(self, now: int = T0) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now

    def at_minute(self, minute: float, second: float = 50) -> int:
        self.now = T0 + int(minute * MINUTE + second * SECOND)
        return self.now


def call(start_ns: int, *, latency_s: float = 0.2, status: str = "ok", cost: float | None = 0.001,
         model: str = "gpt-4o", provider: str = "openai", ttft_s: float | None = None,
         input_tokens: int = 10, output_tokens: int = 20, name: str = "ChatOpenAI",
         user: str | None = None) -> Span:
    """One model call, its own trace."""
    span = Span(name, "llm", start_ns=start_ns)
    span.end_ns = start_ns + int(latency_s * SECOND)
    span.status, span.model, span.provider, span.cost_usd = status, model, provider, cost
    span.input_tokens, span.output_tokens = input_tokens, output_tokens
    span.user_id = user
    if status == "error":
        span.error, span.error_type = "rate limited", "RateLimitError"
    if ttft_s is not None:
        span.first_token_ns = start_ns + int(ttft_s * SECOND)
    return span


def per_minute(minutes: Iterable[int], make: Callable[[int, int], Span | None],
               per: int = 10) -> list[Span]:
    """``make(minute, i)`` for ``per`` calls a minute (at 0, 5, 10... seconds)."""
    out = []
    for m in minutes:
        for i in range(per):
            span = make(m, i)
            if span is not None:
                out.append(span)
    return out


def at(minute: float, second: float = 0) -> int:
    return T0 + int(minute * MINUTE + second * SECOND)


def write(url: str, spans: Sequence[Span] = (), samples: Sequence[Sample] = (),
          scores: Sequence[Score] = (), alerts: Sequence[Alert] = ()) -> None:
    writer = StoreWriter(url)
    try:
        writer.write(WriteBatch(spans=list(spans), scores=list(scores), samples=list(samples),
                                alerts=list(alerts)))
    finally:
        writer.close()


def states(alerts: Iterable[Alert]) -> list[tuple[str, str]]:
    return [(a.rule, a.state) for a in alerts]


def gpu(minute: int, value: float, gpu_id: str = "0", name: str = "llm_gpu_utilization_percent") -> Sample:
    return Sample(name, value, "nvml", at(minute), {"gpu_id": gpu_id})


def as_dict(alert: Alert) -> dict[str, Any]:
    return {"rule": alert.rule, "state": alert.state, "value": alert.value, "labels": alert.labels}
