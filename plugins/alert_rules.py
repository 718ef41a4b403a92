"""Alert rules: their configuration schema, the built-in defaults, durations
and summary templates.

A rule measures one metric over a sliding window of the store, compares it
with a threshold, and fires once the comparison has held for ``for``
(Prometheus' alerting-rule semantics; see :mod:`chainsight.plugins.alert_engine`).
``[plugins.alerts] rules`` (or a TOML ``rule_file`` with ``[[rules]]``)
adds rules; a rule named like a built-in one changes only the keys it gives
(``{ name = "error_rate", threshold = 0.05 }``), and ``enabled = false``
removes it.
"""

from __future__ import annotations

import re
import string
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from jsonschema import Draft202012Validator

from chainsight.framework import units
from chainsight.storage.alert_queries import SpanSelect

# ---- durations ------------------------------------------------------------------

_UNIT_NS: Final = {"ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9,
                   "d": 86400 * 10**9, "w": 7 * 86400 * 10**9, "y": 365 * 86400 * 10**9}
DURATION_PATTERN: Final = r"^([0-9]+(ms|s|m|h|d|w|y))+$"


def parse_duration(text: str) -> int:
    """A Prometheus duration (``30s``, ``5m``, ``1h30m``, ``7d``: whole
    numbers, so the rule can be exported) in nanoseconds."""
    text = text.strip()
    if not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(f"not a duration: {text!r} (use e.g. 30s, 5m, 1h30m, 1d)")
    return round(units.parse_duration(text) * 1e9)


def format_duration(ns: int) -> str:
    """Nanoseconds as a Prometheus duration, largest units first (``1h30m``,
    ``30d``; weeks and years only when they divide it; ``0s``)."""
    if ns <= 0:
        return "0s"
    for unit in ("y", "w"):
        if ns % _UNIT_NS[unit] == 0:
            return f"{ns // _UNIT_NS[unit]}{unit}"
    out = []
    for unit in ("d", "h", "m", "s", "ms"):
        count, ns = divmod(ns, _UNIT_NS[unit])
        if count:
            out.append(f"{count}{unit}")
    return "".join(out) or "0s"


# ---- metrics --------------------------------------------------------------------

QUANTILES: Final = ("p50", "p75", "p90", "p95", "p99", "p99.9")
QUANTILE_METRICS: Final = tuple(f"{field}_{q}" for field in ("latency", "ttft", "tpot") for q in QUANTILES)
PLAIN_METRICS: Final = (
    "error_rate", "refusal_rate", "check_failure_rate", "request_cost", "spend",
    "tokens_per_s", "requests_per_s", "gpu_utilization", "gpu_memory_used_bytes",
    "score_mean", "drift", "dropped_spans", "failed_spans",
)
METRICS: Final = QUANTILE_METRICS + PLAIN_METRICS
SPAN_METRICS: Final = frozenset(QUANTILE_METRICS) | {
    "error_rate", "request_cost", "spend", "tokens_per_s", "requests_per_s"}
SCORE_METRICS: Final = frozenset({"refusal_rate", "check_failure_rate", "score_mean"})
SAMPLE_METRICS: Final = frozenset({"gpu_utilization", "gpu_memory_used_bytes"})
COUNTER_METRICS: Final = frozenset({"dropped_spans", "failed_spans"})
DRIFT_FIELDS: Final = ("latency", "ttft", "tpot", "input_tokens", "output_tokens", "tokens", "cost",
                       "score")
OPS: Final = (">", ">=", "<", "<=", "==", "!=")
SEVERITIES: Final = ("info", "warning", "critical")
SPAN_KINDS: Final = ("llm", "chain", "tool", "retriever", "agent", "embedding", "parser", "prompt",
                     "other", "any")
GROUP_LABELS: Final = ("model", "provider", "span")

# What each metric is, in words (``chainsight alerts rules`` and default summaries).
METRIC_TEXT: Final = {
    "latency": "latency", "ttft": "time to first token", "tpot": "time per output token",
    "error_rate": "error rate", "refusal_rate": "refusal rate",
    "check_failure_rate": "failure rate of check {check}", "request_cost": "cost of one request",
    "spend": "spend", "tokens_per_s": "tokens/s", "requests_per_s": "requests/s",
    "gpu_utilization": "GPU {gpu_id} utilisation", "gpu_memory_used_bytes": "GPU {gpu_id} memory used",
    "score_mean": "mean score {check}", "drift": "drift of {field}",
    "dropped_spans": "spans dropped", "failed_spans": "spans that failed",
}


