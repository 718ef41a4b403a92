"""Small modal prompts: a 1..5 rating, a comment, a dataset name."""

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


class DatasetNameScreen(ModalScreen[str | None]):
    """Which dataset the trace goes to (a new version of it, or a new dataset)."""

    BINDINGS: ClassVar = [Binding("escape", "dismiss_none", "Cancel")]

    def compose(self) -> ComposeResult:
        with Vertical(classes="prompt"):
            yield Static(Text("Add this trace to the dataset (Enter adds, Esc cancels); its input and "
                              "output become an item's input and expected output"))
            yield Input(placeholder="dataset name", id="dataset-name")

    @on(Input.Submitted, "#dataset-name")
    def _submit(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or None)

    def action_dismiss_none(self) -> None:
        self.dismiss(None)
