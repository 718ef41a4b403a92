"""One trace: span tree with waterfall, span detail pane, feedback, export, copy, replay."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Static, Tree

from chainsight.framework.replay import ReplayError, messages_of
from chainsight.tui import format as fmt
from chainsight.tui.data import StoreDown
from chainsight.tui.export import trace_json
from chainsight.tui.safe_text import clean, safe
from chainsight.tui.screens.prompts import CommentScreen, DatasetNameScreen, RatingScreen
from chainsight.tui.screens.replay import ReplayScreen
from chainsight.tui.widgets.health import HealthBar
from chainsight.tui.widgets.keybar import KeyBar
from chainsight.tui.widgets.span_detail import SpanDetail, span_text
from chainsight.tui.widgets.waterfall import Row, SpanTree


def trace_header(trace: Any, scores: list[Any]) -> Text:
    out = Text()
    out.append_text(safe(trace.name, "bold", single_line=True, max_len=80,
                         placeholder="(unnamed)"))
    out.append("  ")
    out.append(clean(trace.status), style="bold red" if trace.status == "error" else "green")
    out.append("  ")
    out.append_text(safe(trace.trace_id, "dim", single_line=True))
    out.append("\n")
    out.append(f"{fmt.clock(trace.start_ns)} UTC · {fmt.duration(trace.duration_s)} · "
               f"{trace.span_count} spans · {trace.llm_count} LLM · "
               f"{fmt.tokens(trace.input_tokens)}→{fmt.tokens(trace.output_tokens)} tokens · "
               f"{fmt.cost(trace.cost_usd)} · TTFT {fmt.duration(trace.ttft_s)}")
    if trace.user_id:
        out.append(" · user ")
        out.append_text(safe(trace.user_id, single_line=True, max_len=40))
    feedback = [s for s in scores if s.source == "feedback" and s.span_id is None]
    if feedback:
        out.append(" · feedback ")
        out.append(" ".join(
            ("👍" if (s.value or 0) > 0 else "👎") if s.name == "thumbs" else
            (f"★{fmt.number(s.value)}" if s.name == "rating" else "✎") for s in feedback[-4:]))
    return out


class TraceDetailScreen(Screen[None]):
    AUTO_FOCUS = "#spans"
    BINDINGS: ClassVar = [
        Binding("escape", "back", "Back"),
        Binding("plus", "thumbs(1)", "👍", key_display="+"),
        Binding("minus", "thumbs(-1)", "👎", key_display="-"),
        Binding("r", "rate", "Rate"),
        Binding("c", "comment", "Comment"),
        Binding("e", "export", "Export"),
        Binding("y", "copy", "Copy"),
        Binding("a", "add_to_dataset", "Dataset"),
        # Shown (and active) only while a model call (llm span) is selected: check_action.
        Binding("p", "replay", "Replay"),
        Binding("tab", "app.focus_next", "Pane", show=False),
    ]

    def __init__(self, trace_id: str) -> None:
        super().__init__()
        self.trace_id = trace_id
        self.detail: Any = None
        self.samples: list[Any] = []
        self.selected: Any = None

    def compose(self) -> ComposeResult:
        yield HealthBar("Trace")
        yield Static(Text(f"loading {clean(self.trace_id)}…", style="dim"), id="trace-header")
        with Horizontal(id="trace-body"):
            yield SpanTree(id="spans")
            yield SpanDetail(id="span-detail")
        yield KeyBar()

    def on_mount(self) -> None:
        self.load()

    def load(self) -> None:
        self._fetch()

    @work(thread=True, exclusive=True, group="trace", exit_on_error=False)
    def _fetch(self) -> None:
        app: Any = self.app
        try:
            detail = app.data.get_trace(self.trace_id)
        except StoreDown as error:
            app.call_from_thread(app.store_down, error)
            app.call_from_thread(self.set_timer, app.retry_interval, self.load)
            return
        app.call_from_thread(self._apply, detail)

    def _apply(self, detail: Any) -> None:
        self.app.store_ok()  # type: ignore[attr-defined]
        header = self.query_one("#trace-header", Static)
        if detail is None:
            header.update(Text(f"trace {clean(self.trace_id)} not found", style="red"))
            return
        first_load = self.detail is None
        self.detail, self.samples = detail, list(detail.samples)
        self.trace_id = detail.trace.trace_id
        header.update(trace_header(detail.trace, list(detail.scores)))
        tree = self.query_one(SpanTree)
        if first_load:
            tree.load(detail.trace, list(detail.spans))
            if tree.root.children:
                tree.move_cursor(tree.root.children[0])
            self._show(tree.root.children[0].data if tree.root.children else None)
        else:
            self._show(self.selected)

    @on(Tree.NodeHighlighted, "#spans")
    def _highlighted(self, event: Tree.NodeHighlighted[Row]) -> None:
        self._show(event.node.data)

    def _show(self, row: Row | None) -> None:
        if self.detail is None:
            return
        self.selected = row
        self.refresh_bindings()  # `p` Replay follows the selection
        pane = self.query_one(SpanDetail)
        if row is None or row.span is None:
            pane.show(trace_header(self.detail.trace, list(self.detail.scores)))
            return
        span = row.span
        scores = [s for s in self.detail.scores
                  if s.span_id == span.span_id or (s.span_id is None and span.parent_id is None)]
        pane.show(span_text(span, scores, self.samples))

    # ---- actions ------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "replay":
            row = self.selected
            return row is not None and row.span is not None and row.span.kind == "llm"
        return True

    def action_replay(self) -> None:
        row = self.selected
        if row is None or row.span is None or row.span.kind != "llm":
            self.app.say("select a model call (llm span) to replay", "warning")  # type: ignore[attr-defined]
            return
        try:
            messages_of(row.span)
        except ReplayError as error:
            self.app.say(str(error), "error")  # type: ignore[attr-defined]
            return
        mock = getattr(self.app, "replay_mock_response", None)
        settings = getattr(self.app, "settings", None)
        self.app.push_screen(ReplayScreen(row.span, mock_response=mock, settings=settings))

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_thumbs(self, value: int) -> None:
        self.app.send_feedback(self.trace_id, thumbs=value)  # type: ignore[attr-defined]

    def action_rate(self) -> None:
        def done(rating: int | None) -> None:
            if rating is not None:
                self.app.send_feedback(self.trace_id, rating=rating)  # type: ignore[attr-defined]
        self.app.push_screen(RatingScreen(), done)

    def action_comment(self) -> None:
        def done(comment: str | None) -> None:
            if comment:
                self.app.send_feedback(self.trace_id, comment=comment)  # type: ignore[attr-defined]
        self.app.push_screen(CommentScreen(), done)

    def action_add_to_dataset(self) -> None:
        def done(name: str | None) -> None:
            if name and self.detail is not None:
                self.app.add_to_dataset(self.detail, name)  # type: ignore[attr-defined]
        self.app.push_screen(DatasetNameScreen(), done)

    def action_export(self) -> None:
        if self.detail is not None:
            self.app.export_trace(self.detail)  # type: ignore[attr-defined]

    def action_copy(self) -> None:
        if self.detail is None:
            return
        self.app.copy_to_clipboard(trace_json(self.detail))
        self.app.say(f"copied trace {self.trace_id} as JSON")  # type: ignore[attr-defined]