# ---- the configuration schema ------------------------------------------------------

_DURATION: Final = {"type": "string", "pattern": DURATION_PATTERN}
RULE_PROPERTIES: Final[dict[str, Any]] = {
    "name": {"type": "string", "pattern": r"^[A-Za-z_][A-Za-z0-9_]*$",
             "description": "the alert's name (Prometheus' alertname)"},
    "enabled": {"type": "boolean", "description": "false removes the rule (a built-in one too)"},
    "metric": {"enum": list(METRICS), "description": "what is measured"},
    "window": {**_DURATION, "description": "the sliding window measured (default 5m)"},
    "op": {"enum": list(OPS), "description": "comparison with the threshold (default >)"},
    "threshold": {"type": "number"},
    "for": {**_DURATION, "description": "how long the comparison must hold before firing (default 0s)"},
    "keep_firing_for": {**_DURATION, "description": "how long it keeps firing after the comparison "
                                                    "stopped holding (default 0s)"},
    "severity": {"enum": list(SEVERITIES), "description": "default warning"},
    "labels": {"type": "object", "additionalProperties": {"type": "string"},
               "description": "labels added to the alert (routing in Alertmanager)"},
    "summary": {"type": "string", "description": "template: {value}, {threshold}, {window}, "
                                                 "{rule}, {model} and other labels"},
    "description": {"type": "string", "description": "template, as summary"},
    "model": {"type": "string"},
    "provider": {"type": "string"},
    "span": {"type": "string", "description": "span name, or a glob (*, ?)"},
    "tag": {"type": "string", "description": "a tag of the trace"},
    "user": {"type": "string", "description": "the user of the span or its trace"},
    "kind": {"enum": list(SPAN_KINDS), "description": "span kind measured (default llm; any: all)"},
    "group_by": {"type": "array", "items": {"enum": list(GROUP_LABELS)}, "uniqueItems": True,
                 "description": "one alert per value of these (default none; drift: model)"},
    "check": {"type": "string", "minLength": 1,
              "description": "the check or score name (check_failure_rate, score_mean, drift of a score)"},
    "field": {"enum": list(DRIFT_FIELDS), "description": "drift: what is compared"},
    "reference_window": {**_DURATION, "description": "drift: the window before `window` compared "
                                                     "with it (default 7d)"},
    "method": {"enum": ["psi", "ks"], "description": "drift: population stability index (default) "
                                                     "or the two-sample Kolmogorov-Smirnov statistic"},
    "min_samples": {"type": "integer", "minimum": 1,
                    "description": "drift: values needed in each window (default 50)"},
    "bins": {"type": "integer", "minimum": 2, "maximum": 100, "description": "drift, psi: default 10"},
}

DEFAULT_RULES: Final[tuple[dict[str, Any], ...]] = (
    {"name": "p95_latency", "metric": "latency_p95", "window": "5m", "op": ">", "threshold": 2.0,
     "for": "5m", "severity": "warning",
     "summary": "p95 latency of model calls is {value:.2f}s over the last {window} "
                "(threshold {threshold:g}s)"},
    {"name": "error_rate", "metric": "error_rate", "window": "5m", "op": ">", "threshold": 0.01,
     "for": "5m", "severity": "critical",
     "summary": "{value:.1%} of model calls failed over the last {window} (threshold {threshold:.0%})"},
    {"name": "gpu_utilization_low", "metric": "gpu_utilization", "window": "5m", "op": "<",
     "threshold": 50.0, "for": "10m", "severity": "warning",
     "summary": "GPU {gpu_id} is {value:.0f}% utilised on average over the last {window} "
                "(threshold {threshold:g}%)"},
    {"name": "daily_spend", "metric": "spend", "window": "1d", "op": ">", "threshold": 1000.0,
     "severity": "warning",
     "summary": "spend of the last {window} is ${value:,.2f} (threshold ${threshold:,.0f})"},
    {"name": "expensive_request", "metric": "request_cost", "window": "5m", "op": ">",
     "threshold": 1.0, "severity": "warning",
     "summary": "a model call cost ${value:,.2f} in the last {window} (threshold ${threshold:,.2f})"},
    {"name": "monthly_budget", "metric": "spend", "window": "30d", "op": ">", "threshold": 10000.0,
     "severity": "critical",
     "summary": "spend of the last {window} is ${value:,.2f}, over the budget of ${threshold:,.0f}"},
)
DEFAULT_NAMES: Final = tuple(r["name"] for r in DEFAULT_RULES)

