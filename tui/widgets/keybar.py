"""The footer: the active key bindings, on one line or, when narrow, on two.

Textual's ``Footer`` builds one widget per binding and rebuilds them on every
focus change, which costs more than the whole traces table to style; this draws
the same information as text. When the keys do not fit on one line, bindings of
one ``Binding.Group`` share a label ("1 2 3 4 Screens") and the line wraps
between keys instead of being cut, so the app-wide keys at its end (``?`` help,
``q`` quit) stay visible at 80 columns.
"""

from __future__ import annotations

from itertools import groupby

from rich.text import Text
from textual.binding import Binding
from textual.geometry import Size
from textual.screen import Screen
from textual.widget import Widget


def shown_bindings(screen: Screen[object]) -> list[tuple[Binding, bool]]:
    """(binding, enabled) for each key the footer shows, in the order it shows them."""
    out: list[tuple[Binding, bool]] = []
    seen: set[str] = set()
    for _node, binding, enabled, _tooltip in screen.active_bindings.values():
        if binding.show and binding.action not in seen:
            seen.add(binding.action)
            out.append((binding, enabled))
    return out


class KeyBar(Widget):
    DEFAULT_CSS = """
    KeyBar { height: auto; dock: bottom; background: $panel; color: $text-muted; }
    """

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self._changed)

    def on_unmount(self) -> None:
        self.screen.bindings_updated_signal.unsubscribe(self)

    def _changed(self, screen: Screen[object]) -> None:
        self.refresh(layout=True)

    def _key(self, item: Text, binding: Binding, enabled: bool) -> None:
        item.append(f" {self.app.get_key_display(binding)} ",
                    style="bold reverse" if enabled else "dim reverse")

    def _items(self, grouped: bool) -> list[Text]:
        items = []
        shown = shown_bindings(self.screen)
        for group, members in groupby(shown, key=lambda shown: shown[0].group):
            keys = list(members)
            if grouped and group is not None and len(keys) > 1:
                item = Text()
                for binding, enabled in keys:
                    self._key(item, binding, enabled)
                item.append(f" {group.description} ")
                items.append(item)
                continue
            for binding, enabled in keys:
                item = Text()
                self._key(item, binding, enabled)
                item.append(f" {binding.description} ", style="" if enabled else "dim")
                items.append(item)
        return items

    def _palette_hint(self) -> Text | None:
        palette = next((b for _n, b, _e, _t in self.screen.active_bindings.values()
                        if b.action in ("app.command_palette", "command_palette")), None)
        if palette is None or not self.app.ENABLE_COMMAND_PALETTE:
            return None
        return Text(f" {self.app.get_key_display(palette)} palette ", style="bold")

    def _lines(self, width: int) -> list[Text]:
        items = self._items(grouped=False)
        if sum(item.cell_len for item in items) > width:
            items = self._items(grouped=True)
        lines = [Text(no_wrap=True, overflow="ellipsis")]
        for item in items:
            if lines[-1].cell_len and lines[-1].cell_len + item.cell_len > width:
                lines.append(Text(no_wrap=True, overflow="ellipsis"))
            lines[-1].append_text(item)
        hint = self._palette_hint()  # right-aligned where there is room, never a line of its own
        room = width - lines[-1].cell_len - (hint.cell_len if hint else 0)
        if hint is not None and room > 0:
            lines[-1].append(" " * room)
            lines[-1].append_text(hint)
        return lines

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return len(self._lines(width))

    def render(self) -> Text:
        return Text("\n", no_wrap=True, overflow="ellipsis").join(self._lines(self.size.width))
