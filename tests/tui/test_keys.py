"""Every key a screen shows does something, and every binding names a real action.

A binding whose action does not exist on its target does nothing, silently
(Textual 8 dropped the ``Tree`` actions the span tree's left/right named). The
first test presses every key each screen shows and checks that something
visible changed; the second checks every binding of every node on every screen
against the installed Textual.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from test_app import make_app, screen_text, settle
from textual.actions import parse
from textual.binding import Binding
from textual.dom import DOMNode
from textual.pilot import Pilot
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Static, Tree
from tui_fake_store import FakeStore
from tui_seed import NOW_NS

from chainsight.framework.model import Trace
from chainsight.storage.evaluation import Experiment, ExperimentResult
from chainsight.tui.app import ChainsightApp
from chainsight.tui.data import DataSource
from chainsight.tui.screens.alert_traces import AlertTracesScreen
from chainsight.tui.screens.alerts import AlertsScreen
from chainsight.tui.screens.experiments import ExperimentsScreen
from chainsight.tui.screens.help import HelpScreen
from chainsight.tui.screens.metrics import MetricsScreen
from chainsight.tui.screens.prompts import CommentScreen, RatingScreen
from chainsight.tui.screens.trace_detail import TraceDetailScreen
from chainsight.tui.screens.traces import TracesScreen
from chainsight.tui.widgets.keybar import KeyBar, shown_bindings
from chainsight.tui.widgets.waterfall import SpanTree


@dataclass(frozen=True)
class Place:
    """A screen and the keys, pressed from the root of ``mode``, that reach it."""

    name: str
    mode: str
    keys: tuple[str, ...]
    kind: type[Screen[Any]]


PLACES = (
    Place("traces", "traces", (), TracesScreen),
    Place("trace", "traces", ("enter",), TraceDetailScreen),
    Place("rating", "traces", ("enter", "r"), RatingScreen),
    Place("comment", "traces", ("enter", "c"), CommentScreen),
    Place("metrics", "metrics", (), MetricsScreen),
    Place("alerts", "alerts", (), AlertsScreen),
    Place("alert traces", "alerts", ("enter",), AlertTracesScreen),
    Place("experiments", "experiments", (), ExperimentsScreen),
    Place("help", "traces", ("question_mark",), HelpScreen),
)


def _state(app: ChainsightApp, notes: list[str]) -> tuple[Any, ...]:
    """Everything a key could visibly change."""
    screen = app.screen
    cursors: list[Any] = []
    for data_table in screen.query(DataTable):
        cursors.append((data_table.id, data_table.cursor_coordinate, data_table.row_count))
    for tree in screen.query(Tree):
        expanded = []
        stack = [tree.root]
        while stack:
            node = stack.pop()
            expanded.append(node.is_expanded)
            stack.extend(node.children)
        cursors.append((tree.id, tree.cursor_line, tuple(expanded)))
    return (app.current_mode, len(app.screen_stack), id(screen), id(app.focused),
            screen_text(app), tuple(cursors), len(notes), app.clipboard, app.return_code)


def _recording(app: ChainsightApp) -> list[str]:
    """Record every notification the app shows (the message text)."""
    notes: list[str] = []
    notify = app.notify

    def record(message: str, *args: Any, **kwargs: Any) -> None:
        notes.append(str(message))
        notify(message, *args, **kwargs)

    app.notify = record  # type: ignore[method-assign]
    return notes


async def _reach(pilot: Pilot[Any], place: Place, focus_id: str | None,
                 last: Screen[Any] | None = None) -> Screen[Any]:
    """Go to ``place`` from wherever the last key left the app (``last``: where it was)."""
    app = pilot.app
    if last is not None and app.screen is last:
        if focus_id is not None and (app.focused is None or app.focused.id != focus_id):
            last.query_one(f"#{focus_id}").focus()
            await pilot.pause()
        return last
    while app.screen.is_modal:
        app.pop_screen()
    await pilot.pause()
    app.switch_mode(place.mode)
    while len(app.screen_stack) > 1:
        app.pop_screen()
    await settle(pilot)
    for key in place.keys:
        await pilot.press(key)
        await settle(pilot)
    if focus_id is not None:
        app.screen.query_one(f"#{focus_id}").focus()
        await pilot.pause()
    assert isinstance(app.screen, place.kind), f"{place.name}: reached {app.screen!r}"
    return app.screen


def _footer_keys(screen: Screen[Any]) -> list[tuple[str, str, bool]]:
    """(key, action, enabled) of every key the screen shows, quit last."""
    keys = [(b.key, b.action, enabled) for b, enabled in shown_bindings(screen)]
    if screen.query(KeyBar):
        keys.append((screen.app.COMMAND_PALETTE_BINDING, "command_palette", True))
    return sorted(keys, key=lambda k: k[1] == "quit")


def _experiments_app() -> ChainsightApp:
    experiments = [
        Experiment(f"exp-{i}", f"prompt v{i}", "faq", "done", NOW_NS - i * 10**9,
                   summary={"scores": {"accuracy": {"mean": 0.5 + i / 10, "low": 0.4, "high": 0.9, "n": 2}}})
        for i in range(3)
    ]

    def results(experiment_id: str) -> list[ExperimentResult]:
        worse = experiment_id == "exp-0"  # the newest got item-1 wrong
        return [ExperimentResult(f"{experiment_id}-{n}", experiment_id, f"item-{n}", f"{n:032x}", f"q{n}",
                                 "a", f"answer {n}", None, 1.0, None, None, None,
                                 {"accuracy": 0.0 if worse and n == 1 else 1.0}, NOW_NS)
                for n in range(2)]

    class WithExperiments(FakeStore):
        def list_experiments(self) -> list[Experiment]:
            return experiments

        def list_experiment_results(self, experiment_id: str) -> list[ExperimentResult]:
            return results(experiment_id)

    traces = [Trace(f"{i:032x}", f"t{i}", "ok", NOW_NS - i * 10**9, NOW_NS - i * 10**8)
              for i in range(3)]
    data = DataSource("fake://", store_factory=lambda url: WithExperiments(traces))
    return ChainsightApp("fake://", now_ns=NOW_NS, data=data, store_label="fake")


async def _press_every_shown_key(app: ChainsightApp, place: Place) -> list[str]:
    """Press each key ``place`` shows, from a fresh arrival; return the keys pressed."""
    notes = _recording(app)
    pressed: list[str] = []
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        screen = await _reach(pilot, place, None)
        focus_id = app.focused.id if app.focused is not None else None
        keys = _footer_keys(screen)
        assert keys, f"{place.name} shows no keys"
        for key, action, enabled in keys:
            if not enabled:  # shown dimmed: only the key of the screen you are on
                assert action == f"show('{place.mode}')" and len(app.screen_stack) == 1, (
                    f"{place.name}: {key} ({action}) is shown disabled")
                continue
            screen = await _reach(pilot, place, focus_id, screen)
            before = _state(app, notes)
            await pilot.press(key)
            await pilot.pause()  # a key acts at once or starts a worker that reports back
            await app.workers.wait_for_complete()
            await pilot.pause()
            assert _state(app, notes) != before, f"{place.name}: {key} ({action}) changed nothing"
            pressed.append(key)
            if app.return_code is not None:
                break
    return pressed


@pytest.mark.parametrize("place", PLACES, ids=lambda p: p.name)
async def test_every_shown_key_changes_something(place: Place, fresh_url: str,
                                                 tmp_path: Path) -> None:
    app = make_app(fresh_url, NOW_NS, export_dir=tmp_path / "exports")
    pressed = await _press_every_shown_key(app, place)
    if not issubclass(place.kind, ModalScreen):
        assert "q" in pressed  # the app-wide keys are shown (and work) on every main screen


async def test_experiment_keys_change_something() -> None:
    place = Place("experiments", "experiments", (), ExperimentsScreen)
    pressed = await _press_every_shown_key(_experiments_app(), place)
    assert {"space", "enter"} <= set(pressed)


async def test_empty_experiments_show_no_dead_keys(store_url: str) -> None:
    app = make_app(store_url, NOW_NS)
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(pilot)
        await pilot.press("4")
        await settle(pilot)
        actions = {b.action for b, _ in shown_bindings(app.screen)}
        assert not actions & {"mark", "compare"}


async def test_left_and_right_collapse_and_expand_the_span_tree(store_url: str) -> None:
    app = make_app(store_url, NOW_NS)
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        tree = app.screen.query_one(SpanTree)
        root = tree.cursor_node
        assert root is not None and root.children and root.is_expanded
        await pilot.press("left")
        assert not root.is_expanded
        await pilot.press("right")
        assert root.is_expanded
        await pilot.press("right")  # expanded already: to the first child
        assert tree.cursor_node is root.children[0]
        await pilot.press("left")  # a leaf: to its parent
        assert tree.cursor_node is root


def _bindings(node: DOMNode) -> list[Binding]:
    """Every binding ``node`` declares, its own and its classes' (Textual merges them)."""
    out: list[Binding] = []
    for cls in type(node).__mro__:
        out.extend(Binding.make_bindings(vars(cls).get("BINDINGS", [])))
    return out