RULE_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name"],
    "properties": RULE_PROPERTIES,
    "allOf": [
        # A new rule says what it measures; one named like a built-in changes it.
        {"if": {"properties": {"name": {"not": {"enum": list(DEFAULT_NAMES)}},
                               "enabled": {"not": {"const": False}}}},
         "then": {"required": ["metric", "threshold"]}},
        {"if": {"required": ["metric"],
                "properties": {"metric": {"enum": ["check_failure_rate", "score_mean"]}}},
         "then": {"required": ["check"]}},
        {"if": {"required": ["metric"], "properties": {"metric": {"const": "drift"}}},
         "then": {"required": ["field"]}},
        {"if": {"required": ["field"], "properties": {"field": {"const": "score"}}},
         "then": {"required": ["check"]}},
    ],
}

RULES_SCHEMA: Final[dict[str, Any]] = {"type": "array", "items": RULE_SCHEMA}
RULE_FILE_SCHEMA: Final[dict[str, Any]] = {
    "type": "object", "additionalProperties": False, "properties": {"rules": RULES_SCHEMA},
}


# The [plugins.alerts] table.
ALERTS_SCHEMA: Final[dict[str, Any]] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "default_rules": {"type": "boolean", "default": True,
                          "description": "include the built-in rules (p95 latency, error rate, "
                                         "GPU utilisation, spend)"},
        "rules": {**RULES_SCHEMA, "default": [], "description": "more rules, or changes to the built-in ones"},
        "rule_file": {"type": "string", "minLength": 1,
                      "description": "a TOML file of [[rules]] (relative to this file)"},
        "evaluate": {"enum": ["observer", "serve", "off"], "default": "observer",
                     "description": "where rules are evaluated: in the application's observer, "
                                    "only in `chainsight serve`, or nowhere"},
        "interval": {**_DURATION, "default": "30s", "description": "time between two evaluations"},
        "lease": {**_DURATION, "default": "2m",
                  "description": "how long the evaluating process holds the store's lease "
                                 "without renewing it, before another one takes over"},
        "max_trace_ids": {"type": "integer", "minimum": 0, "maximum": 1000, "default": 20,
                          "description": "traces kept with an alert (the slowest, failed, costliest)"},
    },
}

# ---- rules --------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """One alert rule, durations in nanoseconds."""

    name: str
    metric: str
    threshold: float
    op: str = ">"
    window_ns: int = 300 * 10**9
    for_ns: int = 0
    keep_firing_for_ns: int = 0
    severity: str = "warning"
    labels: Mapping[str, str] = field(default_factory=dict)
    summary: str = ""
    description: str = ""
    select: SpanSelect = field(default_factory=SpanSelect)
    group_by: tuple[str, ...] = ()
    check: str | None = None
    field: str | None = None
    reference_window_ns: int = 7 * 86400 * 10**9
    method: str = "psi"
    min_samples: int = 50
    bins: int = 10

    @property
    def quantile(self) -> float | None:
        """0.95 for ``latency_p95``; None for other metrics."""
        if self.metric not in QUANTILE_METRICS:
            return None
        return float(self.metric.rsplit("_p", 1)[1]) / 100.0

    @property
    def base_metric(self) -> str:
        """``latency`` for ``latency_p95``; the metric itself otherwise."""
        return self.metric.rsplit("_p", 1)[0] if self.metric in QUANTILE_METRICS else self.metric

    @property
    def window(self) -> str:
        return format_duration(self.window_ns)

    def holds(self, value: float) -> bool:
        """Whether ``value`` meets the rule's comparison (a NaN never does)."""
        t = self.threshold
        return {">": value > t, ">=": value >= t, "<": value < t, "<=": value <= t,
                "==": value == t, "!=": value != t}[self.op]

    def describe(self) -> str:
        """``latency_p95 > 2 over 5m for 5m``: the rule in one line."""
        what = self.metric + (f"[{self.check}]" if self.check else "")
        if self.metric == "drift":
            what = f"drift({self.field}{':' + self.check if self.check else ''}, {self.method})"
        text = f"{what} {self.op} {self.threshold:g} over {self.window}"
        if self.for_ns:
            text += f" for {format_duration(self.for_ns)}"
        if self.keep_firing_for_ns:
            text += f", keep firing {format_duration(self.keep_firing_for_ns)}"
        filters = [f"{k}={v}" for k, v in (("model", self.select.model),
                                            ("provider", self.select.provider),
                                            ("span", self.select.name), ("tag", self.select.tag),
                                            ("user", self.select.user)) if v is not None]
        if filters:
            text += " where " + ", ".join(filters)
        if self.group_by:
            text += " by " + ", ".join(self.group_by)
        return text


