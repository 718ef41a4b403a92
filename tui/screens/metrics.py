"""Metrics over a time range: latency/TTFT/TPOT percentiles, throughput, errors, cost, GPU."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Final

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Static

from chainsight.tui import format as fmt
from chainsight.tui.data import StoreDown
from chainsight.tui.safe_text import safe
from chainsight.tui.widgets.health import HealthBar
from chainsight.tui.widgets.keybar import KeyBar
from chainsight.tui.widgets.plot import Bars, Plot

# (label, seconds, buckets): from 1h on, each bucket a whole number of minutes
# that divides into or by an hour, so that the rollups' minutes and hours fall
# in one bucket each; 15m's 15 s buckets are read from the spans.
RANGES: Final = (("15m", 900, 60), ("1h", 3600, 60), ("6h", 6 * 3600, 72), ("24h", 86400, 48),
                 ("7d", 7 * 86400, 84), ("30d", 30 * 86400, 60))
# Whole traces and single model calls are measured on different scales (a trace
# holds retrieval, tools and several calls), so each has its own table and header.
GROUP_WIDTH: Final = 20
STAT_COLUMNS: Final = ("errors", "p50", "p95", "p99", "TTFT p50", "TPOT p50", "tokens", "cost",
                       "unpriced")
TRACES_TITLE: Final = "Traces: whole runs (root spans), all models together"
CALLS_TITLE: Final = "LLM calls by model: single model calls, not traces"


@dataclass(frozen=True, slots=True)
class PlotSpec:
    id: str
    title: str
    metric: str  # Store.series metric name
    style: str
    kind: str = "seconds"  # how the summary formats values
    per_second: bool = False  # divide each bucket's value by its width
    sample_match: tuple[str, ...] = ()  # read from samples whose name has all of these


PLOTS: Final = (
    PlotSpec("p-latency", "latency p95", "latency_p95", "cyan"),
    PlotSpec("p-ttft", "TTFT p95", "ttft_p95", "magenta"),
    PlotSpec("p-tpot", "TPOT p95", "tpot_p95", "bright_magenta"),
    PlotSpec("p-rps", "requests/s", "requests", "green", "rate", per_second=True),
    PlotSpec("p-tps", "tokens/s", "tokens", "bright_green", "rate", per_second=True),
    PlotSpec("p-errors", "error rate", "error_rate", "red", "percent"),
    PlotSpec("p-cost", "cost (cumulative)", "cost", "yellow", "cost"),
    PlotSpec("p-gpu", "GPU utilisation %", "", "bright_blue", "number",
             sample_match=("gpu", "util")),
    PlotSpec("p-gpumem", "GPU memory", "", "blue", "bytes", sample_match=("gpu", "mem")),
)


def sample_series(samples: list[Any], match: tuple[str, ...], since: int, until: int,
                  buckets: int) -> list[float | None]:
    """Mean per bucket of the samples whose name contains every word of ``match``."""
    sums = [0.0] * buckets
    counts = [0] * buckets
    width = (until - since) / buckets
    for sample in samples:
        name = sample.name.lower()
        if all(word in name for word in match) and since <= sample.time_ns < until:
            i = min(buckets - 1, int((sample.time_ns - since) / width))
            sums[i] += sample.value
            counts[i] += 1
    if not any(counts):
        return []
    return [sums[i] / counts[i] if counts[i] else None for i in range(buckets)]


def _summary(values: list[float | None], kind: str) -> str:
    present = [v for v in values if v is not None]
    if not present:
        return ""
    last, peak = present[-1], max(present)
    show = {"seconds": fmt.duration, "percent": fmt.percent, "cost": fmt.cost,
            "bytes": fmt.size, "rate": fmt.rate}.get(
        kind, lambda v: fmt.number(v))
    return f"last {show(last)} · max {show(peak)}"


class MetricsScreen(Screen[None]):
    AUTO_FOCUS = "#metrics-body"
    BINDINGS: ClassVar = [
        Binding("left_square_bracket", "range(-1)", "Shorter", key_display="["),
        Binding("right_square_bracket", "range(1)", "Longer", key_display="]"),
        Binding("g", "group", "By model"),
        Binding("ctrl+r", "reload", "Reload", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.range_index = 2
        self.by_model = True
        self.generation = 0

    def compose(self) -> ComposeResult:
        yield HealthBar("Metrics")
        yield Static(id="range", markup=False)
        with VerticalScroll(id="metrics-body"):
            with Grid(id="plots"):
                for spec in PLOTS:
                    yield Plot(spec.title, style=spec.style, id=spec.id)
            yield Static(Text(TRACES_TITLE, style="bold"), id="aggregates-title",
                         classes="table-title")
            yield DataTable(id="aggregates", cursor_type="row", zebra_stripes=True)
            yield Static(Text(CALLS_TITLE, style="bold"), id="by-model-title",
                         classes="table-title")
            yield DataTable(id="by-model", cursor_type="row", zebra_stripes=True)
            with Grid(id="metrics-lower"):
                yield Bars("cost by model", style="yellow", id="cost-by-model")
                yield Static(id="quality", markup=False)
        yield KeyBar()

    def on_mount(self) -> None:
        for selector, head in (("#aggregates", ("", "traces")), ("#by-model", ("model", "calls"))):
            table = self.query_one(selector, DataTable)
            table.add_column(head[0], key="group", width=GROUP_WIDTH)  # the counts line up
            for title in (head[1], *STAT_COLUMNS):
                table.add_column(title, key=title)
        self.load()

    def on_screen_resume(self) -> None:
        self.load()

    # ---- loading ------------------------------------------------------------
    def load(self) -> None:
        self.generation += 1
        self._draw_range()
        _label, seconds, buckets = RANGES[self.range_index]
        # The window ends at a bucket edge that is also a minute's or an hour's:
        # the rollups then give each bucket exactly the spans that started in it.
        step = math.gcd(seconds // buckets, 3600) * 1_000_000_000
        now = self.app.now()  # type: ignore[attr-defined]
        until = -(-now // step) * step
        self._fetch(self.generation, until - seconds * 1_000_000_000, until, buckets)

    @work(thread=True, exclusive=True, group="metrics", exit_on_error=False)
    def _fetch(self, generation: int, since: int, until: int, buckets: int) -> None:
        app: Any = self.app
        data = app.data
        try:
            series: dict[str, list[float | None]] = {}
            samples = data.list_samples(since_ns=since, until_ns=until, limit=20_000)
            stored = data.series([spec.metric for spec in PLOTS if not spec.sample_match],
                                 since, until, buckets)
            for spec in PLOTS:
                if spec.sample_match:
                    series[spec.id] = sample_series(samples, spec.sample_match, since, until,
                                                    buckets)
                else:
                    series[spec.id] = [point.value for point in stored[spec.metric]]
            overall = data.aggregates(since, until)
            by_model = data.aggregates(since, until, group_by="model")
            scores = data.score_stats(since, until)
        except StoreDown as error:
            app.call_from_thread(app.store_down, error)
            app.call_from_thread(self.set_timer, app.retry_interval, self.load)
            return
        app.call_from_thread(self._apply, generation, since, until, buckets, series, overall, by_model,
                             scores)

    def _apply(self, generation: int, since: int, until: int, buckets: int, series: dict[str, list[Any]],
               overall: list[Any], by_model: list[Any], scores: list[Any]) -> None:
        if generation != self.generation:
            return
        self.app.store_ok()  # type: ignore[attr-defined]
        bucket_s = (until - since) / 1e9 / buckets
        for spec in PLOTS:
            values = series.get(spec.id, [])
            if spec.per_second:
                values = [None if v is None else v / bucket_s for v in values]
            if spec.metric == "cost":
                total, cumulative = 0.0, []
                for v in values:
                    total += v or 0.0
                    cumulative.append(total)
                values = cumulative if any(v for v in values) else []
            self.query_one(f"#{spec.id}", Plot).set_series(values, _summary(values, spec.kind))
        traces = self.query_one("#aggregates", DataTable)
        traces.clear()
        for row in overall:
            traces.add_row(*self._aggregate_cells(row))
        calls = self.query_one("#by-model", DataTable)
        calls.clear()
        for row in by_model:
            calls.add_row(*self._aggregate_cells(row))
        for widget in (calls, self.query_one("#by-model-title")):
            widget.display = self.by_model
        self.query_one("#cost-by-model", Bars).set_rows(self._cost_rows(by_model))
        self.query_one("#quality", Static).update(self._quality_text(scores))

    def _aggregate_cells(self, row: Any) -> list[Text]:
        def get(name: str) -> Any:
            return getattr(row, name, None)
        group = get("group")
        return [
            safe(group, "bold", single_line=True, max_len=GROUP_WIDTH, placeholder="all"),
            Text(fmt.number(get("count")), justify="right"),
            Text(fmt.percent(get("error_rate")), justify="right",
                 style="red" if (get("error_rate") or 0) > 0.05 else ""),
            Text(fmt.duration(get("latency_p50")), justify="right"),
            Text(fmt.duration(get("latency_p95")), justify="right"),
            Text(fmt.duration(get("latency_p99")), justify="right"),
            Text(fmt.duration(get("ttft_p50")), justify="right"),
            Text(fmt.duration(get("tpot_p50")), justify="right"),
            Text(fmt.tokens((get("input_tokens") or 0) + (get("output_tokens") or 0)),
                 justify="right"),
            Text(fmt.cost(get("cost_usd")), justify="right"),
            Text(fmt.number(get("unpriced_count")), justify="right", style="dim"),
        ]

    def _cost_rows(self, by_model: list[Any]) -> list[tuple[str, float, str]]:
        rows = [(str(getattr(r, "group", None) or "unknown"), float(r.cost_usd), fmt.cost(r.cost_usd))
                for r in by_model if getattr(r, "cost_usd", None)]
        rows.sort(key=lambda r: -r[1])
        return rows[:8]

    def _quality_text(self, stats: list[Any]) -> Text:
        """``stats``: the store's ScoreStat per (source, name), in that order."""
        out = Text("quality and feedback\n", style="bold")
        if not stats:
            out.append("no scores in this range", style="dim")
        for stat in stats[:10]:
            out.append_text(safe(f"{stat.source}/{stat.name}", single_line=True, max_len=28))
            out.append(f"  n={stat.count}")
            if stat.mean is not None:
                out.append(f"  mean {fmt.number(stat.mean)}")
            if stat.verdicts:
                out.append(f"  pass {fmt.percent(stat.pass_rate)}",
                           style="green" if stat.passed == stat.verdicts else "yellow")
            out.append("\n")
        out.rstrip()
        return out

    def _draw_range(self) -> None:
        text = Text(" range ", style="bold")
        for i, (label, *_) in enumerate(RANGES):
            text.append(f" {label} ", style="reverse bold" if i == self.range_index else "dim")
        text.append("   [ ] change · g group by model " +
                    ("(on)" if self.by_model else "(off)"), style="dim")
        self.query_one("#range", Static).update(text)

    # ---- actions ------------------------------------------------------------
    def action_range(self, step: int) -> None:
        self.range_index = max(0, min(len(RANGES) - 1, self.range_index + step))
        self.load()

    def action_group(self) -> None:
        self.by_model = not self.by_model
        self.load()

    def action_reload(self) -> None:
        self.load()
