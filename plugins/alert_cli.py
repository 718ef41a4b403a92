"""The alerting commands, added by the ``alerts`` plugin.

* ``chainsight alerts [--firing] [--since 1h] [--limit N]``: stored alerts,
  newest first (``inactive`` ones, pending alerts that never fired, only
  with ``--state inactive``).
* ``chainsight alerts test RULE [--at TIME]``: evaluate one rule over the
  store now and print its value per series, whether it would fire, and the
  traces behind it. Records nothing.
* ``chainsight alerts rules``: the rules in effect (built-in ones included),
  which also checks the rule file.
* ``chainsight export prometheus-rules [--output FILE]``: the same rules as
  a Prometheus rule file (:mod:`chainsight.plugins.prometheus_rules`).

Everything CLI-side comes from the public ``chainsight.framework.commands``.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chainsight.framework.commands import (
    MISSING,
    Column,
    CommandError,
    fmt_time,
    open_store,
    parse_time,
    print_json,
    print_table,
    short_id,
)
from chainsight.plugins.alert_rules import (
    ALERTS_SCHEMA,
    Rule,
    RuleError,
    format_duration,
    load_rules,
)

if TYPE_CHECKING:
    from chainsight.framework.config import Settings
    from chainsight.framework.extension import CommandRegistry

STATES = ("pending", "firing", "resolved", "inactive")


def register(cli: CommandRegistry) -> None:
    cli.add("alerts", "stored alerts; `alerts test RULE` evaluates a rule now, `alerts rules` "
            "lists the rules", _configure_alerts, _run_alerts)


# ---- configuration -----------------------------------------------------------------


def alerts_config(settings: Settings | None) -> tuple[dict[str, Any], Path | None]:
    """The validated ``[plugins.alerts]`` table and the folder relative paths start from."""
    from chainsight.framework.config import ConfigError, Settings, resolve_plugin_configs

    settings = settings if settings is not None else Settings()
    others = [name for name in settings.plugins if name != "alerts"]
    try:
        config = resolve_plugin_configs(settings, {"alerts": ALERTS_SCHEMA}, ignore=others)
    except ConfigError as exc:
        raise CommandError(f"[plugins.alerts]: {exc}") from None
    base = settings.path.parent if settings.path is not None else None
    return config.get("alerts", {}), base


def configured_rules(ns: argparse.Namespace) -> tuple[list[Rule], dict[str, Any]]:
    config, base = alerts_config(getattr(ns, "settings", None))
    try:
        return load_rules(config, base), config
    except RuleError as exc:
        raise CommandError("[plugins.alerts]: the rules cannot be used:\n"
                              + "\n".join(exc.problems)) from None


# ---- chainsight alerts ---------------------------------------------------------------


def _configure_alerts(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", nargs="?", choices=("list", "test", "rules"), default="list",
                        help="list (default): stored alerts; test RULE: evaluate a rule now; "
                             "rules: the rules in effect")
    parser.add_argument("rule", nargs="?", metavar="RULE", help="the rule to test")
    parser.add_argument("--firing", action="store_true", help="only alerts firing now")
    parser.add_argument("--state", choices=STATES, help="only alerts in this state")
    parser.add_argument("--since", help="only alerts active since (30m, 2h, 7d, or an ISO date)")
    parser.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    parser.add_argument("--at", metavar="TIME", help="test: evaluate at this time instead of now "
                        "(a duration back from now, or an ISO date)")


def _run_alerts(ns: argparse.Namespace) -> int:
    if ns.action == "rules":
        return _rules(ns)
    if ns.action == "test":
        return _test(ns)
    if ns.rule:
        raise CommandError(f"unexpected argument {ns.rule!r} (did you mean `alerts test {ns.rule}`?)")
    return _list(ns)


ALERT_COLUMNS = (
    Column("started"),
    Column("state"),
    Column("severity"),
    Column("rule", max_width=30, flex=True),
    Column("value", "right"),
    Column("threshold", "right"),
    Column("ended"),
    Column("labels", max_width=40, flex=True),
    Column("traces", "right"),
    Column("summary", max_width=80, flex=True),
)


def _number(value: float | None) -> str:
    return MISSING if value is None else f"{value:.4g}"


def _list(ns: argparse.Namespace) -> int:
    state = "firing" if ns.firing else ns.state
    since_ns = parse_time(ns.since) if ns.since else None
    with open_store(ns.db) as store:
        alerts = store.list_alerts(state=state, limit=max(1, ns.limit), since_ns=since_ns)
    if ns.json:
        print_json({"alerts": [_alert_json(a) for a in alerts]})
        return 0
    if not alerts:
        sys.stderr.write("no alerts match\n" if state or since_ns else "no alerts\n")
        return 0
    rows = [[fmt_time(a.started_ns), a.state, a.severity, a.rule, _number(a.value),
             _number(a.threshold), fmt_time(a.ended_ns) if a.ended_ns else "",
             ", ".join(f"{k}={v}" for k, v in sorted(a.labels.items())),
             str(len(a.trace_ids)) if a.trace_ids else "", a.summary] for a in alerts]
    print_table(ALERT_COLUMNS, rows)
    return 0


def _alert_json(a: Any) -> dict[str, Any]:
    return {"alert_id": a.alert_id, "rule": a.rule, "state": a.state, "severity": a.severity,
            "value": a.value, "threshold": a.threshold, "started_ns": a.started_ns,
            "ended_ns": a.ended_ns, "labels": a.labels, "summary": a.summary,
            "description": a.description, "trace_ids": list(a.trace_ids), "source": a.source}


def _find_rule(rules: list[Rule], name: str | None) -> Rule:
    names = [r.name for r in rules]
    if not name:
        raise CommandError(f"alerts test needs a RULE: one of {', '.join(names) or '(none)'}")
    for rule in rules:
        if rule.name == name:
            return rule
    close = difflib.get_close_matches(name, names, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise CommandError(f"no alert rule {name!r}{hint}; rules: {', '.join(names) or '(none)'}")


TEST_COLUMNS = (
    Column("series", max_width=50, flex=True),
    Column("value", "right"),
    Column("fires"),
    Column("items", "right"),
    Column("traces", max_width=60, flex=True),
)


def _test(ns: argparse.Namespace) -> int:
    import time

    from chainsight.plugins.alert_engine import Evaluator

    rules, config = configured_rules(ns)
    rule = _find_rule(rules, ns.rule)
    now = parse_time(ns.at) if ns.at else time.time_ns()
    with open_store(ns.db) as store:
        evaluator = Evaluator(store, [rule], lambda _alert: None, lambda: now, lease=False,
                              max_trace_ids=int(config.get("max_trace_ids", 20)))
        readings = evaluator.read(rule, now)
    if ns.json:
        print_json({"rule": rule.name, "describe": rule.describe(), "at_ns": now,
                    "series": [{"labels": r.labels, "value": r.value, "fires": r.holds,
                                "count": r.count, "trace_ids": list(r.trace_ids)} for r in readings]})
        return 0
    sys.stdout.write(f"{rule.name}: {rule.describe()}\n")
    if not readings:
        sys.stdout.write(f"no data in the last {format_duration(rule.window_ns)} "
                         f"before {fmt_time(now)}: nothing to evaluate, it does not fire\n")
        return 0
    for_text = f" (after {format_duration(rule.for_ns)})" if rule.for_ns else ""
    rows = [[", ".join(f"{k}={v}" for k, v in sorted(r.labels.items())) or "(all)",
             f"{r.value:.6g}", f"yes{for_text}" if r.holds else "no", str(r.count),
             ", ".join(short_id(t) for t in r.trace_ids[:5])
             + (f" +{len(r.trace_ids) - 5}" if len(r.trace_ids) > 5 else "")] for r in readings]
    print_table(TEST_COLUMNS, rows)
    return 0


RULE_COLUMNS = (
    Column("rule", max_width=30, flex=True),
    Column("severity"),
    Column("definition", max_width=100, flex=True),
)


def _rules(ns: argparse.Namespace) -> int:
    rules, config = configured_rules(ns)
    where = config.get("evaluate", "observer")
    if ns.json:
        print_json({"evaluate": where, "interval": config.get("interval"),
                    "rules": [{"name": r.name, "severity": r.severity, "metric": r.metric,
                               "describe": r.describe(), "labels": dict(r.labels)} for r in rules]})
        return 0
    print_table(RULE_COLUMNS, [[r.name, r.severity, r.describe()] for r in rules])
    sys.stdout.write(f"\n{len(rules)} rule{'s' if len(rules) != 1 else ''}, evaluated "
                     + {"observer": f"every {config.get('interval', '30s')} by the recording "
                                    "application's observer",
                        "serve": "by `chainsight serve`", "off": "nowhere (evaluate = \"off\")"}[where]
                     + "\n")
    return 0


# ---- chainsight export ------------------------------------------------------------------


def configure_rules_export(parser: argparse.ArgumentParser) -> None:
    """``chainsight export prometheus-rules``'s arguments."""
    parser.add_argument("--output", "-o", metavar="FILE", help="write here instead of stdout")
    parser.add_argument("--group", default="chainsight", help="the rule group's name")


def run_rules_export(ns: argparse.Namespace) -> int:
    """``chainsight export prometheus-rules``: the alert rules as a Prometheus rule file."""
    from chainsight.plugins.prometheus_rules import export_rules

    rules, config = configured_rules(ns)
    settings = getattr(ns, "settings", None)
    source = f"[plugins.alerts] of {settings.display_path}" if settings is not None else ""
    exported = export_rules(rules, interval=str(config.get("interval", "30s")), group=ns.group,
                            source=source)
    for name, reason in exported.skipped:
        sys.stderr.write(f"chainsight: warning: rule {name!r} not exported: {reason}\n")
    if ns.output:
        try:
            Path(ns.output).write_text(exported.text, encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"cannot write {ns.output}: {exc.strerror or exc}") from None
        sys.stderr.write(f"wrote {len(rules) - len(exported.skipped)} rules to {ns.output}\n")
    else:
        sys.stdout.write(exported.text)
    return 0