class RuleError(ValueError):
    """The rules cannot be used; ``problems`` lists each with its path."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = list(problems)


def _schema_problems(instance: Any, schema: Mapping[str, Any], where: str) -> list[str]:
    problems = []
    for err in Draft202012Validator(schema).iter_errors(instance):
        path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err.absolute_path)
        problems.append(f"{where}{path}: {err.message}")
    return sorted(problems)


def read_rule_file(path: Path) -> list[dict[str, Any]]:
    """The ``[[rules]]`` of a TOML rule file, validated; RuleError names the
    file and each problem's path."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise RuleError([f"rule_file {path}: cannot read it: {exc.strerror or exc}"]) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise RuleError([f"rule_file {path}: invalid TOML: {exc}"]) from None
    problems = _schema_problems(data, RULE_FILE_SCHEMA, f"rule_file {path}: ")
    if problems:
        raise RuleError([p.replace(": .rules", ": rules", 1) for p in problems])
    return list(data.get("rules") or [])


def rule_file_path(config: Mapping[str, Any], config_dir: Path | None) -> Path | None:
    """``rule_file`` of ``[plugins.alerts]``, relative to the configuration file's folder."""
    name = config.get("rule_file")
    if not name:
        return None
    path = Path(str(name)).expanduser()
    return path if path.is_absolute() or config_dir is None else config_dir / path


def merge_rules(config: Mapping[str, Any], config_dir: Path | None = None) -> list[dict[str, Any]]:
    """The rule tables in effect: the built-ins (unless ``default_rules =
    false``), then ``rules``, then the rule file's; a rule named like an
    earlier one changes the keys it gives, ``enabled = false`` removes it."""
    merged: dict[str, dict[str, Any]] = {}
    tables: list[dict[str, Any]] = []
    if config.get("default_rules", True):
        tables += [dict(r) for r in DEFAULT_RULES]
    tables += [dict(r) for r in config.get("rules") or ()]
    path = rule_file_path(config, config_dir)
    if path is not None:
        tables += read_rule_file(path)
    for table in tables:
        name = str(table["name"])
        merged[name] = {**merged.get(name, {}), **table}
    return [t for t in merged.values() if t.get("enabled", True) is not False]


def build_rule(table: Mapping[str, Any]) -> Rule:
    """A :class:`Rule` from one merged rule table (ValueError naming what is wrong)."""
    name = str(table["name"])
    missing = [k for k in ("metric", "threshold") if k not in table]
    if missing:
        raise ValueError(f"rule {name!r}: needs {' and '.join(missing)}")
    metric = str(table["metric"])
    kind = table.get("kind", "llm")
    group_by = tuple(table.get("group_by") or (("model",) if metric == "drift" else ()))
    if metric in SAMPLE_METRICS | COUNTER_METRICS and group_by:
        raise ValueError(f"rule {name!r}: {metric} takes no group_by "
                         f"({'one alert per gpu_id' if metric in SAMPLE_METRICS else 'one series'})")
    if metric in ("check_failure_rate", "score_mean") and not table.get("check"):
        raise ValueError(f"rule {name!r}: {metric} needs check = NAME")
    if metric == "drift" and (not table.get("field") or (table["field"] == "score" and not table.get("check"))):
        raise ValueError(f"rule {name!r}: drift needs field (and check = NAME for field = \"score\")")
    rule = Rule(
        name=name,
        metric=metric,
        threshold=float(table["threshold"]),
        op=str(table.get("op", ">")),
        window_ns=parse_duration(str(table.get("window", "5m"))),
        for_ns=parse_duration(str(table.get("for", "0s"))),
        keep_firing_for_ns=parse_duration(str(table.get("keep_firing_for", "0s"))),
        severity=str(table.get("severity", "warning")),
        labels={str(k): str(v) for k, v in (table.get("labels") or {}).items()},
        summary=str(table.get("summary") or default_summary(metric)),
        description=str(table.get("description") or ""),
        select=SpanSelect(kind=None if kind == "any" else str(kind), model=table.get("model"),
                          provider=table.get("provider"), name=table.get("span"),
                          tag=table.get("tag"), user=table.get("user")),
        group_by=group_by,
        check=table.get("check") or ("refusal" if metric == "refusal_rate" else None),
        field=table.get("field"),
        reference_window_ns=parse_duration(str(table.get("reference_window", "7d"))),
        method=str(table.get("method", "psi")),
        min_samples=int(table.get("min_samples", 50)),
        bins=int(table.get("bins", 10)),
    )
    if rule.window_ns <= 0:
        raise ValueError(f"rule {name!r}: window must be longer than 0s")
    for template in (rule.summary, rule.description):
        check_template(template, name)
    return rule