def _node_missing(node: DOMNode, app: Any, screen: Any, focused: Any) -> list[str]:
    """The bindings of ``node`` whose action is not a method of their target.

    Textual runs ``_action_NAME`` or ``action_NAME`` of the target (its own
    widgets use the first); a binding with neither does nothing, silently.
    """
    targets = {"app": app, "screen": screen, "focused": focused, "": node}
    missing = []
    for binding in _bindings(node):
        namespace, name, _params = parse(binding.action)
        target = targets.get(namespace)
        if not any(callable(getattr(target, f"{prefix}{name}", None))
                   for prefix in ("action_", "_action_")):
            missing.append(f"{type(node).__name__}: {binding.key} -> {binding.action}")
    return missing


def _missing_actions(app: ChainsightApp) -> list[str]:
    screen = app.screen
    return [line for node in [app, *screen.walk_children(with_self=True)]
            for line in _node_missing(node, app, screen, app.focused)]


async def test_every_binding_names_an_action_that_exists(store_url: str) -> None:
    app = make_app(store_url, NOW_NS)
    checked: set[type[Screen[Any]]] = set()
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(pilot)
        for place in PLACES:
            await _reach(pilot, place, None)
            assert _missing_actions(app) == [], place.name
            checked.add(type(app.screen))
        await pilot.press("ctrl+p")
        await pilot.pause()
        assert _missing_actions(app) == []
    assert len(checked) == len(PLACES)


def test_action_check_catches_a_missing_action() -> None:
    """The check above reports a binding like the old dead ``right`` of the span tree."""

    class Broken(Static):
        BINDINGS = [Binding("right", "expand_node", "Expand"), Binding("x", "app.nothing", "x")]

    node = Broken()
    assert _node_missing(node, ChainsightApp("sqlite://"), None, None) == [
        "Broken: right -> expand_node", "Broken: x -> app.nothing"]
    assert _node_missing(SpanTree(), None, None, None) == []


@pytest.mark.parametrize("place", PLACES[:2] + PLACES[4:7], ids=lambda p: p.name)
async def test_help_and_quit_visible_at_80_columns(place: Place, store_url: str) -> None:
    app = make_app(store_url, NOW_NS)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await _reach(pilot, place, None)
        footer = "\n".join(screen_text(app).splitlines()[-2:])
        for shown in (" ?  Help ", " q  Quit "):
            assert shown in footer, f"{place.name}: {shown!r} not in the footer:\n{footer}"
        for binding, _enabled in shown_bindings(app.screen):
            assert f" {app.get_key_display(binding)} " in footer, binding
