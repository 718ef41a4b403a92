"""The traces behind one alert (the slow, failed or costly ones it kept);
Enter opens one, Esc goes back to the alerts."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Static

from chainsight.tui import format as fmt
from chainsight.tui.data import StoreDown
from chainsight.tui.safe_text import safe
from chainsight.tui.screens.trace_detail import TraceDetailScreen
from chainsight.tui.screens.traces import COLUMNS, cells
from chainsight.tui.widgets.health import HealthBar
from chainsight.tui.widgets.keybar import KeyBar

SHOWN = tuple(c for c in COLUMNS if c.key in ("when", "name", "status", "duration", "cost", "model", "id"))


def alert_header(alert: Any, now_ns: int, found: int | None = None) -> Text:
    text = Text()
    text.append_text(safe(alert.state, "bold red" if alert.state == "firing" else "bold",
                          single_line=True))
    text.append(" ")
    text.append_text(safe(alert.rule, "bold", single_line=True))
    text.append(f"  since {fmt.ago(alert.started_ns, now_ns)}", style="dim")
    text.append("\n")
    text.append_text(safe(alert.summary))
    if alert.labels:
        text.append("\nlabels ", style="dim")
        text.append_text(safe(", ".join(f"{k}={v}" for k, v in sorted(alert.labels.items()))))
    if alert.description:
        text.append("\n")
        text.append_text(safe(alert.description))
    kept = len(alert.trace_ids)
    text.append(f"\n{kept} trace{'s' if kept != 1 else ''} behind it", style="dim")
    if found is not None and found < kept:
        text.append(f" ({kept - found} no longer in the store)", style="dim")
    return text


class AlertTracesScreen(Screen[None]):
    AUTO_FOCUS = "#alert-traces"
    BINDINGS: ClassVar = [
        Binding("escape", "back", "Back"),
        Binding("enter", "open", "Open trace", priority=True),
    ]

    def __init__(self, alert: Any) -> None:
        super().__init__()
        self.alert = alert
        self.traces: list[Any] = []

    def compose(self) -> ComposeResult:
        yield HealthBar("Alert")
        yield Static(id="alert-header", markup=False)
        yield DataTable(id="alert-traces", cursor_type="row", zebra_stripes=True)
        yield KeyBar()

    def on_mount(self) -> None:
        now = self.app.now()  # type: ignore[attr-defined]
        self.query_one("#alert-header", Static).update(alert_header(self.alert, now))
        table = self.query_one("#alert-traces", DataTable)
        for column in SHOWN:
            table.add_column(column.title, key=column.key, width=column.width or None)
        self.load()

    def load(self) -> None:
        self._fetch()

    @work(thread=True, exclusive=True, group="alert-traces", exit_on_error=False)
    def _fetch(self) -> None:
        app: Any = self.app
        try:
            traces = app.data.get_traces(list(self.alert.trace_ids))
        except StoreDown as error:
            app.call_from_thread(app.store_down, error)
            app.call_from_thread(self.set_timer, app.retry_interval, self.load)
            return
        app.call_from_thread(self._apply, traces)

    def _apply(self, traces: list[Any]) -> None:
        self.app.store_ok()  # type: ignore[attr-defined]
        now = self.app.now()  # type: ignore[attr-defined]
        self.traces = traces
        self.query_one("#alert-header", Static).update(alert_header(self.alert, now, len(traces)))
        table = self.query_one("#alert-traces", DataTable)
        table.clear()
        for trace in traces:
            table.add_row(*cells(trace, SHOWN, now), key=trace.trace_id)

    @on(DataTable.RowSelected, "#alert-traces")
    def _selected(self, event: DataTable.RowSelected) -> None:
        self.action_open()

    def action_open(self) -> None:
        row = self.query_one("#alert-traces", DataTable).cursor_row
        if 0 <= row < len(self.traces):
            self.app.push_screen(TraceDetailScreen(self.traces[row].trace_id))

    def action_back(self) -> None:
        self.app.pop_screen()
