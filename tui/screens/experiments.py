"""Experiments: their summaries, a comparison of two, and each item's trace.

The table lists experiments, newest first; the pane below it shows the
highlighted one's summary (each score's mean with its 95% interval, latency,
tokens, cost). Space marks experiments; Enter compares the two marked ones
(or the highlighted one with the run before it) with the same figures as
``chainsight eval compare``: per-score deltas with a paired test, then the
items that regressed, focused: ``o`` or Enter opens the highlighted item's
trace, Tab goes back to the experiments.
"""

from __future__ import annotations

from typing import Any, ClassVar

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Static

from chainsight.framework.cli_render import short_id
from chainsight.tui import format as fmt
from chainsight.tui.data import StoreDown
from chainsight.tui.safe_text import clean, safe
from chainsight.tui.widgets.health import HealthBar
from chainsight.tui.widgets.keybar import KeyBar

EMPTY = """No experiments.

Run a target over a dataset to make one:

  chainsight dataset create NAME --from FILE
  chainsight eval run NAME --target module:attr

Each run shows up here; mark two with Space and press Enter to compare them
item by item, with the change in every score."""

MAX_SCORE_COLUMNS = 5


def _three(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, int | float) else fmt.DASH


def _scores(summary: Any) -> dict[str, dict[str, Any]]:
    scores = (summary or {}).get("scores") if isinstance(summary, dict) else None
    return {str(k): v for k, v in (scores or {}).items() if isinstance(v, dict)}


