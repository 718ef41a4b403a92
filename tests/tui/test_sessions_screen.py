"""The Sessions screen in the real app: 5 lists conversations with their
totals, Enter shows one turn by turn, Enter on a turn opens its trace; what
users and models said is shown literally, never as markup."""

from __future__ import annotations

from pathlib import Path

from test_app import make_app, screen_text, settle, table

from chainsight.framework.model import Score, Span
from chainsight.framework.store_api import WriteBatch
from chainsight.storage.writer import StoreWriter
from chainsight.tui.screens.sessions import SessionScreen, SessionsScreen
from chainsight.tui.screens.trace_detail import TraceDetailScreen

SECOND = 10**9
NOW = 1_800_000_000 * SECOND
HOSTILE = "[bold]loud[/] [/unclosed [@click=app.quit]x"


def _turn(session: str, user: str, at: int, question: str, answer: str) -> Span:
    span = Span("chat-turn", "chain", start_ns=at)
    span.end_ns, span.status = at + SECOND // 2, "ok"
    span.session_id, span.user_id = session, user
    span.inputs, span.outputs = {"question": question}, {"answer": answer}
    return span


def _store(tmp_path: Path) -> tuple[str, list[str]]:
    url = f"sqlite:///{tmp_path / 'sessions.db'}"
    turns = [
        _turn("conv-[red]1[/]", "ann", NOW - 300 * SECOND, "How long is the refund window?",
              "Thirty days."),
        _turn("conv-[red]1[/]", "ann", NOW - 200 * SECOND, HOSTILE, "Opened items: 14 days."),
        _turn("conv-[red]1[/]", "ann", NOW - 100 * SECOND, "Thanks", HOSTILE),
        _turn("conv-2", "ben", NOW - 1000 * SECOND, "Hello?", "Hi."),
    ]
    writer = StoreWriter(url)
    writer.write(WriteBatch(spans=turns, scores=[Score("thumbs", "feedback", turns[0].trace_id,
                                                       value=1.0)]))
    writer.close()
    return url, [t.trace_id for t in turns[:3]]


async def test_sessions_transcript_and_trace(tmp_path: Path) -> None:
    url, turn_ids = _store(tmp_path)
    app = make_app(url, NOW)
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(pilot)
        await pilot.press("5")
        await settle(pilot)
        assert isinstance(app.screen, SessionsScreen)
        assert table(app, "#sessions").row_count == 2
        text = screen_text(app)
        assert "conv-[red]1[/]" in text and "+1 -0" in text  # literal, with its feedback
        assert [s.session_id for s in app.screen.sessions] == ["conv-[red]1[/]", "conv-2"]

        await pilot.press("enter")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, SessionScreen)
        assert [t.trace_id for t in screen.turns] == turn_ids
        assert table(app, "#turns").row_count == 3
        assert "3 turns" in screen_text(app)
        assert "How long is the refund window?" in screen_text(app)  # turn 1 in full

        await pilot.press("down")
        await settle(pilot)
        assert HOSTILE in screen_text(app)  # shown as typed; the click action is not live

        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, TraceDetailScreen)
        assert app.screen.trace_id == turn_ids[1]
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, SessionScreen)
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, SessionsScreen)
        assert app.is_running


async def test_no_sessions_says_how_to_get_them(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    writer = StoreWriter(url)
    span = Span("lonely", "chain", start_ns=NOW - SECOND)
    span.end_ns, span.status = NOW, "ok"
    writer.write(WriteBatch(spans=[span]))
    writer.close()
    app = make_app(url, NOW)
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        await pilot.press("5")
        await settle(pilot)
        assert isinstance(app.screen, SessionsScreen)
        assert "No sessions." in screen_text(app)
