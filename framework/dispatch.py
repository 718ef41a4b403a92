"""Guarded dispatch of pipeline hooks: one failing plugin never stops the others.

pluggy stops a hook call at the first exception, so pipeline hooks are called
implementation by implementation here. A raising plugin is logged once (with
its name and the hook), counted, and after ``degrade_after`` consecutive
failures marked *degraded*: its pipeline hooks are skipped from then on. In
strict mode the exception propagates instead (tests use it).

A plugin that declares ``FAIL_CLOSED = True`` (on its class or module; the
redaction plugin does) is never degraded: skipping it would let through what
it exists to clean. Its failures are counted like any other, and reported at
the 1st, 10th, 100th, 1000th... one; the pipeline asks :meth:`GuardedDispatcher.fail_closed`
and withholds the content such a plugin failed on.

The check hooks (``check_span``, ``trace_finished``) also have a time
budget: a call is *slow* (a failure, counted in ``slow``) when its own
thread's CPU time passes ``budget_s`` (``time.thread_time``: time spent
waiting for the GIL or for I/O is not in it), or when its wall time passes
``SLOW_WALL_FACTOR`` budgets (blocked: I/O, a lock, a sleep; half a second at
the default 50 ms budget). Whatever runs inside the call counts as its own, a
garbage collection it set off included: one such call is one slow count, and
only ``degrade_after`` failures in a row degrade a plugin.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pluggy

log = logging.getLogger("chainsight.plugins")

SLOW_WALL_FACTOR = 10.0
"""A call blocked for more than this many budgets of wall time is slow."""


@dataclass
class PluginHealth:
    """Runtime health of one plugin or registered object."""

    name: str
    calls: int = 0
    failures: int = 0
    consecutive: int = 0
    slow: int = 0
    degraded: bool = False
    last_error: str | None = None

    @property
    def status(self) -> str:
        return "degraded" if self.degraded else "active"


def _over_budget(wall: float, cpu: float, budget_s: float) -> bool:
    return cpu > budget_s or wall > SLOW_WALL_FACTOR * budget_s


class GuardedDispatcher:
    """Calls hook implementations one by one, isolating their failures."""

    def __init__(
        self,
        pm: pluggy.PluginManager,
        *,
        strict: bool = False,
        degrade_after: int = 5,
    ) -> None:
        self.pm = pm
        self.strict = strict
        self.degrade_after = max(1, degrade_after)
        self.health: dict[str, PluginHealth] = {}
        self.errors_total = 0
        self.version = 0  # bumped on every failure, so readers can tell health changed
        self._impls: dict[str, list[tuple[str, Callable[..., Any], tuple[str, ...]]]] = {}
        self._fail_closed: dict[str, bool] = {}
        self._lock = threading.Lock()

    def refresh(self) -> None:
        """Forget cached implementation lists (call after registering a plugin)."""
        self._impls.clear()
        self._fail_closed.clear()

    def fail_closed(self, name: str) -> bool:
        """Whether plugin ``name`` declares ``FAIL_CLOSED = True`` on its class
        or module: it is never degraded, and what it failed on must be
        withheld, never passed on unprocessed. False for names that are not
        registered plugins (checks, exporters...)."""
        known = self._fail_closed.get(name)
        if known is None:
            plugin = self.pm.get_plugin(name)
            known = plugin is not None and getattr(plugin, "FAIL_CLOSED", False) is True
            self._fail_closed[name] = known
        return known

    def implementations_with_args(self, hook: str) -> list[tuple[str, Callable[..., Any], tuple[str, ...]]]:
        """``(plugin name, function, argument names)`` of each implementation
        of ``hook``, in call order; each takes the subset of the hook's
        arguments it names."""
        impls = self._impls.get(hook)
        if impls is None:
            caller = getattr(self.pm.hook, hook)
            # pluggy keeps impls in reverse call order (trylast first). Wrappers
            # never get here: the plugin manager refuses them at registration.
            impls = [
                (impl.plugin_name, impl.function, tuple(impl.argnames))
                for impl in reversed(caller.get_hookimpls())
            ]
            self._impls[hook] = impls
        return impls

    def has_impls(self, hook: str) -> bool:
        return bool(self.implementations_with_args(hook))

    def implementations(self, hook: str) -> list[tuple[str, Callable[..., Any]]]:
        """``(plugin name, function)`` of each implementation of a one-argument
        hook, in call order (for :meth:`map`)."""
        return [(name, function) for name, function, _ in self.implementations_with_args(hook)]

    def _health(self, name: str) -> PluginHealth:
        health = self.health.get(name)
        if health is None:
            with self._lock:
                health = self.health.setdefault(name, PluginHealth(name))
        return health

    def snapshot(self) -> list[PluginHealth]:
        """A copy of every plugin's health, for storing and showing."""
        return [PluginHealth(**vars(h)) for h in list(self.health.values())]

    def call(self, hook: str, *, budget_s: float | None = None,
             announce: Callable[[str], None] | None = None, **kwargs: Any) -> list[Any]:
        """Call every implementation of ``hook`` with the arguments it names
        (after ``announce(plugin name)``, when given); return the non-None results."""
        results: list[Any] = []
        for name, function, argnames in self.implementations_with_args(hook):
            if announce is not None:
                announce(name)
            ok, result = self.guard(name, function, *[kwargs[a] for a in argnames], what=hook,
                                    budget_s=budget_s)
            if ok and result is not None:
                results.append(result)
        return results

    def guard(
        self,
        name: str,
        function: Callable[..., Any],
        *args: Any,
        what: str = "call",
        budget_s: float | None = None,
    ) -> tuple[bool, Any]:
        """Run ``function(*args)`` on behalf of plugin/object ``name``.

        Returns ``(True, result)`` or ``(False, None)`` when it raised or was
        skipped because ``name`` is degraded.
        """
        health = self._health(name)
        if health.degraded:
            return False, None
        health.calls += 1
        if budget_s is not None:
            wall0, cpu0 = time.perf_counter(), time.thread_time()
        try:
            result = function(*args)
        except Exception as exc:
            if self.strict:
                raise
            self._failed(health, what, f"{type(exc).__name__}: {exc}", exc)
            return False, None
        if budget_s is not None:
            wall, cpu = time.perf_counter() - wall0, time.thread_time() - cpu0
            if _over_budget(wall, cpu, budget_s):
                self._slow(health, what, wall, cpu, budget_s)
                return True, result
        health.consecutive = 0
        return True, result

    def map(
        self,
        name: str,
        function: Callable[[Any], Any],
        items: Sequence[Any],
        *,
        what: str,
        budget_s: float | None = None,
    ) -> Iterator[tuple[Any, bool, Any]]:
        """:meth:`guard` for one function over a batch: yields ``(item, ok,
        result)`` for every item, in order (``ok`` False when the call raised
        or ``name`` is degraded, and for every item after it became degraded).

        The same accounting as one :meth:`guard` per item, cheaper: a read of
        the CPU clock costs about a microsecond, so calls are timed by the
        wall clock, and the thread's CPU clock is read only after a call whose
        wall time passed the budget (below it, neither limit can be passed).
        That call's CPU time is the thread's CPU time since the previous read
        less the wall time of everything else since then: never more than it
        used, so a cheap call is never blamed.
        """
        health = self._health(name)
        clock, cpu_clock, strict = time.perf_counter, time.thread_time, self.strict
        timed = budget_s is not None
        limit = budget_s if budget_s is not None else 0.0
        mark_wall, mark_cpu = clock(), cpu_clock() if timed else 0.0
        for item in items:
            if health.degraded:
                yield item, False, None
                continue
            health.calls += 1
            start = clock()
            try:
                result = function(item)
            except Exception as exc:
                if strict:
                    raise
                self._failed(health, what, f"{type(exc).__name__}: {exc}", exc)
                yield item, False, None
                continue
            if timed:
                end = clock()
                wall = end - start
                if wall > limit:
                    cpu_now = cpu_clock()
                    cpu = (cpu_now - mark_cpu) - ((end - mark_wall) - wall)
                    mark_wall, mark_cpu = end, cpu_now
                    if _over_budget(wall, cpu, limit):
                        self._slow(health, what, wall, cpu, limit)
                        yield item, True, result
                        continue
            health.consecutive = 0
            yield item, True, result

    def _slow(self, health: PluginHealth, what: str, wall: float, cpu: float, budget_s: float) -> None:
        health.slow += 1
        self._failed(
            health, what,
            f"took {wall * 1000:.0f} ms, {max(0.0, cpu) * 1000:.0f} ms CPU (budget {budget_s * 1000:.0f} ms)",
            None,
        )

    def _failed(self, health: PluginHealth, what: str, message: str, exc: BaseException | None) -> None:
        self.errors_total += 1
        self.version += 1
        health.failures += 1
        health.consecutive += 1
        health.last_error = f"{what}: {message}"
        if self.fail_closed(health.name):
            if _power_of_ten(health.failures):  # rate-limited, never silent
                log.error(
                    "fail-closed plugin %r failed in %s (%d failure%s so far; last: %s); it is never "
                    "skipped, and the content of what it failed on is withheld, not stored",
                    health.name, what, health.failures, "" if health.failures == 1 else "s", message,
                    exc_info=exc if health.failures == 1 else None,
                )
            return
        if health.failures == 1:
            log.warning("plugin %r failed in %s: %s", health.name, what, message, exc_info=exc)
        if health.consecutive >= self.degrade_after and not health.degraded:
            health.degraded = True
            log.error(
                "plugin %r degraded after %d consecutive failures (last: %s); its pipeline hooks are skipped",
                health.name,
                health.consecutive,
                message,
            )


def _power_of_ten(n: int) -> bool:
    """1, 10, 100, 1000...: when a failure that keeps recurring is reported again."""
    while n >= 10 and n % 10 == 0:
        n //= 10
    return n == 1
