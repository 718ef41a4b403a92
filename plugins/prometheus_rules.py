"""``chainsight export prometheus-rules``: the alert rules as a Prometheus rule file.

The same rules, over the metrics Chainsight's Prometheus exporter serves
(``llm_requests_total{model,provider,status}``, the
``llm_request_latency_seconds`` / ``llm_time_to_first_token_seconds`` /
``llm_time_per_output_token_seconds`` histograms (labelled by model and
provider), ``llm_tokens_total{model,type}``, ``llm_cost_dollars_total{model}``,
``llm_refusals_total``, ``llm_check_failures_total{check}``,
``llm_gpu_utilization_percent{gpu_id}``, ``llm_gpu_memory_used_bytes{gpu_id}``,
``chainsight_spans_{dropped,failed}_total``), with the same window, ``for``,
``keep_firing_for``, severity, labels and annotations. Percentiles come
from histogram buckets there (interpolated within a bucket), exact values
here: the two agree on whether a rule fires whenever the value is not
within a bucket of the threshold.

Rules with no equivalent over those metrics are left out, each with its
reason (in the file's header and on stderr): the cost of one request, score
means and drift (no such metric), filters by span name, tag or user and
span kinds other than ``llm`` (not labels, to bound cardinality), a model
filter on refusals and check failures (counted without a model label).

Summary templates become Go templates: ``{value}`` is ``{{ $value }}``
(``{value:.2f}`` is ``printf "%.2f"``, ``{value:.1%}``
``humanizePercentage``), a label such as ``{model}`` is
``{{ $labels.model }}``, and the rule's own fields (threshold, window...)
are written out.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from chainsight.plugins.alert_rules import Rule, format_duration, template_fields

HISTOGRAMS: Final = {"latency": "llm_request_latency_seconds",
                     "ttft": "llm_time_to_first_token_seconds",
                     "tpot": "llm_time_per_output_token_seconds"}
# The labels each metric has (what a rule may filter or group by there).
LABELS: Final[dict[str, frozenset[str]]] = {
    "llm_requests_total": frozenset({"model", "provider"}),
    **{h: frozenset({"model", "provider"}) for h in HISTOGRAMS.values()},
    "llm_tokens_total": frozenset({"model"}),
    "llm_cost_dollars_total": frozenset({"model"}),
    "llm_refusals_total": frozenset(),
    "llm_check_failures_total": frozenset(),
}
RULE_FIELDS: Final = ("threshold", "op", "window", "rule", "metric", "severity", "check", "field")


class NotExportable(ValueError):
    """A rule with no equivalent over the exporters' metrics (the message says why)."""


@dataclass(frozen=True)
class Export:
    text: str
    skipped: list[tuple[str, str]]  # (rule, reason)


def _string(value: str) -> str:
    """A PromQL (and YAML) double-quoted string."""
    return json.dumps(value, ensure_ascii=False)


def _selector(rule: Rule, metric: str, extra: str = "") -> str:
    sel = rule.select
    if sel.name is not None or sel.tag is not None or sel.user is not None:
        raise NotExportable("filters by span name, tag or user have no Prometheus label")
    if sel.kind != "llm":
        raise NotExportable("the exported metrics count model calls (kind llm) only")
    matchers = []
    for label, value in (("model", sel.model), ("provider", sel.provider)):
        if value is None:
            continue
        if label not in LABELS.get(metric, frozenset()):
            raise NotExportable(f"{metric} has no {label} label")
        matchers.append(f"{label}={_string(value)}")
    if extra:
        matchers.append(extra)
    return metric + ("{" + ",".join(matchers) + "}" if matchers else "")


def _by(rule: Rule, metric: str, *more: str) -> str:
    for label in rule.group_by:
        if label not in LABELS.get(metric, frozenset()):
            raise NotExportable(f"{metric} has no {label} label to group by")
    labels = [*more, *rule.group_by]
    return f" by ({', '.join(labels)})" if labels else ""


