"""Small modal prompts for feedback: a 1..5 rating and a comment."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static


class RatingScreen(ModalScreen[int | None]):
    BINDINGS: ClassVar = [
        *(Binding(str(n), f"rate({n})", str(n), show=False) for n in range(1, 6)),
        Binding("escape", "dismiss_none", "Cancel"),
    ]

    def compose(self) -> ComposeResult:
        with Vertical(classes="prompt"):
            yield Static(Text("Rate this trace: press 1 (bad) … 5 (great), Esc cancels"))

    def action_rate(self, value: int) -> None:
        self.dismiss(value)

    def action_dismiss_none(self) -> None:
        self.dismiss(None)


class CommentScreen(ModalScreen[str | None]):
    BINDINGS: ClassVar = [Binding("escape", "dismiss_none", "Cancel")]

    def compose(self) -> ComposeResult:
        with Vertical(classes="prompt"):
            yield Static(Text("Comment on this trace (Enter saves, Esc cancels)"))
            yield Input(placeholder="what was right or wrong?", id="comment")

    @on(Input.Submitted, "#comment")
    def _submit(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or None)

    def action_dismiss_none(self) -> None:
        self.dismiss(None)
