"""Text plots: block-character series charts and horizontal bars."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from rich.text import Text
from textual.geometry import Size
from textual.widget import Widget

from chainsight.tui.safe_text import safe

BLOCKS: Final = " ▁▂▃▄▅▆▇█"


def resample(values: Sequence[float | None], width: int) -> list[float | None]:
    """Fit ``values`` into ``width`` columns (max of each group; gaps stay None)."""
    if width <= 0 or not values:
        return []
    if len(values) <= width:
        return list(values)
    out: list[float | None] = []
    n = len(values)
    for i in range(width):
        group = [v for v in values[i * n // width : (i + 1) * n // width] if v is not None]
        out.append(max(group) if group else None)
    return out


def chart(values: Sequence[float | None], width: int, height: int, style: str = "cyan") -> Text:
    """A filled column chart ``height`` lines high, scaled to the maximum value."""
    columns = resample(values, width)
    top = max((v for v in columns if v is not None), default=0.0) or 1.0
    lines = []
    for row in range(height):
        line = Text()
        floor = (height - 1 - row) * 8
        for value in columns:
            if value is None:
                line.append("·" if row == height - 1 else " ", style="dim")
                continue
            eighths = round(max(0.0, value) / top * height * 8)
            if value > 0:
                eighths = max(1, eighths)
            line.append(BLOCKS[max(0, min(8, eighths - floor))], style=style)
        lines.append(line)
    return Text("\n").join(lines)


def hbars(rows: Sequence[tuple[str, float, str]], width: int, style: str = "magenta") -> Text:
    """One labelled horizontal bar per row: (label, value, formatted value)."""
    if not rows:
        return Text("no data", style="dim")
    top = max(v for _, v, _ in rows) or 1.0
    label_w = min(24, max(len(r[0]) for r in rows))
    value_w = max(len(r[2]) for r in rows)
    bar_w = max(4, width - label_w - value_w - 2)
    out = []
    for label, value, shown in rows:
        line = safe(label, single_line=True, max_len=label_w)
        line.pad_right(label_w - line.cell_len + 1)
        filled = round(max(0.0, value) / top * bar_w)
        line.append("█" * filled, style=style)
        line.append(" " * (bar_w - filled + 1))
        line.append(shown.rjust(value_w))
        out.append(line)
    return Text("\n").join(out)


class Plot(Widget):
    """A titled series chart that fits its width; values are set, not queried."""

    DEFAULT_CSS = """
    Plot { height: 5; padding: 0 1; }
    """

    def __init__(self, title: str, *, style: str = "cyan", id: str | None = None) -> None:
        super().__init__(id=id, classes="plot")
        self.title = title
        self.style = style
        self.values: list[float | None] = []
        self.summary = ""

    def set_series(self, values: Sequence[float | None], summary: str = "") -> None:
        self.values = list(values)
        self.summary = summary
        self.refresh(layout=False)

    def render(self) -> Text:
        width = max(1, self.content_region.width)
        height = max(1, self.content_region.height - 1)
        head = Text(self.title, style="bold")
        if self.summary:
            head.append("  ")
            head.append(self.summary, style="dim")
        head.truncate(width)
        if not self.values:
            return Text.assemble(head, "\n", Text("no data in this range", style="dim"))
        return Text.assemble(head, "\n", chart(self.values, width, height, self.style))




class Bars(Widget):
    """A titled :func:`hbars` chart drawn at the width it is given (a scrollbar may take some)."""

    DEFAULT_CSS = """
    Bars { height: auto; }
    """

    def __init__(self, title: str, *, style: str = "magenta", id: str | None = None) -> None:
        super().__init__(id=id)
        self.title = title
        self.style = style
        self.rows: list[tuple[str, float, str]] = []

    def set_rows(self, rows: Sequence[tuple[str, float, str]]) -> None:
        self.rows = list(rows)
        self.refresh(layout=True)

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return 1 + max(1, len(self.rows))

    def render(self) -> Text:
        width = max(20, self.content_region.width)
        return Text.assemble(Text(f"{self.title}\n", style="bold"),
                             hbars(self.rows, width, self.style))