class ExperimentsScreen(Screen[None]):
    AUTO_FOCUS = "#experiments"
    BINDINGS: ClassVar = [
        Binding("space", "mark", "Mark"),
        # priority: above the table's own Enter, so the footer shows what it does
        Binding("enter", "compare", "Compare", priority=True),
        Binding("o", "open_trace", "Open trace"),
        Binding("ctrl+r", "reload", "Reload", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.experiments: list[Any] = []
        self.marked: list[str] = []
        self.regressed: list[Any] = []  # the comparison's regressed items, in table order

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("mark", "compare"):
            return bool(self.experiments)  # no dead keys in the footer of an empty screen
        if action == "open_trace":
            return bool(self.regressed)
        return True

    def compose(self) -> ComposeResult:
        yield HealthBar("Experiments")
        yield DataTable(id="experiments", cursor_type="row", zebra_stripes=True)
        yield Static(Text("loading…", style="dim"), id="experiments-body")
        yield Static(id="comparison")
        yield DataTable(id="regressions", cursor_type="row", zebra_stripes=True)
        yield KeyBar()

    def on_mount(self) -> None:
        self.query_one("#comparison", Static).display = False
        self.query_one("#regressions", DataTable).display = False

    def on_screen_resume(self) -> None:
        self.load()

    def load(self) -> None:
        self._fetch()

    @work(thread=True, exclusive=True, group="experiments", exit_on_error=False)
    def _fetch(self) -> None:
        app: Any = self.app
        try:
            experiments = app.data.list_experiments()
        except StoreDown as error:
            app.call_from_thread(app.store_down, error)
            app.call_from_thread(self.set_timer, app.retry_interval, self.load)
            return
        app.call_from_thread(self._apply, experiments)

    # ---- the list and the summary --------------------------------------------
    def _apply(self, experiments: list[Any]) -> None:
        self.app.store_ok()  # type: ignore[attr-defined]
        self.experiments = experiments
        self.refresh_bindings()
        table = self.query_one("#experiments", DataTable)
        body = self.query_one("#experiments-body", Static)
        table.display = bool(experiments)
        if not experiments:
            body.update(Text(EMPTY))
            return
        cursor = table.cursor_row
        table.clear(columns=True)
        names: list[str] = []
        for exp in experiments:
            for name in _scores(exp.summary):
                if name not in names:
                    names.append(name)
        names = sorted(names)[:MAX_SCORE_COLUMNS]
        for title in ("", "experiment", "name", "dataset", "created", "status", "items"):
            table.add_column(title)
        for name in names:
            table.add_column(safe(name, single_line=True, max_len=16))
        now = self.app.now()  # type: ignore[attr-defined]
        for exp in experiments:
            scores = _scores(exp.summary)
            metadata = exp.metadata or {}
            dataset = metadata.get("dataset")
            version = metadata.get("dataset_version")
            table.add_row(
                Text("●" if exp.experiment_id in self.marked else " ", style="bold cyan"),
                Text(short_id(exp.experiment_id), style="dim"),
                safe(exp.name, "bold", single_line=True, max_len=30),
                safe(f"{dataset}@{version}" if dataset and version else dataset or exp.dataset_id,
                     single_line=True, max_len=24, placeholder="—"),
                Text(fmt.ago(exp.created_ns, now)),
                safe(exp.status, single_line=True, max_len=12),
                Text(fmt.number((exp.summary or {}).get("items")), justify="right"),
                *(Text(_three((scores.get(n) or {}).get("mean")), justify="right") for n in names),
                key=exp.experiment_id,
            )
        if 0 <= cursor < table.row_count:
            table.move_cursor(row=cursor)
        self._show_summary()

    def _highlighted(self) -> Any:
        table = self.query_one("#experiments", DataTable)
        if not table.row_count:
            return None
        key = str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)
        return next((e for e in self.experiments if e.experiment_id == key), None)

    @on(DataTable.RowHighlighted, "#experiments")
    def _highlight(self, event: DataTable.RowHighlighted) -> None:
        self._show_summary()

    def _show_summary(self) -> None:
        exp = self._highlighted()
        if exp is None:
            return
        summary = exp.summary or {}
        out = Text()
        out.append_text(safe(exp.name, "bold", single_line=True, max_len=60))
        out.append(f"  {exp.experiment_id}\n", style="dim")
        grid = Table.grid(padding=(0, 2))
        for _ in range(4):
            grid.add_column()
        for name, entry in _scores(summary).items():
            grid.add_row(safe(name, single_line=True, max_len=30),
                         Text(_three(entry.get("mean")), justify="right"),
                         Text(f"{_three(entry.get('low'))}–{_three(entry.get('high'))}", style="dim"),
                         Text(f"n={entry.get('n')}", style="dim"))
        p50, p95 = summary.get("latency_p50_ms"), summary.get("latency_p95_ms")
        facts = Text(
            f"items {fmt.number(summary.get('items'))} · errors {fmt.number(summary.get('errors'))} · "
            f"latency p50 {fmt.duration(None if p50 is None else p50 / 1000)} "
            f"p95 {fmt.duration(None if p95 is None else p95 / 1000)} · "
            f"tokens {fmt.tokens(summary.get('input_tokens'))} in / "
            f"{fmt.tokens(summary.get('output_tokens'))} out · cost {fmt.cost(summary.get('cost_usd'))}",
            style="dim")
        for name, message in (summary.get("evaluator_failures") or {}).items():
            facts.append("\nevaluator ", style="yellow")
            facts.append_text(safe(f"{name} {message}", "yellow", single_line=True, max_len=150))
        hint = Text("Space marks an experiment; Enter compares the two marked ones "
                    "(or the highlighted one with the run before it).", style="dim")
        self.query_one("#experiments-body", Static).update(Group(out, grid, facts, hint))

    # ---- marking and comparing ---------------------------------------------------
    def action_mark(self) -> None:
        exp = self._highlighted()
        if exp is None:
            return
        if exp.experiment_id in self.marked:
            self.marked.remove(exp.experiment_id)
        else:
            self.marked = [*self.marked[-1:], exp.experiment_id]
        self._apply(self.experiments)

    def action_compare(self) -> None:
        if self.focused is self.query_one("#regressions", DataTable):
            self.action_open_trace()  # Enter on a regressed item opens its trace
            return
        ids = list(self.marked)
        if len(ids) < 2:
            exp = self._highlighted()
            if exp is None:
                return
            order = [e.experiment_id for e in self.experiments]
            index = order.index(exp.experiment_id)
            if index + 1 >= len(order):
                self.app.notify("No earlier experiment to compare with: mark two with Space.")
                return
            ids = [order[index + 1], exp.experiment_id]  # the older one is the baseline
        by_id = {e.experiment_id: e for e in self.experiments}
        a, b = sorted((by_id[i] for i in ids), key=lambda e: (e.created_ns, e.experiment_id))
        self._compare(a, b)

    @work(thread=True, exclusive=True, group="experiments", exit_on_error=False)
    def _compare(self, a: Any, b: Any) -> None:
        from chainsight.framework.eval.compare import compare_results

        app: Any = self.app
        try:
            results_a = app.data.experiment_results(a.experiment_id)
            results_b = app.data.experiment_results(b.experiment_id)
        except StoreDown as error:
            app.call_from_thread(app.store_down, error)
            return
        app.call_from_thread(self._show_compare, compare_results(a, results_a, b, results_b))

    def _show_compare(self, c: Any) -> None:
        out = Text()
        out.append("A ", style="bold")
        out.append_text(safe(c.a.name, single_line=True, max_len=40))
        out.append("  vs  B ", style="bold")
        out.append_text(safe(c.b.name, single_line=True, max_len=40))
        out.append(f"   {c.paired} items paired\n", style="dim")
        grid = Table.grid(padding=(0, 2))
        for header in ("score", "A", "B", "Δ", "95% CI", "p", "worse", "better"):
            grid.add_column(header, justify="left" if header == "score" else "right")
        grid.add_row(*(Text(h, style="bold") for h in ("score", "A", "B", "Δ", "95% CI", "p", "worse",
                                                       "better")))
        for m in c.metrics:
            style = "red" if m.delta < 0 else "green" if m.delta > 0 else ""
            grid.add_row(safe(m.name, single_line=True, max_len=30), f"{m.mean_a:.3f}", f"{m.mean_b:.3f}",
                         Text(f"{m.delta:+.3f}", style=style), f"{m.low:+.3f}…{m.high:+.3f}",
                         f"{m.p_value:.3g}", str(m.regressed), str(m.improved))
        by_item: dict[Any, list[Any]] = {}
        for r in c.regressions:
            by_item.setdefault(r.item_id, []).append(r)
        note = Text(f"{len(by_item)} item(s) regressed" + ("; o or Enter opens the highlighted one's trace"
                                                         if by_item else ""), style="bold")
        comparison = self.query_one("#comparison", Static)
        comparison.update(Group(out, grid, note))
        comparison.display = True
        table = self.query_one("#regressions", DataTable)
        table.clear(columns=True)
        for title in ("item", "scores A→B", "input", "output B", "trace B"):
            table.add_column(title)
        self.regressed = []
        for item_id, found in by_item.items():
            first = found[0]
            self.regressed.append(first)
            table.add_row(
                Text(short_id(item_id), style="dim"),
                Text(", ".join(f"{clean(r.metric, single_line=True)} {r.a:.2f}→{r.b:.2f}" for r in found)),
                safe(first.result_b.input, single_line=True, max_len=40, placeholder="—"),
                safe(first.result_b.output, single_line=True, max_len=30, placeholder="—"),
                Text(short_id(first.result_b.trace_id), style="dim"),
                key=str(len(self.regressed) - 1),
            )
        table.display = bool(by_item)
        if by_item:
            table.focus()  # up/down pick an item, o or Enter opens its trace; Tab goes back
        self.refresh_bindings()

    def action_open_trace(self) -> None:
        table = self.query_one("#regressions", DataTable)
        if not self.regressed or not table.row_count:
            return
        regression = self.regressed[table.cursor_row]
        trace_id = regression.result_b.trace_id
        if not trace_id:
            self.app.notify("That item has no stored trace.", severity="warning")
            return
        self.app.open_trace(trace_id)  # type: ignore[attr-defined]

    def action_reload(self) -> None:
        self.load()
