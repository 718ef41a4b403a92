"""The header line: store, counts, pipeline health, live-tail state, connection errors."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.widget import Widget

from chainsight.tui.safe_text import safe


@dataclass(frozen=True, slots=True)
class Health:
    store: str = ""
    traces: int | None = None
    firing: int = 0
    dropped: int | None = None
    failed: int | None = None
    dead_lettered: int | None = None
    live: bool = False
    error: str | None = None


class HealthBar(Widget):
    """One line at the top of every screen, drawn from ``app.health``."""

    DEFAULT_CSS = """
    HealthBar { height: 1; background: $panel; color: $text; padding: 0 1; }
    """

    def __init__(self, screen_name: str) -> None:
        super().__init__()
        self.screen_name = screen_name

    def render(self) -> Text:
        h: Health = getattr(self.app, "health", None) or Health()
        out = Text(no_wrap=True, overflow="ellipsis")
        out.append(" Chainsight ", style="bold reverse")
        out.append(f" {self.screen_name} ", style="bold")
        out.append("│ ", style="dim")
        out.append_text(safe(h.store, "dim", single_line=True, max_len=48))
        if h.traces is not None:
            out.append(f"  {h.traces:,} traces")
        if h.firing:
            out.append(f"  ▲ {h.firing} firing", style="bold red")
        if h.dropped is not None or h.failed is not None or h.dead_lettered is not None:
            bad = bool(h.dropped or h.failed or h.dead_lettered)
            text = f"  dropped {h.dropped or 0} failed {h.failed or 0}"
            if h.dead_lettered:
                text += f" refused {h.dead_lettered}"
            out.append(text, style="bold yellow" if bad else "dim")
        if h.live:
            out.append("  ● live", style="bold green")
        if h.error:
            out.append("  ⚠ ", style="bold red")
            out.append_text(safe(h.error, "red", single_line=True, max_len=80))
        return out
