"""``chainsight export prometheus-rules``: the file passes ``promtool check
rules``, and ``promtool test rules`` on a synthetic series agrees with the
in-process engine on the same series.

promtool comes with Debian's ``prometheus`` package (``.ci/run`` installs
it). Without it these tests skip, saying so; under ``CI=true`` they fail.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from chainsight.framework.model import Alert, Sample, Span
from chainsight.plugins.alert_engine import Evaluator
from chainsight.plugins.alert_rules import Rule, build_rule, load_rules
from chainsight.plugins.prometheus_rules import NotExportable, export_rules, go_template, rule_expr
from chainsight.storage.query import Store
from chainsight.storage.serialize import key_text
from tests.plugins.cases.alerting import MINUTE, SECOND, T0, call, write

PROMTOOL_MISSING = ("promtool not found on PATH: these tests need it. Install Debian's prometheus "
                    "package (apt-get install prometheus); .ci/run does.")


@pytest.fixture
def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(PROMTOOL_MISSING)
        pytest.skip(PROMTOOL_MISSING)
    return found


def run_promtool(promtool: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


# ---- the file --------------------------------------------------------------------------


def test_the_built_in_rules_pass_promtool_check(promtool: str, tmp_path: Path) -> None:
    exported = export_rules(load_rules({}))
    (tmp_path / "rules.yml").write_text(exported.text)
    done = run_promtool(promtool, "check", "rules", "rules.yml", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 5 rules found" in done.stdout
    assert [name for name, _ in exported.skipped] == ["expensive_request"]


EVERY_KIND = [
    {"name": "lat", "metric": "latency_p99.9", "threshold": 3, "model": "gpt-4o", "provider": "openai",
     "group_by": ["model"], "keep_firing_for": "2m", "labels": {"team": "a \"quoted\" team"},
     "summary": "p99.9 {value:.2f}s on {model} ({labels[provider]}) over {window}, {{literal}}",
     "description": "threshold {threshold:g}{op}; {value:.1%} {value} {count}"},
    {"name": "ttft", "metric": "ttft_p50", "threshold": 1, "group_by": ["provider"]},
    {"name": "tpot", "metric": "tpot_p90", "threshold": 0.1, "op": ">="},
    {"name": "err", "metric": "error_rate", "threshold": 0.1, "group_by": ["model", "provider"]},
    {"name": "ref", "metric": "refusal_rate", "threshold": 0.1, "window": "1h"},
    {"name": "pii", "metric": "check_failure_rate", "check": "pii", "threshold": 0.01},
    {"name": "spend_h", "metric": "spend", "threshold": 50, "window": "1h", "model": "gpt-4o"},
    {"name": "rps", "metric": "requests_per_s", "threshold": 1, "op": "<", "window": "10m"},
    {"name": "tps", "metric": "tokens_per_s", "threshold": 100, "group_by": ["model"]},
    {"name": "gpu", "metric": "gpu_utilization", "threshold": 10, "op": "<"},
    {"name": "mem", "metric": "gpu_memory_used_bytes", "threshold": 7e10},
    {"name": "drop", "metric": "dropped_spans", "threshold": 0},
    {"name": "fail", "metric": "failed_spans", "threshold": 0, "severity": "critical"},
]


def test_every_exportable_kind_of_rule_passes_promtool_check(promtool: str, tmp_path: Path) -> None:
    rules = [build_rule(r) for r in EVERY_KIND]
    exported = export_rules(rules, interval="15s", group="all of them")
    assert exported.skipped == []
    (tmp_path / "rules.yml").write_text(exported.text)
    done = run_promtool(promtool, "check", "rules", "rules.yml", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr + exported.text
    assert f"SUCCESS: {len(rules)} rules found" in done.stdout


def test_rules_without_an_equivalent_are_left_out_with_the_reason() -> None:
    reasons = {}
    for table in (
        {"metric": "request_cost"}, {"metric": "score_mean", "check": "rating"},
        {"metric": "drift", "field": "latency"}, {"metric": "error_rate", "span": "summarize*"},
        {"metric": "error_rate", "tag": "prod"}, {"metric": "error_rate", "user": "u"},
        {"metric": "error_rate", "kind": "tool"}, {"metric": "refusal_rate", "model": "m"},
        {"metric": "spend", "provider": "openai"}, {"metric": "tokens_per_s", "group_by": ["provider"]},
    ):
        rule = build_rule({"name": "r", "threshold": 1, **table})
        with pytest.raises(NotExportable) as info:
            rule_expr(rule)
        reasons[json.dumps(table)] = str(info.value)
    assert all(reasons.values()) and len(set(reasons.values())) >= 7
    exported = export_rules([build_rule({"name": "r", "metric": "request_cost", "threshold": 1})])
    assert "rules: []" in exported.text and "#   r: llm_cost_dollars_total is a counter" in exported.text


def test_templates_become_go_templates() -> None:
    rule = build_rule({"name": "r", "metric": "error_rate", "threshold": 0.05, "window": "10m"})
    assert go_template("{value:.1%} on {model} over {window} (> {threshold:.0%}) {{x}}", rule) == (
        '{{ $value | humanizePercentage }} on {{ $labels.model }} over 10m (> 5%) {x}')
    assert go_template("${value:,.2f} {value} {count}", rule) == '${{ printf "%.2f" $value }} {{ $value }} '
    assert go_template("{labels[gpu_id]}", rule) == "{{ $labels.gpu_id }}"


# ---- promtool test rules agrees with the engine ---------------------------------------------------

MINUTES = 61
MODELS = {"gpt-4o": "openai", "small": "local"}
BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
AGREEMENT_RULES = [
    {"name": "errors", "metric": "error_rate", "threshold": 0.05, "for": "8m", "group_by": ["model"],
     "severity": "critical", "summary": "{rule}: calls of {model} fail", "labels": {"team": "llm"}},
    {"name": "slow", "metric": "latency_p95", "threshold": 2.0, "for": "8m",
     "summary": "p95 over {threshold:g}s for {window}"},
    {"name": "gpu_low", "metric": "gpu_utilization", "threshold": 50, "op": "<", "for": "8m",
     "summary": "GPU {gpu_id} idles"},
    # Annotations free of {value}: Prometheus renders them at every evaluation,
    # the engine when the alert changes state.
    {"name": "spend", "metric": "spend", "threshold": 1000, "window": "1d",
     "summary": "spend over ${threshold:,.0f} in {window}"},
]


@dataclass(frozen=True)
class Call:
    minute: int
    model: str
    latency: float
    error: bool
    cost: float = 0.5


def synthetic_calls() -> list[Call]:
    """20 calls a minute per model. gpt-4o fails 4 in 20 in minutes 10-29; 30% of
    all calls take 4 s in minutes 35-49; $0.5 a call ($20 a minute)."""
    calls = []
    for m in range(MINUTES):
        for model in MODELS:
            for k in range(20):
                calls.append(Call(m, model, 4.0 if 35 <= m <= 49 and k < 6 else 0.3,
                                  model == "gpt-4o" and 10 <= m <= 29 and k < 4))
    return calls


def gpu_value(minute: int) -> float:
    return 20.0 if 20 <= minute <= 44 else 90.0


def store_series(url: str) -> None:
    """The calls as spans (minute m: at m:00, m:02 ... m:38) and the GPU samples (at m:00)."""
    spans: list[Span] = []
    seen: dict[tuple[int, str], int] = {}
    for c in synthetic_calls():
        k = seen[(c.minute, c.model)] = seen.get((c.minute, c.model), -1) + 1
        spans.append(call(T0 + c.minute * MINUTE + 2 * k * SECOND, latency_s=c.latency,
                          status="error" if c.error else "ok", cost=c.cost, model=c.model,
                          provider=MODELS[c.model]))
    samples = [Sample("llm_gpu_utilization_percent", gpu_value(m), "nvml", T0 + m * MINUTE, {"gpu_id": "0"})
               for m in range(MINUTES)]
    write(url, spans, samples=samples)


def prometheus_series() -> dict[str, list[float]]:
    """What an exporter scraped each minute m (time m:00) after the same calls:
    counters of the calls of the minutes before m, the GPU gauge at m."""
    series: dict[str, list[float]] = {}

    def add(name: str, minute: int, value: float) -> None:
        values = series.setdefault(name, [0.0] * MINUTES)
        for later in range(minute + 1, MINUTES):
            values[later] += value

    for c in synthetic_calls():
        provider = MODELS[c.model]
        status = "error" if c.error else "ok"
        labels = f'model="{c.model}",provider="{provider}"'
        add(f'llm_requests_total{{{labels},status="{status}"}}', c.minute, 1)
        add(f'llm_cost_dollars_total{{model="{c.model}"}}', c.minute, c.cost)
        for le in (*BUCKETS, "+Inf"):
            if le == "+Inf" or c.latency <= float(le):
                add(f'llm_request_latency_seconds_bucket{{{labels},le="{le}"}}', c.minute, 1)
            else:
                series.setdefault(f'llm_request_latency_seconds_bucket{{{labels},le="{le}"}}',
                                  [0.0] * MINUTES)
    series['llm_gpu_utilization_percent{gpu_id="0"}'] = [gpu_value(m) for m in range(MINUTES)]
    return series


def firing_by_minute(url: str, rules: list[Rule]) -> list[dict[str, list[Alert]]]:
    """The engine evaluated at each minute m:00: rule -> its firing alerts then."""
    now = [T0]
    active: dict[tuple[str, str], Alert] = {}

    def emit(alert: Alert) -> None:
        key = (alert.rule, key_text(alert.labels))
        if alert.state == "firing":
            active[key] = alert
        else:
            active.pop(key, None)

    out = []
    with Store(url) as store:
        evaluator = Evaluator(store, rules, emit, lambda: now[0], lease=False)
        for m in range(MINUTES):
            now[0] = T0 + m * MINUTE
            evaluator.evaluate()
            by_rule: dict[str, list[Alert]] = {r.name: [] for r in rules}
            for (name, _), alert in sorted(active.items()):
                by_rule[name].append(alert)
            out.append(by_rule)
    return out


def _stable(states: list[dict[str, list[Alert]]], rule: str, m: int, margin: int = 2) -> bool:
    """The engine's firing set of ``rule`` is the same from m - margin to m + margin
    (Prometheus samples counters at m:00, the engine sees calls up to it: the two may
    cross a threshold a minute apart)."""
    if m - margin < 0 or m + margin >= len(states):
        return False
    keys = [sorted(key_text(a.labels) for a in states[i][rule]) for i in range(m - margin, m + margin + 1)]
    return all(k == keys[0] for k in keys)


def _yaml_map(mapping: dict[str, str]) -> str:
    return "{" + ", ".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in sorted(mapping.items())) + "}"


def unit_test_file(states: list[dict[str, list[Alert]]], rules: list[Rule],
                   flip: str | None = None) -> tuple[str, dict[str, int]]:
    """A promtool unit-test file expecting, at every minute where the engine is
    stable, the alerts the engine fires then. ``flip``: expect nothing of that
    rule where it fires (the test of the test)."""
    lines = ["rule_files: [rules.yml]", "evaluation_interval: 1m", "tests:", "  - interval: 1m",
             "    input_series:"]
    for name, values in sorted(prometheus_series().items()):
        lines += [f"      - series: {json.dumps(name)}",
                  f"        values: {json.dumps(' '.join(f'{v:g}' for v in values))}"]
    lines.append("    alert_rule_test:")
    checked: dict[str, int] = {}
    for m in range(len(states)):
        for rule in rules:
            if not _stable(states, rule.name, m):
                continue
            firing = states[m][rule.name]
            checked[f"{rule.name}:{'firing' if firing else 'quiet'}"] = \
                checked.get(f"{rule.name}:{'firing' if firing else 'quiet'}", 0) + 1
            lines += [f"      - eval_time: {m}m", f"        alertname: {rule.name}"]
            if not firing or rule.name == flip:
                lines.append("        exp_alerts: []")
                continue
            lines.append("        exp_alerts:")
            for alert in firing:
                labels = {"alertname": rule.name, "severity": rule.severity, **alert.labels}
                lines += [f"          - exp_labels: {_yaml_map(labels)}",
                          f"            exp_annotations: {_yaml_map({'summary': alert.summary})}"]
    return "\n".join(lines) + "\n", checked


@pytest.fixture
def agreement(sqlite_url: str, tmp_path: Path) -> Iterator[tuple[list[Rule], list[dict[str, list[Alert]]]]]:
    rules = [build_rule(r) for r in AGREEMENT_RULES]
    store_series(sqlite_url)
    exported = export_rules(rules, interval="1m")
    assert exported.skipped == []
    (tmp_path / "rules.yml").write_text(exported.text)
    yield rules, firing_by_minute(sqlite_url, rules)


def test_promtool_test_rules_agrees_with_the_engine(promtool: str, tmp_path: Path,
                                                    agreement: tuple[list[Rule], list[dict[str, list[Alert]]]]) -> None:
    rules, states = agreement
    text, checked = unit_test_file(states, rules)
    (tmp_path / "test.yml").write_text(text)
    done = run_promtool(promtool, "test", "rules", "test.yml", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout
    # Every rule was compared while it fired and while it did not, many times.
    for rule in rules:
        assert checked.get(f"{rule.name}:firing", 0) >= 4, (rule.name, checked)
        assert checked.get(f"{rule.name}:quiet", 0) >= 4, (rule.name, checked)
    # The engine fired what the data says: gpt-4o only, and each rule at some point.
    assert {a.labels.get("model") for s in states for a in s["errors"]} == {"gpt-4o"}


def test_promtool_test_rules_would_catch_a_disagreement(promtool: str, tmp_path: Path,
                                                        agreement: tuple[list[Rule], list[dict[str, list[Alert]]]]) -> None:
    rules, states = agreement
    text, _ = unit_test_file(states, rules, flip="slow")
    (tmp_path / "test.yml").write_text(text)
    done = run_promtool(promtool, "test", "rules", "test.yml", cwd=tmp_path)
    assert done.returncode != 0 and "slow" in done.stdout + done.stderr
