"""Built-in plugin ``alerts``: alert rules evaluated over the store.

Rules (:mod:`chainsight.plugins.alert_rules`; the built-in ones: p95 latency,
error rate, GPU utilisation, daily spend, one costly request, a monthly
budget) are evaluated every ``interval`` over their window of the store by
:class:`chainsight.plugins.alert_engine.Evaluator`, on a thread of this
plugin's own (``chainsight-alerts``) started when the observer starts, so
spans from every process writing the store count. A lease in the store
makes one process per store evaluate; each transition (pending, firing,
resolved) is recorded with ``observer.record_alert``: stored in the
``alerts`` table, then handed to the notifiers (``alert_changed``).
``evaluate = "serve"`` leaves evaluation to a long-running ``chainsight
serve``; ``"off"`` to nobody.

Commands: ``chainsight alerts [--firing] [--since 1h]``, ``chainsight alerts
test RULE``, ``chainsight alerts rules`` and ``chainsight export
prometheus-rules`` (:mod:`chainsight.plugins.alert_cli`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from chainsight.framework.hookspecs import hookimpl
from chainsight.plugins.alert_rules import (
    ALERTS_SCHEMA,
    Rule,
    RuleError,
    load_rules,
    parse_duration,
    rule_file_path,
)

if TYPE_CHECKING:
    from chainsight.framework.extension import CommandRegistry
    from chainsight.framework.model import Alert
    from chainsight.framework.observer import Observer
    from chainsight.plugins.alert_engine import Evaluator, EvaluatorThread
    from chainsight.storage.query import Store

log = logging.getLogger("chainsight.alerts")

CONFIG_SCHEMA: Final = ALERTS_SCHEMA


def in_memory(url: str) -> bool:
    """A SQLite database in memory: another connection would see another database."""
    return url.startswith("sqlite") and (url.rstrip("/") in ("sqlite:", "sqlite:/", "sqlite://")
                                         or ":memory:" in url or "mode=memory" in url)


class AlertsPlugin:
    """One per observer: its rules and its evaluator thread. ``clock`` (ns
    since the epoch) is the evaluator's; tests pass their own."""

    name = "alerts"  # its [plugins.alerts] table, also when registered by hand
    CONFIG_SCHEMA = CONFIG_SCHEMA

    def __init__(self, clock: Callable[[], int] = time.time_ns) -> None:
        self.clock = clock
        self.rules: list[Rule] = []
        self.thread: EvaluatorThread | None = None

    @hookimpl
    def configure(self, observer: Observer, config: Mapping[str, Any]) -> None:
        path = observer.settings.path
        self.rules = load_rules(config, path.parent if path is not None else None)
        url = observer.storage_url
        if config.get("evaluate", "observer") != "observer" or not self.rules:
            return
        if in_memory(url):
            log.info("alert rules are not evaluated over an in-memory store")
            return
        from chainsight.plugins.alert_engine import EvaluatorThread

        rules, clock = list(self.rules), self.clock

        def make() -> Evaluator:
            from chainsight.storage.query import Store

            return make_evaluator(config, rules, Store(url, create=False), observer.record_alert, clock)

        self.thread = EvaluatorThread(make, interval_s(config))
        self.thread.start()

    @hookimpl
    def shutdown(self, timeout: float) -> None:
        if self.thread is not None:
            self.thread.stop(timeout / 2)

    @hookimpl
    def setup_problems(self, config: Mapping[str, Any]) -> list[str] | None:
        """Rules that cannot be built (a template, a missing key). A relative
        rule file is checked only where it is found next to the configuration
        file this process would read (the hook is not told which file
        ``--config`` named); ``chainsight alerts rules`` checks it for sure."""
        raw = config.get("rule_file")
        if raw and not Path(str(raw)).expanduser().is_absolute():
            found = rule_file_path(config, _config_dir())
            if found is None or not found.is_absolute() or not found.exists():
                config = {k: v for k, v in config.items() if k != "rule_file"}
            else:
                config = {**config, "rule_file": str(found)}
        try:
            load_rules(config, None)
        except RuleError as exc:
            return exc.problems
        return None

    @hookimpl
    def register_commands(self, cli: CommandRegistry) -> None:
        from chainsight.plugins.alert_cli import register

        register(cli)


def make_evaluator(config: Mapping[str, Any], rules: list[Rule], store: Store,
                   emit: Callable[[Alert], None],
                   clock: Callable[[], int] = time.time_ns) -> Evaluator:
    """An evaluator as a validated ``[plugins.alerts]`` table describes it
    (lease, traces kept): what the observer's timer runs, and what a
    long-running ``chainsight serve`` runs with ``evaluate = "serve"``, every
    :func:`interval_s` seconds (see :class:`~chainsight.plugins.alert_engine.EvaluatorThread`)."""
    from chainsight.plugins.alert_engine import Evaluator

    return Evaluator(store, rules, emit, clock,
                     lease_ns=parse_duration(str(config.get("lease", "2m"))),
                     max_trace_ids=int(config.get("max_trace_ids", 20)))


def interval_s(config: Mapping[str, Any]) -> float:
    """Seconds between two evaluations."""
    return parse_duration(str(config.get("interval", "30s"))) / 1e9


def _config_dir() -> Path | None:
    from chainsight.framework.config import ConfigError, find_config_path

    try:
        path = find_config_path()
    except ConfigError:
        return None
    return path.parent.resolve() if path is not None else None


def create_plugin() -> AlertsPlugin:
    """A fresh instance per observer (called by the plugin loader)."""
    return AlertsPlugin()
