"""Firing and recent alerts; Enter opens the traces behind one, ``t`` lists
the traces its labels and time point at."""

from __future__ import annotations

from typing import Any, ClassVar, Final

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Static

from chainsight.tui import format as fmt
from chainsight.tui.data import StoreDown
from chainsight.tui.safe_text import clean, safe
from chainsight.tui.widgets.health import HealthBar
from chainsight.tui.widgets.keybar import KeyBar

# Name only commands and [plugins.X] tables that exist (tests run each through the CLI).
EMPTY: Final = ("No alerts. The rules (p95 latency, error rate, GPU utilisation, spend) are set "
                "in [plugins.alerts] of plugins.toml and evaluated by the recording application; "
                "chainsight alerts rules lists them, chainsight alerts test RULE evaluates one now.")
STATE_STYLE = {"firing": "bold red", "pending": "yellow", "resolved": "green"}
# Alert labels that are also trace filter keys.
FILTER_KEYS = {"model": "model", "user": "user", "user_id": "user", "session": "session",
               "session_id": "session", "tag": "tag", "status": "status", "name": "name"}


def alert_filter(alert: Any, now_ns: int) -> str:
    """The trace filter that shows what an alert is about (from 5 minutes before it)."""
    parts = [f"since:{max(1, (now_ns - alert.started_ns) // 1_000_000_000 + 300)}s"]
    for key, value in sorted((alert.labels or {}).items()):
        if key in FILTER_KEYS and value:
            value = str(value)
            parts.append(f'{FILTER_KEYS[key]}:"{value}"' if " " in value else
                         f"{FILTER_KEYS[key]}:{value}")
    rule = alert.rule.lower()
    if ("error" in rule or "fail" in rule) and not any(p.startswith("status:") for p in parts):
        parts.append("status:error")
    return " ".join(parts)


class AlertsScreen(Screen[None]):
    AUTO_FOCUS = "#alerts"
    BINDINGS: ClassVar = [
        # priority: above the table's own Enter, so the footer shows what it does
        Binding("enter", "open", "Traces", priority=True),
        Binding("t", "jump", "Filter traces"),
        Binding("f", "toggle_firing", "Firing only"),
        Binding("ctrl+r", "reload", "Reload", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.firing_only = False
        self.alerts: list[Any] = []

    def compose(self) -> ComposeResult:
        yield HealthBar("Alerts")
        yield Static(id="alerts-title", markup=False)
        yield DataTable(id="alerts", cursor_type="row", zebra_stripes=True)
        yield Static(id="alert-summary", markup=False)
        yield KeyBar()

    def on_mount(self) -> None:
        table = self.query_one("#alerts", DataTable)
        for title, width in (("state", 9), ("severity", 8), ("rule", 24), ("value", 9),
                             ("threshold", 9), ("since", 9), ("traces", 6), ("summary", None)):
            table.add_column(title, key=title, width=width)
        table.focus()

    def on_screen_resume(self) -> None:
        self.load()

    def load(self) -> None:
        self._fetch(self.firing_only)

    @work(thread=True, exclusive=True, group="alerts", exit_on_error=False)
    def _fetch(self, firing_only: bool) -> None:
        app: Any = self.app
        try:
            alerts = app.data.list_alerts(state="firing" if firing_only else None, limit=200)
        except StoreDown as error:
            app.call_from_thread(app.store_down, error)
            app.call_from_thread(self.set_timer, app.retry_interval, self.load)
            return
        app.call_from_thread(self._apply, alerts)

    def _apply(self, alerts: list[Any]) -> None:
        self.app.store_ok()  # type: ignore[attr-defined]
        order = {"firing": 0, "pending": 1, "resolved": 2}
        self.alerts = sorted(alerts, key=lambda a: (order.get(a.state, 3), -a.started_ns))
        now = self.app.now()  # type: ignore[attr-defined]
        table = self.query_one("#alerts", DataTable)
        table.clear()
        for alert in self.alerts:
            table.add_row(
                Text(clean(alert.state), style=STATE_STYLE.get(alert.state, "")),
                safe(alert.severity, single_line=True, max_len=8),
                safe(alert.rule, "bold", single_line=True, max_len=40),
                Text(fmt.number(alert.value), justify="right"),
                Text(fmt.number(alert.threshold), justify="right", style="dim"),
                Text(fmt.ago(alert.started_ns, now)),
                Text(str(len(alert.trace_ids)) if alert.trace_ids else "", justify="right"),
                safe(alert.summary, single_line=True, max_len=200),
                key=alert.alert_id,
            )
        firing = sum(1 for a in alerts if a.state == "firing")
        title = Text(f" {firing} firing", style="bold red" if firing else "bold green")
        title.append(f" · {len(alerts)} shown" + (" (firing only)" if self.firing_only else ""),
                     style="dim")
        self.query_one("#alerts-title", Static).update(title)
        if not alerts:
            self.query_one("#alert-summary", Static).update(
                Text("No firing alerts." if self.firing_only else EMPTY, style="dim"))

    @on(DataTable.RowHighlighted, "#alerts")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        alert = self._alert(event.cursor_row)
        if alert is None:
            return
        text = Text()
        text.append_text(safe(alert.rule, "bold", single_line=True))
        text.append("  ")
        text.append_text(safe(alert.summary))
        if alert.labels:
            text.append("\nlabels ", style="dim")
            text.append_text(safe(", ".join(f"{k}={v}" for k, v in alert.labels.items())))
        if alert.description:
            text.append("\n")
            text.append_text(safe(alert.description))
        jump = alert_filter(alert, self.app.now())  # type: ignore[attr-defined]
        if alert.trace_ids:
            text.append(f"\nEnter → the {len(alert.trace_ids)} traces behind it", style="dim")
        text.append("\n" + ("t" if alert.trace_ids else "Enter or t") + " → traces", style="dim")
        if jump:
            text.append(" filtered by ", style="dim")
            text.append_text(safe(jump, "italic"))
        self.query_one("#alert-summary", Static).update(text)

    @on(DataTable.RowSelected, "#alerts")
    def _selected(self, event: DataTable.RowSelected) -> None:
        self.action_open()

    def _alert(self, row: int) -> Any:
        return self.alerts[row] if 0 <= row < len(self.alerts) else None

    def action_open(self) -> None:
        """The traces the alert kept, or (none kept) the filtered traces list."""
        alert = self._alert(self.query_one("#alerts", DataTable).cursor_row)
        if alert is None:
            return
        if alert.trace_ids:
            from chainsight.tui.screens.alert_traces import AlertTracesScreen

            self.app.push_screen(AlertTracesScreen(alert))
        else:
            self.action_jump()

    def action_jump(self) -> None:
        alert = self._alert(self.query_one("#alerts", DataTable).cursor_row)
        if alert is not None:
            app: Any = self.app
            app.show_traces(alert_filter(alert, app.now()))

    def action_toggle_firing(self) -> None:
        self.firing_only = not self.firing_only
        self.load()

    def action_reload(self) -> None:
        self.load()
