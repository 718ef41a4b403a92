"""The span tree with a waterfall timeline in each row.

Every row is ``name │ bar │ duration``: the bar is placed by the span's start
and sized by its duration against the whole trace, and the name column is
narrowed by the row's indentation so that all bars line up.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Final

from rich.style import Style
from rich.text import Text
from textual.binding import Binding
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from chainsight.framework.model import children_by_parent
from chainsight.tui import format as fmt
from chainsight.tui.safe_text import clean

KIND_STYLE: Final = {
    "llm": "magenta", "chain": "cyan", "tool": "yellow", "retriever": "green",
    "agent": "blue", "embedding": "bright_green", "parser": "bright_cyan",
    "prompt": "bright_blue", "other": "white",
}
KIND_ICON: Final = {
    "llm": "◆", "chain": "○", "tool": "⚙", "retriever": "⌕", "agent": "◎",
    "embedding": "≈", "parser": "¶", "prompt": "✎", "other": "·",
}
DURATION_W: Final = 8


@dataclass(frozen=True, slots=True)
class Row:
    """What a tree node holds: its span (None for the trace row) and its depth."""

    span: Any
    depth: int
    name: str
    kind: str
    start_ns: int
    end_ns: int | None
    error: bool


def bar(start_ns: int, end_ns: int | None, t0: int, t1: int, width: int, style: str) -> Text:
    """A bar ``width`` cells wide, placed by start and sized by duration in [t0, t1]."""
    text = Text(no_wrap=True)
    if width <= 0:
        return text
    total = max(1, t1 - t0)
    begin = min(width - 1, max(0, int((start_ns - t0) / total * width)))
    end = end_ns if end_ns is not None else t1
    length = max(1, round((end - start_ns) / total * width))
    length = min(length, width - begin)
    text.append("·" * begin, style="grey23")
    text.append("█" * length, style=style)
    text.append("·" * (width - begin - length), style="grey23")
    return text


class SpanTree(Tree[Row]):
    """A :class:`Tree` of spans whose labels carry aligned waterfall bars."""

    ICON_NODE = "▸ "
    ICON_NODE_EXPANDED = "▾ "
    # Tree has no collapse/expand actions (their names changed between Textual
    # majors), so these two are defined here; tests check every binding's action.
    BINDINGS: ClassVar = [
        Binding("left", "collapse_or_parent", "Collapse"),
        Binding("right", "expand_or_child", "Expand"),
    ]
    DEFAULT_CSS = """
    SpanTree { scrollbar-size-horizontal: 0; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(Text("trace"), id=id)
        self.show_root = False  # the trace itself is the screen's header
        self.guide_depth = 2
        self.t0 = 0
        self.t1 = 1
        self.span_count = 0

    def load(self, trace: Any, spans: Sequence[Any]) -> None:
        """Replace the tree with ``spans`` (children under parents, by start time)."""
        self.clear()
        ends = [s.end_ns for s in spans if s.end_ns is not None]
        self.t0 = min([trace.start_ns, *(s.start_ns for s in spans)])
        self.t1 = max([trace.end_ns or self.t0 + 1, *ends])
        self.root.data = Row(None, 0, trace.name or trace.trace_id, "trace", self.t0, self.t1,
                             trace.status == "error")
        self.root.set_label(clean(trace.name or trace.trace_id, single_line=True))
        children = children_by_parent(spans)
        stack: list[tuple[TreeNode[Row], Any, int]] = [
            (self.root, span, 1) for span in reversed(children.get(None, []))
        ]
        while stack:
            parent_node, span, depth = stack.pop()
            kids = children.get(span.span_id, [])
            row = Row(span, depth, span.name, span.kind, span.start_ns, span.end_ns,
                      span.status == "error")
            label = clean(span.name, single_line=True)
            if kids:
                node = parent_node.add(label, row, expand=True)
                stack.extend((node, kid, depth + 1) for kid in reversed(kids))
            else:
                node = parent_node.add_leaf(label, row)
        self.span_count = len(spans)
        self.root.expand()

    # ---- keys -------------------------------------------------------------
    def action_collapse_or_parent(self) -> None:
        """Collapse the node under the cursor, or go to its parent if it is collapsed."""
        node = self.cursor_node
        if node is None:
            return
        if node.allow_expand and node.is_expanded:
            node.collapse()
        elif node.parent is not None and node.parent is not self.root:
            self.move_cursor(node.parent)

    def action_expand_or_child(self) -> None:
        """Expand the node under the cursor, or go to its first child if it is expanded."""
        node = self.cursor_node
        if node is None or not node.allow_expand:
            return
        if not node.is_expanded:
            node.expand()
        elif node.children:
            self.move_cursor(node.children[0])

    # ---- rendering -------------------------------------------------------
    def process_label(self, label: str | Text) -> Text:
        # Tree parses str labels as markup; span names are untrusted.
        text = label if isinstance(label, Text) else Text(clean(label, single_line=True))
        return text.split()[0] if text.plain else text

    def _columns(self, depth: int) -> tuple[int, int, int]:
        """(available width after guides, name width, bar width) for a row at ``depth``."""
        width = max(10, self.scrollable_content_region.width)
        avail = width - depth * self.guide_depth
        name_col = max(12, min(48, int(width * 0.42)))
        name_w = max(4, name_col - depth * self.guide_depth - 2)
        bar_w = avail - 2 - name_w - 1 - DURATION_W - 1
        return avail, name_w, bar_w if bar_w >= 8 else 0

    def render_label(self, node: TreeNode[Row], base_style: Style, style: Style) -> Text:
        row = node.data
        if row is None:
            return super().render_label(node, base_style, style)
        _, name_w, bar_w = self._columns(row.depth)
        if node.allow_expand:
            prefix = Text(self.ICON_NODE_EXPANDED if node.is_expanded else self.ICON_NODE,
                          style=base_style + Style(bold=True))
        else:
            prefix = Text("  ")
        kind_style = "red" if row.error else KIND_STYLE.get(row.kind, "white")
        name = Text(KIND_ICON.get(row.kind, "■") + " ", style=kind_style)
        name.append(node._label.plain)
        name.truncate(name_w, overflow="ellipsis", pad=True)
        name.stylize(style)
        seconds = None if row.end_ns is None else (row.end_ns - row.start_ns) / 1e9
        out = Text.assemble(prefix, name, no_wrap=True)
        if bar_w:
            out.append(" ")
            out.append_text(bar(row.start_ns, row.end_ns, self.t0, self.t1, bar_w, kind_style))
        out.append(" " + fmt.duration(seconds).rjust(DURATION_W), style="red" if row.error else "")
        return out

    def get_label_width(self, node: TreeNode[Row]) -> int:
        row = node.data
        return self._columns(row.depth if row else 0)[0]
