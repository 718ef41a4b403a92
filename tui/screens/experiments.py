"""Experiments side by side per dataset item, with score deltas."""

from __future__ import annotations

from typing import Any, ClassVar

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

# Nothing creates experiments yet: say so, and name no command or API that
# does not exist (tests check every command and [plugins.X] table shown here).
EMPTY = """No experiments.

Evaluation is not built yet: Chainsight has no command or API that runs a
chain over a dataset, so nothing writes experiments to the store and this
screen stays empty for now.

When it lands, each run will show up here, and two runs can be marked and
compared item by item, with the change in every score."""


def _get(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)


def _metrics(summary: Any) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in (summary or {}).items():
        if isinstance(value, dict):
            value = value.get("mean", value.get("avg"))
        if isinstance(value, int | float):
            out[str(key)] = float(value)
    return out


class ExperimentsScreen(Screen[None]):
    AUTO_FOCUS = "#experiments"
    BINDINGS: ClassVar = [
        Binding("space", "mark", "Mark"),
        # priority: above the table's own Enter, so the footer shows what it does
        Binding("enter", "compare", "Compare", priority=True),
        Binding("ctrl+r", "reload", "Reload", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.experiments: list[Any] = []
        self.marked: list[str] = []

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("mark", "compare"):
            return bool(self.experiments)  # no dead keys in the footer of an empty screen
        return True

    def compose(self) -> ComposeResult:
        yield HealthBar("Experiments")
        yield DataTable(id="experiments", cursor_type="row", zebra_stripes=True)
        yield Static(Text("loading…", style="dim"), id="experiments-body")
        yield KeyBar()

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
        table.clear(columns=True)
        names = sorted({k for e in experiments for k in _metrics(_get(e, "summary"))})[:6]
        for title in ("", "name", "dataset", "created", "status", *names):
            table.add_column(safe(title, single_line=True, max_len=20))
        now = self.app.now()  # type: ignore[attr-defined]
        for exp in experiments:
            eid = str(_get(exp, "experiment_id"))
            metrics = _metrics(_get(exp, "summary"))
            table.add_row(
                Text("●" if eid in self.marked else " ", style="bold cyan"),
                safe(_get(exp, "name"), "bold", single_line=True, max_len=40),
                safe(_get(exp, "dataset_id"), single_line=True, max_len=20, placeholder="—"),
                Text(fmt.ago(_get(exp, "created_ns"), now)),
                safe(_get(exp, "status"), single_line=True, max_len=10),
                *(Text(fmt.number(metrics.get(n)), justify="right") for n in names),
                key=eid,
            )
        body.update(Text("Space marks an experiment; Enter compares the two marked ones "
                         "(or the highlighted one with the previous run).", style="dim"))

    def _cursor_id(self) -> str | None:
        table = self.query_one("#experiments", DataTable)
        if not table.row_count:
            return None
        return str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)

    def action_mark(self) -> None:
        eid = self._cursor_id()
        if eid is None:
            return
        if eid in self.marked:
            self.marked.remove(eid)
        else:
            self.marked = [*self.marked[-1:], eid]
        self._apply(self.experiments)

    @on(DataTable.RowSelected, "#experiments")
    def _selected(self, event: DataTable.RowSelected) -> None:
        self.action_compare()

    def action_compare(self) -> None:
        ids = list(self.marked)
        if len(ids) < 2:
            eid = self._cursor_id()
            order = [str(_get(e, "experiment_id")) for e in self.experiments]
            if eid is None or eid not in order:
                return
            index = order.index(eid)
            ids = [order[index + 1], eid] if index + 1 < len(order) else [eid]
        self._compare(ids)

    @work(thread=True, exclusive=True, group="experiments", exit_on_error=False)
    def _compare(self, ids: list[str]) -> None:
        app: Any = self.app
        try:
            results = {eid: app.data.experiment_results(eid) for eid in ids}
        except StoreDown as error:
            app.call_from_thread(app.store_down, error)
            return
        app.call_from_thread(self._show_compare, ids, results)

    def _show_compare(self, ids: list[str], results: dict[str, list[Any]]) -> None:
        by_item: dict[str, dict[str, Any]] = {}
        for eid in ids:
            for result in results.get(eid, []):
                by_item.setdefault(str(_get(result, "item_id")), {})[eid] = result
        out = Text(f"{len(by_item)} items · " + " vs ".join(clean(short_id(i)) for i in ids) + "\n",
                   style="bold")
        for item_id, row in list(by_item.items())[:200]:
            out.append(clean(short_id(item_id), single_line=True).ljust(11), style="dim")
            scores = [_metrics(_get(row.get(eid), "scores")) for eid in ids]
            for eid, s in zip(ids, scores, strict=True):
                out.append_text(safe(_get(row.get(eid), "output"), single_line=True, max_len=30,
                                     placeholder="—"))
                out.append(" " + " ".join(f"{clean(k, single_line=True)}={fmt.number(v)}"
                                          for k, v in s.items()) + " │ ",
                           style="dim" if eid == ids[0] else "")
            if len(scores) == 2:
                for key in sorted(set(scores[0]) & set(scores[1])):
                    delta = scores[1][key] - scores[0][key]
                    out.append(f" Δ{clean(key, single_line=True)} {delta:+.2f}",
                               style="green" if delta > 0 else "red" if delta < 0 else "dim")
            out.append("\n")
        self.query_one("#experiments-body", Static).update(out)

    def action_reload(self) -> None:
        self.load()
