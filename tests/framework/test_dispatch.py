"""Guarded dispatch: a raising plugin is isolated, counted and degraded."""

from __future__ import annotations

import logging
import time

import pytest

from chainsight.framework import hookimpl
from chainsight.framework.dispatch import GuardedDispatcher
from chainsight.framework.model import Span
from chainsight.framework.plugin_manager import new_plugin_manager


class Raiser:
    name = "raiser"

    def __init__(self) -> None:
        self.calls = 0

    @hookimpl
    def process_span(self, span: Span) -> None:
        self.calls += 1
        raise RuntimeError("boom")


class Tagger:
    name = "tagger"

    @hookimpl
    def process_span(self, span: Span) -> None:
        span.add_tags(["seen"])


def make(*plugins: object, strict: bool = False, degrade_after: int = 3) -> GuardedDispatcher:
    pm = new_plugin_manager()
    for p in plugins:
        pm.register(p, name=getattr(p, "name", type(p).__name__))
    return GuardedDispatcher(pm, strict=strict, degrade_after=degrade_after)


def test_raising_plugin_does_not_stop_others_and_degrades(caplog: pytest.LogCaptureFixture) -> None:
    raiser = Raiser()
    dispatcher = make(raiser, Tagger())
    with caplog.at_level(logging.WARNING, logger="chainsight.plugins"):
        for _ in range(5):
            span = Span("s")
            dispatcher.call("process_span", span=span)
            assert span.tags == ["seen"]
    health = dispatcher.health["raiser"]
    assert health.degraded and health.status == "degraded"
    assert raiser.calls == 3  # skipped once degraded
    assert dispatcher.errors_total == 3
    assert "RuntimeError: boom" in (health.last_error or "")
    # logged once when it first failed, once when degraded: not on every call
    messages = [r.getMessage() for r in caplog.records]
    assert sum("failed in process_span" in m for m in messages) == 1
    assert sum("degraded" in m for m in messages) == 1
    assert not dispatcher.health["tagger"].degraded


class Cleaner:
    """A fail-closed plugin, like redaction, that fails on every span."""

    name = "cleaner"
    FAIL_CLOSED = True

    def __init__(self) -> None:
        self.calls = 0

    @hookimpl(tryfirst=True)
    def process_span(self, span: Span) -> None:
        self.calls += 1
        raise RuntimeError("cannot clean")


def test_fail_closed_plugin_is_never_degraded_and_its_failures_are_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cleaner, raiser = Cleaner(), Raiser()
    dispatcher = make(cleaner, raiser, Tagger(), degrade_after=2)
    assert dispatcher.fail_closed("cleaner")
    assert not dispatcher.fail_closed("raiser") and not dispatcher.fail_closed("no such plugin")
    with caplog.at_level(logging.WARNING, logger="chainsight.plugins"):
        for _ in range(60):
            dispatcher.call("process_span", span=Span("s"))
        function = dict(dispatcher.implementations("process_span"))["cleaner"]
        results = list(dispatcher.map("cleaner", function, [Span("s") for _ in range(60)], what="process_span"))
    assert [ok for _, ok, _ in results] == [False] * 60  # called, and failed, every time
    health = dispatcher.health["cleaner"]
    assert cleaner.calls == 120
    assert (health.failures, health.degraded, health.status) == (120, False, "active")
    assert "RuntimeError: cannot clean" in (health.last_error or "")
    assert {h.name: h.failures for h in dispatcher.snapshot()}["cleaner"] == 120
    assert dispatcher.health["raiser"].degraded  # the others degrade as before
    # Reported at the 1st, 10th and 100th failure, with its name; never silent, never every time.
    lines = [r for r in caplog.records if "'cleaner'" in r.getMessage()]
    assert [r.levelno for r in lines] == [logging.ERROR] * 3
    assert ["1 failure " in lines[0].getMessage(), "10 failures" in lines[1].getMessage(),
            "100 failures" in lines[2].getMessage()] == [True] * 3
    assert lines[0].exc_info is not None and "withheld" in lines[0].getMessage()
    assert not any("degraded" in r.getMessage() for r in lines)


def test_fail_closed_is_read_from_a_module_plugin_too() -> None:
    import types

    module = types.ModuleType("closed_module")
    module.FAIL_CLOSED = True  # type: ignore[attr-defined]
    pm = new_plugin_manager()
    pm.register(module, name="closed_module")
    pm.register(Tagger(), name="tagger")
    dispatcher = GuardedDispatcher(pm)
    assert dispatcher.fail_closed("closed_module") and not dispatcher.fail_closed("tagger")


