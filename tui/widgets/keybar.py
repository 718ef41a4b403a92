"""A one-line footer of the active key bindings.

Textual's ``Footer`` builds one widget per binding and rebuilds them on every
focus change, which costs more than the whole traces table to style; this draws
the same information as a single line of text.
"""

from __future__ import annotations

from rich.text import Text
from textual.screen import Screen
from textual.widget import Widget


class KeyBar(Widget):
    DEFAULT_CSS = """
    KeyBar { height: 1; dock: bottom; background: $panel; color: $text-muted; }
    """

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self._changed)

    def on_unmount(self) -> None:
        self.screen.bindings_updated_signal.unsubscribe(self)

    def _changed(self, screen: Screen[object]) -> None:
        self.refresh()

    def render(self) -> Text:
        out = Text(no_wrap=True, overflow="ellipsis")
        seen: set[str] = set()
        palette = None
        for _node, binding, enabled, _tooltip in self.screen.active_bindings.values():
            if binding.action == "app.command_palette" or binding.action == "command_palette":
                palette = binding
            if not binding.show or binding.action in seen:
                continue
            seen.add(binding.action)
            key = self.app.get_key_display(binding)
            out.append(f" {key} ", style="bold reverse" if enabled else "dim reverse")
            out.append(f" {binding.description} ", style="" if enabled else "dim")
        if palette is not None and self.app.ENABLE_COMMAND_PALETTE:
            hint = Text(f" {self.app.get_key_display(palette)} palette ", style="bold")
            room = self.size.width - out.cell_len - hint.cell_len
            if room > 0:
                out.append(" " * room)
            out.append_text(hint)
        return out
