"""Recent traces: filter bar, server-side sort, cursor paging, live tail."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Final

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.events import Resize
from textual.screen import Screen
from textual.widgets import DataTable, Input, Static

from chainsight.framework.cli_render import short_id
from chainsight.tui import format as fmt
from chainsight.tui.data import StoreDown
from chainsight.tui.safe_text import clean, safe
from chainsight.tui.widgets.health import HealthBar
from chainsight.tui.widgets.keybar import KeyBar


@dataclass(frozen=True, slots=True)
class Column:
    key: str
    title: str
    width: int
    min_screen: int  # shown when the screen is at least this wide
    order: str | None = None  # the list_traces order it sorts by


# A sortable column is wide enough for its title and the sort arrow (" ↓").
COLUMNS: Final = (
    Column("when", "when", 8, 0, "start_ns"),
    Column("name", "name", 0, 0),
    Column("status", "status", 6, 0),
    Column("duration", "duration", 10, 0, "duration"),
    Column("ttft", "TTFT", 6, 100),
    Column("tokens", "tokens", 8, 0, "tokens"),
    Column("cost", "cost", 8, 0, "cost"),
    Column("model", "model", 14, 90),
    Column("user", "user", 10, 110),
    Column("spans", "spans", 7, 160, "spans"),
    Column("scores", "scores", 18, 130, None),
    Column("id", "trace id", 10, 180, None),
)
PLACEHOLDER: Final = 'filter: status:error model:gpt-4o cost>0.01 user:alice latency>2s "text"'
LOAD_MORE_AT: Final = 10  # rows before the end of the table


def _status(status: str) -> Text:
    if status == "error":
        return Text("✗ err", style="bold red")
    if status == "ok":
        return Text("✓ ok", style="green")
    return safe(status, "dim", single_line=True, max_len=6)


def _scores(summary: dict[str, Any] | None) -> Text:
    out = Text(no_wrap=True)
    for name, value in list((summary or {}).items())[:3]:
        if isinstance(value, dict):
            value = value.get("avg", value.get("mean", value.get("value")))
        out.append(" " if out.plain else "")
        out.append_text(safe(name, "dim", single_line=True, max_len=10))
        out.append("=" + (fmt.number(value) if isinstance(value, int | float) else
                          clean(value, single_line=True, max_len=6)))
    return out


def _when(trace: Any, now_ns: int) -> Text:
    return Text(fmt.ago(trace.start_ns, now_ns).replace(" ago", ""), style="dim")


def cells(trace: Any, columns: tuple[Column, ...], now_ns: int) -> list[Text]:
    values = {
        "when": lambda: _when(trace, now_ns),
        "name": lambda: safe(trace.name, single_line=True, max_len=80, placeholder="(unnamed)"),
        "status": lambda: _status(trace.status),
        "duration": lambda: Text(fmt.duration(trace.duration_s), justify="right"),
        "ttft": lambda: Text(fmt.duration(trace.ttft_s), justify="right"),
        "tokens": lambda: Text(fmt.tokens((trace.input_tokens or 0) + (trace.output_tokens or 0)),
                               justify="right"),
        "cost": lambda: Text(fmt.cost(trace.cost_usd), justify="right",
                             style="dim" if trace.cost_usd is None else ""),
        "model": lambda: safe(trace.model, "magenta", single_line=True, max_len=24,
                              placeholder=fmt.DASH),
        "user": lambda: safe(trace.user_id, single_line=True, max_len=16, placeholder=fmt.DASH),
        "spans": lambda: Text(str(trace.span_count), justify="right"),
        "scores": lambda: _scores(trace.score_summary),
        "id": lambda: safe(short_id(trace.trace_id), "dim", single_line=True),
    }
    return [values[c.key]() for c in columns]


class TracesScreen(Screen[None]):
    AUTO_FOCUS = "#traces"
    BINDINGS: ClassVar = [
        Binding("slash", "focus_filter", "Filter", key_display="/"),
        Binding("t", "toggle_live", "Live tail"),
        Binding("s", "cycle_sort", "Sort"),
        Binding("o", "flip_order", "Asc/desc"),
        Binding("y", "copy_id", "Copy id"),
        Binding("ctrl+r", "reload", "Reload", show=False),
        Binding("escape", "focus_table", "Table", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.filter_text = ""
        self.order = "start_ns"
        self.descending = True
        self.items: list[Any] = []
        self.next_cursor: str | None = None
        self.loading = False
        self.generation = 0
        self.live = False
        self.columns: tuple[Column, ...] = ()
        self.total: int | None = None

    def compose(self) -> ComposeResult:
        yield HealthBar("Traces")
        yield Input(placeholder=PLACEHOLDER, id="filter")
        yield Static(id="filter-error", markup=False)
        table: DataTable[Any] = DataTable(id="traces", cursor_type="row", zebra_stripes=True)
        yield table
        yield Static(id="traces-status", markup=False)
        yield KeyBar()

    @property
    def table(self) -> DataTable[Any]:
        return self.query_one("#traces", DataTable)

    def on_mount(self) -> None:
        self._set_columns(self.app.size.width, force=True)
        self.table.focus()
        self.load(reset=True)
        self.set_interval(self.app.live_interval, self._tail)  # type: ignore[attr-defined]
        if self.app.start_live:  # type: ignore[attr-defined]
            self.action_toggle_live()

    # ---- columns ------------------------------------------------------------
    def _set_columns(self, width: int, force: bool = False) -> None:
        columns = tuple(c for c in COLUMNS if width >= c.min_screen)
        if columns == self.columns and not force:
            return
        self.columns = columns
        fixed = sum(c.width + 2 for c in columns if c.width)
        name_w = max(12, width - fixed - 4)
        table = self.table
        table.clear(columns=True)
        for c in columns:
            title = Text(c.title)
            if c.order == self.order:
                title.append(" ↓" if self.descending else " ↑", style="bold")
            table.add_column(title, width=c.width or name_w, key=c.key)
        self._add_rows(self.items)

    def on_resize(self, event: Resize) -> None:
        self._set_columns(event.size.width)

    def on_screen_resume(self) -> None:
        self._refresh_ages()

    def _refresh_ages(self) -> None:
        """Redraw the "when" column against the current time (after a trace, a mode switch)."""
        if not any(c.key == "when" for c in self.columns):
            return
        table, now = self.table, self.app.now()  # type: ignore[attr-defined]
        for trace in self.items:
            if trace.trace_id in table.rows:
                table.update_cell(trace.trace_id, "when", _when(trace, now))

    def _add_rows(self, items: list[Any]) -> None:
        table, now = self.table, self.app.now()  # type: ignore[attr-defined]
        for trace in items:
            if trace.trace_id not in table.rows:
                table.add_row(*cells(trace, self.columns, now), key=trace.trace_id)

    # ---- loading ------------------------------------------------------------
    def load(self, reset: bool = True) -> None:
        if reset:
            self.generation += 1
        elif self.loading or self.next_cursor is None:
            return
        self.loading = True
        self._fetch(self.generation, reset, None if reset else self.next_cursor)

    @work(thread=True, group="traces", exit_on_error=False)
    def _fetch(self, generation: int, reset: bool, cursor: str | None) -> None:
        app: Any = self.app
        try:
            now = app.now()
            page = app.data.list_traces(self.filter_text, limit=app.page_size, cursor=cursor,
                                        order=self.order, descending=self.descending, now_ns=now)
            total = app.data.count_traces(self.filter_text, now) if reset else None
        except ValueError as error:  # storage.filters.FilterError names the bad token
            app.call_from_thread(self._filter_failed, generation, str(error))
            return
        except StoreDown as error:
            app.call_from_thread(self._store_failed, generation, error)
            return
        app.call_from_thread(self._apply, generation, reset, page, total)

    def _apply(self, generation: int, reset: bool, page: Any, total: int | None) -> None:
        if generation != self.generation:
            return
        self.loading = False
        self.app.store_ok()  # type: ignore[attr-defined]
        self.query_one("#filter-error", Static).update("")
        self.query_one("#filter-error", Static).remove_class("-shown")
        self.query_one("#filter", Input).remove_class("-invalid")
        table = self.table
        if reset:
            keep = self._cursor_key()
            self.items = list(page.items)
            table.clear()
            self._add_rows(self.items)
            if total is not None:
                self.total = total
            if keep is not None and keep in table.rows:
                table.move_cursor(row=table.get_row_index(keep), animate=False)
        else:
            self.items.extend(page.items)
            self._add_rows(page.items)
        self.next_cursor = page.next_cursor
        self._update_status()

    def _filter_failed(self, generation: int, message: str) -> None:
        if generation != self.generation:
            return
        self.loading = False
        error = self.query_one("#filter-error", Static)
        error.update(Text(f"✗ {clean(message)}", style="red"))
        error.add_class("-shown")
        self.query_one("#filter", Input).add_class("-invalid")

    def _store_failed(self, generation: int, error: StoreDown) -> None:
        self.loading = False
        self.app.store_down(error)  # type: ignore[attr-defined]
        if generation == self.generation:
            self.set_timer(self.app.retry_interval,  # type: ignore[attr-defined]
                           lambda: self.load(reset=not self.items))

    def _update_status(self) -> None:
        shown = self.table.row_count
        total = "?" if self.total is None else f"{self.total:,}"
        text = Text(f" {shown:,} of {total} traces", style="bold")
        sort_by = next((c.title for c in COLUMNS if c.order == self.order), self.order)
        text.append(f" · sorted by {sort_by} {'↓' if self.descending else '↑'}", style="dim")
        if self.filter_text:
            text.append(" · filter ", style="dim")
            text.append_text(safe(self.filter_text, "italic", single_line=True, max_len=60))
        if self.next_cursor:
            text.append(" · more below (PgDn)", style="dim")
        if self.live:
            text.append(" · live", style="bold green")
        self.query_one("#traces-status", Static).update(text)

    def _cursor_key(self) -> str | None:
        table = self.table
        if not table.row_count:
            return None
        try:
            return str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)
        except Exception:
            return None

    # ---- events -------------------------------------------------------------
    @on(Input.Submitted, "#filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        self.set_filter(event.value)
        self.table.focus()

    def set_filter(self, text: str) -> None:
        self.filter_text = text.strip()
        filter_input = self.query_one("#filter", Input)
        if filter_input.value != text:
            filter_input.value = text
        self.load(reset=True)

    @on(DataTable.RowSelected, "#traces")
    def _open(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value is not None:
            self.app.open_trace(str(event.row_key.value))  # type: ignore[attr-defined]

    @on(DataTable.RowHighlighted, "#traces")
    def _maybe_more(self, event: DataTable.RowHighlighted) -> None:
        if event.cursor_row >= self.table.row_count - LOAD_MORE_AT:
            self.load(reset=False)

    @on(DataTable.HeaderSelected, "#traces")
    def _sort_by_header(self, event: DataTable.HeaderSelected) -> None:
        column = next((c for c in COLUMNS if c.key == event.column_key.value), None)
        if column is not None and column.order is not None:
            self._sort(column.order)

    def _sort(self, order: str) -> None:
        if order == self.order:
            self.descending = not self.descending
        else:
            self.order, self.descending = order, True
        self.items = []
        self._set_columns(self.app.size.width, force=True)
        self.load(reset=True)

    # ---- actions ------------------------------------------------------------
    def action_focus_filter(self) -> None:
        self.query_one("#filter", Input).focus()

    def action_focus_table(self) -> None:
        self.table.focus()

    def action_reload(self) -> None:
        self.load(reset=True)

    def action_toggle_live(self) -> None:
        self.live = not self.live
        self.app.set_health(live=self.live)  # type: ignore[attr-defined]
        self.app.say("live tail on" if self.live else "live tail off")  # type: ignore[attr-defined]
        if self.live:
            self._tail()
        self._update_status()

    def action_cycle_sort(self) -> None:
        orders = [c.order for c in self.columns if c.order is not None]
        index = orders.index(self.order) if self.order in orders else -1
        self.order = ""  # so that _sort takes the next one as new
        self._sort(orders[(index + 1) % len(orders)])

    def action_flip_order(self) -> None:
        self._sort(self.order)

    def action_copy_id(self) -> None:
        key = self._cursor_key()
        if key:
            self.app.copy_to_clipboard(key)
            self.app.say(f"copied trace id {key}")  # type: ignore[attr-defined]

    def _tail(self) -> None:
        # Live tail refreshes the first page while the cursor is near the top.
        if self.live and not self.loading and self.is_current:
            table = self.table
            if table.cursor_row < LOAD_MORE_AT:
                self.load(reset=True)