def test_success_resets_consecutive_failures() -> None:
    class Flaky:
        name = "flaky"
        n = 0

        @hookimpl
        def process_span(self, span: Span) -> None:
            self.n += 1
            if self.n % 2:
                raise ValueError("odd")

    dispatcher = make(Flaky(), degrade_after=2)
    for _ in range(10):
        dispatcher.call("process_span", span=Span("s"))
    assert not dispatcher.health["flaky"].degraded
    assert dispatcher.health["flaky"].failures == 5


def test_strict_mode_reraises() -> None:
    dispatcher = make(Raiser(), strict=True)
    with pytest.raises(RuntimeError, match="boom"):
        dispatcher.call("process_span", span=Span("s"))


def _spin(seconds: float) -> int:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass
    return 7


def test_guard_budget_counts_slow_calls() -> None:
    dispatcher = make(degrade_after=2)
    dispatcher.guard("slowpoke", lambda: time.sleep(0.01), budget_s=0.002)  # blocked 5 budgets: fine
    assert dispatcher.health["slowpoke"].slow == 0
    ok, result = dispatcher.guard("slowpoke", lambda: _spin(0.01), budget_s=0.002)  # CPU
    assert ok and result == 7
    dispatcher.guard("slowpoke", lambda: time.sleep(0.03), budget_s=0.002)  # blocked 15 budgets
    assert dispatcher.health["slowpoke"].slow == 2
    assert dispatcher.health["slowpoke"].degraded
    assert dispatcher.guard("slowpoke", lambda: 1) == (False, None)


class _Hog:
    """A thread that holds the GIL in Python bytecode, as a user's chain would."""

    def __enter__(self) -> None:
        import threading

        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.busy)
        self.thread.start()

    def busy(self) -> None:
        while not self.stop.is_set():
            sum(range(1000))

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


BUDGET = 0.01  # the blocking limit, SLOW_WALL_FACTOR budgets, is far above a few switch intervals


def _cheap(walls: list[float]) -> int:
    """1 ms of CPU around three GIL hand-offs (sleep(0), as I/O would): next
    to the hog each costs a 5 ms switch interval, so the wall time passes the
    budget though the call is cheap."""
    t0 = time.perf_counter()
    for _ in range(3):
        time.sleep(0)
    result = _spin(0.001)
    walls.append(time.perf_counter() - t0)
    return result


def test_guard_budget_ignores_time_spent_waiting_for_the_gil() -> None:
    """A cheap check on a worker starved by a busy caller thread is not slow."""
    dispatcher = make(degrade_after=2)
    walls: list[float] = []
    with _Hog():
        for _ in range(10):
            dispatcher.guard("cheap", _cheap, walls, budget_s=BUDGET)
    assert max(walls) > BUDGET  # the waits really were longer than the budget
    assert (dispatcher.health["cheap"].calls, dispatcher.health["cheap"].slow) == (10, 0)


def test_map_accounts_like_guard_per_item() -> None:
    dispatcher = make(degrade_after=2)

    def check(n: int) -> int:
        if n in (2, 3):
            raise ValueError(f"bad {n}")
        return n * 10

    got = list(dispatcher.map("mapper", check, [1, 2, 3, 4, 5], what="check_span"))
    # Two failures in a row degrade it: the rest is yielded, not called.
    assert got == [(1, True, 10), (2, False, None), (3, False, None), (4, False, None), (5, False, None)]
    health = dispatcher.health["mapper"]
    assert (health.calls, health.failures, health.degraded) == (3, 2, True)
    assert health.last_error == "check_span: ValueError: bad 3"
    with pytest.raises(ValueError):
        list(make(strict=True).map("strict", check, [2], what="check_span"))


def test_map_budget_counts_slow_calls_by_cpu_and_by_blocking() -> None:
    dispatcher = make(degrade_after=5)
    calls = [lambda: 1, lambda: _spin(0.01), lambda: 2, lambda: time.sleep(0.03), lambda: 3,
             lambda: time.sleep(0.01)]  # blocked 15 budgets, then 5 (fine)
    got = [r for _, ok, r in dispatcher.map("slowpoke", lambda f: f(), calls, what="check_span",
                                              budget_s=0.002)]
    assert got == [1, 7, 2, None, 3, None]  # slow calls still return their results
    assert dispatcher.health["slowpoke"].slow == 2
    assert dispatcher.health["slowpoke"].last_error is not None
    assert "CPU (budget 2 ms)" in dispatcher.health["slowpoke"].last_error


def test_map_budget_ignores_time_spent_waiting_for_the_gil() -> None:
    dispatcher = make(degrade_after=2)
    walls: list[float] = []
    with _Hog():
        list(dispatcher.map("cheap", lambda _: _cheap(walls), range(10), what="check_span",
                            budget_s=BUDGET))
    assert max(walls) > BUDGET  # the over-budget path really ran
    assert (dispatcher.health["cheap"].calls, dispatcher.health["cheap"].slow) == (10, 0)