def rule_expr(rule: Rule) -> str:
    """The PromQL expression that is true (non-empty) when ``rule`` holds."""
    w = format_duration(rule.window_ns)
    metric = rule.base_metric
    if rule.quantile is not None:
        hist = HISTOGRAMS[metric]
        buckets = hist + "_bucket" + _selector(rule, hist)[len(hist):]
        expr = (f"histogram_quantile({rule.quantile:g}, sum{_by(rule, hist, 'le')} "
                f"(rate({buckets}[{w}])))")
    elif metric == "error_rate":
        r = "llm_requests_total"
        expr = (f"sum{_by(rule, r)} (rate({_selector(rule, r, 'status=' + _string('error'))}[{w}]))"
                f" / sum{_by(rule, r)} (rate({_selector(rule, r)}[{w}]))")
    elif metric in ("refusal_rate", "check_failure_rate"):
        counter = "llm_refusals_total" if metric == "refusal_rate" else "llm_check_failures_total"
        extra = "" if metric == "refusal_rate" else "check=" + _string(rule.check or "")
        if rule.select.model is not None or rule.select.provider is not None or rule.group_by:
            raise NotExportable(f"{counter} has no model or provider label")
        expr = (f"sum(rate({_selector(rule, counter, extra)}[{w}]))"
                f" / sum(rate({_selector(rule, 'llm_requests_total')}[{w}]))")
    elif metric == "spend":
        c = "llm_cost_dollars_total"
        expr = f"sum{_by(rule, c)} (increase({_selector(rule, c)}[{w}]))"
    elif metric == "requests_per_s":
        r = "llm_requests_total"
        expr = f"sum{_by(rule, r)} (rate({_selector(rule, r)}[{w}]))"
    elif metric == "tokens_per_s":
        t = "llm_tokens_total"
        expr = f"sum{_by(rule, t)} (rate({_selector(rule, t)}[{w}]))"
    elif metric in ("gpu_utilization", "gpu_memory_used_bytes"):
        name = "llm_gpu_utilization_percent" if metric == "gpu_utilization" else "llm_gpu_memory_used_bytes"
        expr = f"avg by (gpu_id) (avg_over_time({name}[{w}]))"
    elif metric in ("dropped_spans", "failed_spans"):
        name = f"chainsight_spans_{metric.split('_')[0]}_total"
        expr = f"sum(increase({name}[{w}]))"
    elif metric == "request_cost":
        raise NotExportable("llm_cost_dollars_total is a counter: the cost of one request is not in it")
    elif metric == "score_mean":
        raise NotExportable("scores are not exported as a Prometheus metric")
    elif metric == "drift":
        raise NotExportable("drift compares stored values; Prometheus has only the histograms")
    else:
        raise NotExportable(f"no Prometheus metric for {rule.metric}")
    return f"{expr} {rule.op} {rule.threshold!r}"


_PRINTF = re.compile(r"^,?(\.\d+)?([fge])?$")


def go_template(template: str, rule: Rule) -> str:
    """A summary template as a Prometheus (Go) template."""
    out = []
    for text, name, spec in template_fields(template):
        out.append(text.replace("{{", '{{ "{{" }}'))
        if name is None:
            continue
        root = re.split(r"[.\[]", name, maxsplit=1)[0]
        if root == "value":
            match = _PRINTF.match(spec)
            if spec.endswith("%"):
                out.append("{{ $value | humanizePercentage }}")
            elif spec and match:
                out.append(f'{{{{ printf "%{match.group(1) or ""}{match.group(2) or "g"}" $value }}}}')
            else:
                out.append("{{ $value }}")
        elif root in RULE_FIELDS:
            value = {"threshold": rule.threshold, "op": rule.op, "window": rule.window,
                     "rule": rule.name, "metric": rule.metric, "severity": rule.severity,
                     "check": rule.check or "", "field": rule.field or ""}[root]
            try:
                out.append(format(value, spec))
            except ValueError:
                out.append(str(value))
        elif root == "count":
            continue
        else:
            label = name[len("labels["):-1] if root == "labels" and name.endswith("]") else root
            if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", label):
                out.append(f"{{{{ $labels.{label} }}}}")
    return "".join(out)


def export_rules(rules: Sequence[Rule], *, interval: str = "30s", group: str = "chainsight",
                 source: str = "") -> Export:
    """The rule file's text, and the rules left out with the reason."""
    lines = ["# Prometheus alerting rules written by `chainsight export prometheus-rules`"]
    if source:
        lines.append(f"# from {source}")
    body: list[str] = []
    skipped: list[tuple[str, str]] = []
    for rule in rules:
        try:
            expr = rule_expr(rule)
        except NotExportable as exc:
            skipped.append((rule.name, str(exc)))
            continue
        body += [f"      - alert: {_string(rule.name)}", f"        expr: {_string(expr)}"]
        if rule.for_ns:
            body.append(f"        for: {format_duration(rule.for_ns)}")
        if rule.keep_firing_for_ns:
            body.append(f"        keep_firing_for: {format_duration(rule.keep_firing_for_ns)}")
        body.append("        labels:")
        for key, value in {"severity": rule.severity, **rule.labels}.items():
            body.append(f"          {_string(key)}: {_string(value)}")
        notes = {"summary": go_template(rule.summary, rule),
                 "description": go_template(rule.description, rule)}
        notes = {k: v for k, v in notes.items() if v}
        if notes:
            body.append("        annotations:")
            body += [f"          {k}: {_string(v)}" for k, v in notes.items()]
    if skipped:
        lines.append("# Left out (no equivalent over the exported metrics):")
        lines += [f"#   {name}: {reason}" for name, reason in skipped]
    lines += ["groups:", f"  - name: {_string(group)}", f"    interval: {interval}"]
    lines += ["    rules:", *body] if body else ["    rules: []"]
    return Export("\n".join(lines) + "\n", skipped)
