"""Markup and ANSI escapes in every untrusted field, through every screen."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from test_app import make_app, screen_text, settle
from tui_seed import HOSTILE

from chainsight.tui.safe_text import clean, safe
from chainsight.tui.screens.alert_traces import AlertTracesScreen
from chainsight.tui.screens.alerts import AlertsScreen
from chainsight.tui.screens.metrics import MetricsScreen
from chainsight.tui.screens.trace_detail import TraceDetailScreen
from chainsight.tui.screens.traces import TracesScreen

LITERALS = ("[/]", "[bold", "[@click=app.quit]x[/]", "␛[31mred␛[0m", r"RTL\u202egnp.exe")
INVISIBLE = "\u061c\u200b\u200e\u200f\u2028\u2029\u202a\u202b\u202c\u202d\u202e\u2060\u2066\u2067\u2068\u2069\ufeff"


def test_safe_never_parses_markup_and_shows_escapes() -> None:
    for raw in HOSTILE:
        text = safe(raw)
        assert isinstance(text, Text)
        assert not text.spans  # no style came from the content
        assert "\x1b" not in text.plain
        assert not set(text.plain) & set(INVISIBLE)
    assert safe("[@click=app.quit]x[/]").plain == "[@click=app.quit]x[/]"
    assert clean("\x1b[31mred\x1b[0m") == "␛[31mred␛[0m"
    assert clean("a\nb", single_line=True) == "a b"
    assert clean("\x9b\x7f") == "�␡"
    assert safe(None, placeholder="—").plain == "—"
    assert clean("x" * 10, max_len=5) == "xxxx…"
    assert clean("RTL\u202egnp.exe") == r"RTL\u202egnp.exe"
    assert clean("ad\u200bmin \u2066x\u2069") == r"ad\u200bmin \u2066x\u2069"
    for char in INVISIBLE:
        assert clean(f"a{char}b", single_line=True) == f"a\\u{ord(char):04x}b"
    assert clean("👨\u200d👩 می\u200cخواهم") == "👨\u200d👩 می\u200cخواهم"  # ZWJ, ZWNJ kept


def _assert_literal(text: str) -> None:
    for literal in LITERALS:
        assert literal in text, f"{literal!r} not shown literally"
    assert "\x1b" not in text
    assert not set(text) & set(INVISIBLE), "a bidi or zero-width character reached the screen"


async def test_hostile_text_through_every_screen(hostile: tuple[str, str], now_ns: int) -> None:
    url, trace_id = hostile
    app = make_app(url, now_ns)
    async with app.run_test(size=(200, 50)) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, TracesScreen)
        text = screen_text(app)
        _assert_literal(text)  # name and user id columns

        await pilot.press("enter")  # the hostile trace is the newest
        await settle(pilot)
        screen: Any = app.screen
        assert isinstance(screen, TraceDetailScreen) and screen.trace_id == trace_id
        _assert_literal(screen_text(app))  # header, span names in the tree
        bodies = []
        for _ in range(screen.detail.trace.span_count + 1):
            bodies.append(str(screen.query_one("#span-body").render()))
            await pilot.press("down")
            await pilot.pause()
        everything = "\n".join(bodies)
        _assert_literal(everything)  # inputs, outputs, errors, model, messages, scores
        assert "error" in everything

        await pilot.press("escape", "2")
        await settle(pilot)
        assert isinstance(app.screen, MetricsScreen)
        assert "[/] [bold [@click=" in screen_text(app)  # the model as a group (cut to fit)

        await pilot.press("3")
        await settle(pilot)
        assert isinstance(app.screen, AlertsScreen)
        _assert_literal(screen_text(app))  # rule, summary, labels

        await pilot.press("enter")  # the traces behind it: hostile header and trace names
        await settle(pilot)
        assert isinstance(app.screen, AlertTracesScreen)
        assert len(app.screen.traces) == 2
        _assert_literal(screen_text(app))
        await pilot.press("escape", "t")  # the jump builds a filter from hostile labels
        await settle(pilot)
        await pilot.press("4", "question_mark", "escape", "1")
        await settle(pilot)
        assert app.return_code is None and app.is_running


async def test_hostile_notification_and_filter(hostile: tuple[str, str], now_ns: int) -> None:
    url, _ = hostile
    app = make_app(url, now_ns)
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        await pilot.press("slash", *'name:"[@click=app.quit]x[/]"', "enter")
        await settle(pilot)
        app.say("[/] [bold [@click=app.quit]x[/] \x1b[31m")
        await pilot.pause()
        await pilot.press("slash", *"[/] cost>[bold", "enter")
        await settle(pilot)
        assert app.return_code is None and app.is_running
