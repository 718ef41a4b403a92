"""Sessions: conversations (traces grouped by session id) with their totals;
Enter opens one as a transcript, turn by turn, and Enter on a turn opens its
trace. Everything a user or a model said is shown as literal text."""

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
from chainsight.tui.widgets.health import HealthBar
from chainsight.tui.widgets.keybar import KeyBar

EMPTY = ("No sessions. A trace belongs to a session when its root span has a session id: "
         "metadata {'session_id': ...} in a LangChain run's config, session_id= on obs.span(), "
         "or CHAINSIGHT_SESSION.")


def feedback(item: Any) -> str:
    parts = []
    if item.thumbs_up or item.thumbs_down:
        parts.append(f"+{item.thumbs_up} -{item.thumbs_down}")
    if item.mean_rating is not None:
        parts.append(f"★{item.mean_rating:.1f}")
    return " ".join(parts)


class SessionsScreen(Screen[None]):
    AUTO_FOCUS = "#sessions"
    BINDINGS: ClassVar = [
        Binding("enter", "open", "Transcript", priority=True),
        Binding("ctrl+r", "reload", "Reload", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.sessions: list[Any] = []

    def compose(self) -> ComposeResult:
        yield HealthBar("Sessions")
        yield Static(id="sessions-title", markup=False)
        yield DataTable(id="sessions", cursor_type="row", zebra_stripes=True)
        yield KeyBar()

    def on_mount(self) -> None:
        table = self.query_one("#sessions", DataTable)
        for title, width in (("last active", 11), ("session", 24), ("user", 14), ("turns", 5),
                             ("duration", 9), ("tokens", 8), ("cost", 10), ("errors", 6),
                             ("feedback", 12), ("checks failed", 13)):
            table.add_column(title, key=title, width=width)

    def on_screen_resume(self) -> None:
        self.load()

    def load(self) -> None:
        self._fetch()

    @work(thread=True, exclusive=True, group="sessions", exit_on_error=False)
    def _fetch(self) -> None:
        app: Any = self.app
        try:
            sessions = app.data.list_sessions(limit=500)
        except StoreDown as error:
            app.call_from_thread(app.store_down, error)
            app.call_from_thread(self.set_timer, app.retry_interval, self.load)
            return
        app.call_from_thread(self._apply, sessions)

    def _apply(self, sessions: list[Any]) -> None:
        self.app.store_ok()  # type: ignore[attr-defined]
        self.sessions = sessions
        now = self.app.now()  # type: ignore[attr-defined]
        table = self.query_one("#sessions", DataTable)
        table.clear()
        for s in sessions:
            table.add_row(
                Text(fmt.ago(s.last_ns, now)),
                safe(s.session_id, "bold", single_line=True, max_len=60),
                safe(s.user_id, single_line=True, max_len=40, placeholder="—"),
                Text(str(s.turns), justify="right"),
                Text(fmt.duration(s.duration_s), justify="right"),
                Text(fmt.tokens(s.total_tokens), justify="right"),
                Text(fmt.cost(s.cost_usd), justify="right"),
                Text(str(s.errors), justify="right", style="red" if s.errors else "dim"),
                Text(feedback(s)),
                Text(str(s.check_failures), justify="right",
                     style="yellow" if s.check_failures else "dim"),
                key=s.session_id,
            )
        title = Text(f" {len(sessions)} sessions", style="bold")
        title.append(" · most recently active first · Enter: the conversation", style="dim")
        self.query_one("#sessions-title", Static).update(title if sessions else Text(EMPTY, style="dim"))

    @on(DataTable.RowSelected, "#sessions")
    def _selected(self, event: DataTable.RowSelected) -> None:
        self.action_open()

    def action_open(self) -> None:
        row = self.query_one("#sessions", DataTable).cursor_row
        if 0 <= row < len(self.sessions):
            self.app.push_screen(SessionScreen(self.sessions[row]))

    def action_reload(self) -> None:
        self.load()


def turn_text(turn: Any, message_text: Any) -> Text:
    """One turn of the transcript: what the user said and what came back."""
    text = Text()
    text.append(f"turn {turn.index}", style="bold")
    text.append(f"  {fmt.clock(turn.start_ns)}  {fmt.duration(turn.duration_s)}  ", style="dim")
    text.append(turn.status, style="red" if turn.status == "error" else "green")
    text.append("\nuser       ", style="bold cyan")
    text.append_text(safe(message_text(turn.input)))
    text.append("\nassistant  ", style="bold magenta")
    if turn.output is not None:
        text.append_text(safe(message_text(turn.output)))
    elif turn.error:
        text.append_text(safe(turn.error, "red"))
    return text


class SessionScreen(Screen[None]):
    """One conversation: its totals, its turns (Enter opens a turn's trace) and
    the highlighted turn in full."""

    AUTO_FOCUS = "#turns"
    BINDINGS: ClassVar = [
        Binding("escape", "back", "Back"),
        Binding("enter", "open", "Open trace", priority=True),
    ]

    def __init__(self, session: Any) -> None:
        super().__init__()
        self.session = session
        self.turns: list[Any] = []
        self._message_text: Any = str

    def compose(self) -> ComposeResult:
        yield HealthBar("Session")
        yield Static(id="session-header", markup=False)
        yield DataTable(id="turns", cursor_type="row", zebra_stripes=True)
        yield Static(id="turn-text", markup=False)
        yield KeyBar()

    def on_mount(self) -> None:
        s = self.session
        header = Text()
        header.append_text(safe(s.session_id, "bold", single_line=True))
        header.append("  user ", style="dim")
        header.append_text(safe(s.user_id, single_line=True, placeholder="—"))
        header.append(f"\n{s.turns} turns · {fmt.duration(s.duration_s)} · "
                      f"{fmt.tokens(s.total_tokens)} tokens · {fmt.cost(s.cost_usd)} · "
                      f"{s.errors} errors · feedback {feedback(s) or '—'} · "
                      f"{s.check_failures} checks failed", style="dim")
        self.query_one("#session-header", Static).update(header)
        table = self.query_one("#turns", DataTable)
        for title, width in (("turn", 4), ("time", 8), ("status", 6), ("tokens", 7), ("cost", 10),
                             ("user", 40), ("assistant", 50)):
            table.add_column(title, key=title, width=width)
        self.load()

    def load(self) -> None:
        self._fetch()

    @work(thread=True, exclusive=True, group="session", exit_on_error=False)
    def _fetch(self) -> None:
        from chainsight.storage.sessions import message_text

        app: Any = self.app  # message_text: the words of a turn's input and output
        try:
            turns = app.data.session_turns(self.session.session_id)
        except StoreDown as error:
            app.call_from_thread(app.store_down, error)
            app.call_from_thread(self.set_timer, app.retry_interval, self.load)
            return
        self._message_text = message_text
        app.call_from_thread(self._apply, turns)

    def _apply(self, turns: list[Any]) -> None:
        self.app.store_ok()  # type: ignore[attr-defined]
        self.turns = turns
        words = self._message_text
        table = self.query_one("#turns", DataTable)
        table.clear()
        for t in turns:
            table.add_row(
                Text(str(t.index), justify="right"),
                Text(fmt.clock(t.start_ns)),
                Text(t.status, style="red" if t.status == "error" else "green"),
                Text(fmt.tokens(t.input_tokens + t.output_tokens), justify="right"),
                Text(fmt.cost(t.cost_usd), justify="right"),
                safe(words(t.input), single_line=True, max_len=200),
                safe(words(t.output) if t.output is not None else t.error, single_line=True,
                     max_len=200),
                key=t.trace_id,
            )
        if turns:
            self._show(0)

    @on(DataTable.RowHighlighted, "#turns")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show(event.cursor_row)

    def _show(self, row: int) -> None:
        if 0 <= row < len(self.turns):
            self.query_one("#turn-text", Static).update(turn_text(self.turns[row], self._message_text))

    @on(DataTable.RowSelected, "#turns")
    def _selected(self, event: DataTable.RowSelected) -> None:
        self.action_open()

    def action_open(self) -> None:
        row = self.query_one("#turns", DataTable).cursor_row
        if 0 <= row < len(self.turns):
            self.app.push_screen(TraceDetailScreen(self.turns[row].trace_id))

    def action_back(self) -> None:
        self.app.pop_screen()
