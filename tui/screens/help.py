"""The help screen (``?``): every key of every screen."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

KEYS = (
    ("Everywhere", (
        ("1 2 3 4 5", "Traces · Metrics · Alerts · Experiments · Sessions"),
        ("ctrl+p", "command palette"),
        ("?", "this help"),
        ("q", "quit"),
    )),
    ("Traces", (
        ("/", "focus the filter bar (Enter applies, Esc returns)"),
        ("Enter", "open the highlighted trace"),
        ("PgDn / ctrl+end", "scroll; the next page loads at the end"),
        ("s / o", "sort by the next column / flip ascending-descending"),
        ("click header", "sort by that column"),
        ("t", "live tail: follow new traces"),
        ("y", "copy the trace id"),
    )),
    ("Trace", (
        ("↑ ↓", "move in the span tree"),
        ("← →", "collapse or go to parent / expand or go to first child"),
        ("Tab", "switch between tree and detail pane"),
        ("+ / -", "thumbs up / down"),
        ("r", "rate 1..5"),
        ("c", "comment"),
        ("e", "export as JSON (owner-only, in the user data folder)"),
        ("y", "copy the trace as JSON"),
        ("p", "replay the selected model call (llm span): model, temperature, side by side"),
        ("Esc", "back to the traces"),
    )),
    ("Metrics", (
        ("[ / ]", "shorter / longer time range"),
        ("g", "group by model on/off"),
    )),
    ("Alerts", (("Enter", "the traces behind the alert"), ("t", "traces filtered by its labels"),
                ("f", "firing only"))),
    ("Experiments", (("Space", "mark for comparison"), ("Enter", "compare side by side"))),
    ("Sessions", (("Enter", "the conversation, turn by turn"), ("Enter on a turn", "its trace"),
                  ("Esc", "back to the sessions"))),
    ("Replay", (("Enter", "run it (again) with the model and temperature of the fields"),
                ("Ctrl+O", "open the trace the replay was recorded as"), ("Esc", "close"))),
    ("Filter syntax", (
        ("status:error", "field:value — status, model, user, session, tag, name"),
        ("cost>0.01", "comparisons on cost, latency (2s, 300ms), tokens"),
        ('"free text"', "search names, errors and content"),
    )),
)


def help_text() -> Text:
    out = Text()
    for section, keys in KEYS:
        out.append(f"{section}\n", style="bold cyan")
        for key, what in keys:
            out.append(f"  {key:>14}  ", style="bold")
            out.append(f"{what}\n")
        out.append("\n")
    out.rstrip()
    return out


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar = [
        Binding("escape", "dismiss", "Close"),
        Binding("question_mark", "dismiss", "Close", key_display="?"),
        Binding("q", "dismiss", "Close", show=False),
    ]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help"):
            yield Static(help_text())