def load_rules(config: Mapping[str, Any], config_dir: Path | None = None) -> list[Rule]:
    """Every rule of a validated ``[plugins.alerts]`` table; RuleError lists
    every problem (a bad rule file, a rule that cannot be built, a name used twice)."""
    tables = merge_rules(config, config_dir)
    problems: list[str] = []
    rules: list[Rule] = []
    for table in tables:
        try:
            rules.append(build_rule(table))
        except ValueError as exc:
            problems.append(str(exc))
    if problems:
        raise RuleError(problems)
    return rules


# ---- templates -------------------------------------------------------------------------


def default_summary(metric: str) -> str:
    base = metric.rsplit("_p", 1)[0] if metric in QUANTILE_METRICS else metric
    text = METRIC_TEXT.get(base, metric)
    if metric in QUANTILE_METRICS:
        text = f"{metric.rsplit('_', 1)[1]} {text}"
    return f"{text} is {{value:.4g}} over the last {{window}} (threshold {{op}} {{threshold:g}})"


class _Blank(dict[str, Any]):
    """A template's variables; an unknown one (a label the alert lacks) is empty."""

    def __missing__(self, key: str) -> str:
        return ""


def template_context(rule: Rule, value: float | None, labels: Mapping[str, str],
                     count: int | None = None) -> dict[str, Any]:
    context = _Blank(labels)
    context.update(value=value if value is not None else float("nan"), threshold=rule.threshold,
                   op=rule.op, window=rule.window, rule=rule.name, metric=rule.metric,
                   severity=rule.severity, check=rule.check or "", field=rule.field or "",
                   count=count if count is not None else 0, labels=_Blank(labels))
    return context


def render(template: str, context: Mapping[str, Any]) -> str:
    """``template`` filled in; one that does not fit the values (a number
    format on a label) is returned as written, never raised."""
    try:
        return string.Formatter().vformat(template, (), context)
    except (ValueError, KeyError, IndexError, AttributeError, TypeError):
        return template


def check_template(template: str, rule: str) -> None:
    """ValueError when ``template`` is not a valid template for rule ``rule``."""
    try:
        fields = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"rule {rule!r}: template {template!r}: {exc}") from None
    sample = template_context(Rule(rule, "error_rate", 1.0), 0.5, {})
    for _text, name, spec, _conv in fields:
        if name is None:
            continue
        root = re.split(r"[.\[]", name, maxsplit=1)[0]
        if root in ("value", "threshold", "count"):
            try:
                format(1.0, spec or "")
            except ValueError as exc:
                raise ValueError(f"rule {rule!r}: template {template!r}: {{{name}:{spec}}}: {exc}") from None
        elif root.isdigit() or root == "":
            raise ValueError(f"rule {rule!r}: template {template!r}: use named fields such as "
                             "{value} or {model}, not positional ones") from None
    render(template, sample)


def template_fields(template: str) -> Iterator[tuple[str, str | None, str]]:
    """``(literal text, field name or None, format spec)`` of a valid template."""
    for text, name, spec, _conv in string.Formatter().parse(template):
        yield text, name, spec or ""
