"""The detail pane of the trace screen: everything about one span, as safe Text."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from chainsight.tui import format as fmt
from chainsight.tui.safe_text import clean, safe
from chainsight.tui.widgets.json_view import (
    find_messages,
    find_tool_calls,
    json_text,
    messages_text,
)
from chainsight.tui.widgets.waterfall import KIND_ICON, KIND_STYLE


def _heading(out: Text, title: str) -> None:
    out.append("\n" if out.plain else "")
    out.append(f"── {title} ", style="bold cyan")
    out.append("\n")


def _pairs(out: Text, pairs: Sequence[tuple[str, Any]]) -> None:
    for key, value in pairs:
        out.append(f"{key:>11} ", style="dim")
        out.append_text(value if isinstance(value, Text) else safe(value, single_line=True,
                                                                    placeholder=fmt.DASH))
        out.append("\n")


def _score_line(score: Any) -> Text:
    line = Text()
    mark = {True: ("✓ ", "green"), False: ("✗ ", "red")}.get(score.passed, ("• ", "dim"))
    line.append(*mark)
    line.append_text(safe(score.name, "bold", single_line=True, max_len=40))
    if score.value is not None:
        line.append(f" {fmt.number(score.value)}")
    if score.label:
        line.append(" ")
        line.append_text(safe(score.label, "italic", single_line=True, max_len=40))
    line.append(f" ({clean(score.source)})", style="dim")
    if score.comment:
        line.append(" — ")
        line.append_text(safe(score.comment, max_len=500))
    return line


def gpu_summary(samples: Sequence[Any], start_ns: int, end_ns: int | None) -> Text | None:
    """Mean of each GPU sample series within the span's time range."""
    end = end_ns if end_ns is not None else start_ns
    groups: dict[str, list[float]] = {}
    for sample in samples:
        if "gpu" not in sample.name or not (start_ns <= sample.time_ns <= end):
            continue
        device = (sample.labels or {}).get("gpu_id") or (sample.labels or {}).get("device", "")
        groups.setdefault(f"{sample.name}{{{device}}}" if device else sample.name, []).append(
            sample.value)
    if not groups:
        return None
    out = Text()
    for name, values in sorted(groups.items()):
        out.append_text(safe(name, single_line=True, max_len=60))
        out.append(f"  mean {fmt.number(sum(values) / len(values))}  max {fmt.number(max(values))}"
                   f"  ({len(values)} samples)\n")
    out.rstrip()
    return out


def span_text(span: Any, scores: Sequence[Any] = (), samples: Sequence[Any] = ()) -> Text:
    """The whole pane for one span."""
    out = Text()
    style = "red" if span.status == "error" else KIND_STYLE.get(span.kind, "white")
    out.append(KIND_ICON.get(span.kind, "■") + " ", style=style)
    out.append_text(safe(span.name, "bold", single_line=True))
    out.append(f"  {clean(span.kind)} · ", style="dim")
    out.append(clean(span.status), style="bold red" if span.status == "error" else "green")
    out.append("\n")
    out.append(f"span {clean(span.span_id)}", style="dim")
    _heading(out, "timing")
    _pairs(out, [
        ("start", fmt.clock(span.start_ns)),
        ("latency", fmt.duration(span.latency_s)),
        ("TTFT", fmt.duration(span.ttft_s)),
        ("TPOT", fmt.duration(span.tpot_s)),
        ("chunks", str(span.chunk_count or 0)),
    ])
    if span.model or span.input_tokens is not None or span.output_tokens is not None:
        _heading(out, "model")
        estimated = " (estimated)" if span.tokens_estimated else ""
        _pairs(out, [
            ("model", span.model),
            ("provider", span.provider),
            ("tokens in", fmt.tokens(span.input_tokens) + estimated),
            ("tokens out", fmt.tokens(span.output_tokens) + estimated),
            ("cached", fmt.tokens(span.cached_tokens)),
            ("reasoning", fmt.tokens(span.reasoning_tokens)),
            ("cost", fmt.cost(span.cost_usd) + ("  unpriced" if span.cost_usd is None else "")),
        ])
    if span.error or span.status == "error":
        _heading(out, "error")
        if span.error_type:
            out.append_text(safe(span.error_type, "bold red", single_line=True))
            out.append(": ", style="red")
        out.append_text(safe(span.error or "(no message)", "red", max_len=4000))
        out.append("\n")
    if scores:
        _heading(out, "scores")
        for score in scores:
            out.append_text(_score_line(score))
            out.append("\n")
    messages = find_messages(span.inputs)
    if messages:
        _heading(out, "messages")
        out.append_text(messages_text(messages))
        out.append("\n")
    _heading(out, "inputs")
    out.append_text(json_text(span.inputs))
    out.append("\n")
    _heading(out, "outputs")
    out.append_text(json_text(span.outputs))
    out.append("\n")
    calls = find_tool_calls(span.outputs)
    if calls:
        _heading(out, "tool calls")
        out.append_text(json_text(calls))
        out.append("\n")
    params = {k: v for k, v in (("attributes", span.attributes), ("metadata", span.metadata)) if v}
    if params:
        _heading(out, "parameters")
        out.append_text(json_text(params))
        out.append("\n")
    if span.tags or span.user_id or span.session_id:
        _heading(out, "context")
        _pairs(out, [("user", span.user_id), ("session", span.session_id),
                     ("tags", ", ".join(clean(t) for t in span.tags or ()))])
    gpu = gpu_summary(samples, span.start_ns, span.end_ns)
    if gpu is not None:
        _heading(out, "GPU")
        out.append_text(gpu)
    out.rstrip()
    return out


class SpanDetail(VerticalScroll):
    """A scrolling pane showing :func:`span_text` (or any prepared Text)."""

    DEFAULT_CSS = """
    SpanDetail { padding: 0 1; }
    SpanDetail > Static { width: 1fr; }
    """

    def compose(self) -> ComposeResult:
        yield Static(Text("select a span", style="dim"), id="span-body")

    def show(self, text: Text) -> None:
        self.query_one("#span-body", Static).update(text)
        self.scroll_home(animate=False)
