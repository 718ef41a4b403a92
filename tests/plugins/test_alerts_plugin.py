"""The ``alerts`` plugin in a running observer (its timer, record_alert, the
notifiers), two processes writing one store with one evaluator, the
configuration (every problem with its path, rule files, overrides of the
built-in rules) and the ``chainsight alerts`` commands."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from chainsight import hookimpl
from chainsight.framework.cli import main
from chainsight.framework.model import Alert
from chainsight.framework.observer import Observer
from chainsight.plugins.alert_rules import DEFAULT_NAMES, load_rules
from chainsight.plugins.alerts import AlertsPlugin, in_memory
from chainsight.storage.engine import upgrade
from chainsight.storage.query import Store
from tests.plugins.cases.alerting import MINUTE, at, call, per_minute, write

ROOT = Path(__file__).resolve().parents[2]
FAST = """
[plugins.alerts]
default_rules = false
interval = "50ms"
[[plugins.alerts.rules]]
name = "errors"
metric = "error_rate"
threshold = 0.5
window = "1s"
summary = "{value:.0%} of calls failed"
description = "model calls over {window}"
"""


class Told:
    """A notifier of the test's own: what alert_changed hands it."""

    name = "told"

    def __init__(self, fail: bool = False) -> None:
        self.alerts: list[Alert] = []
        self.fail = fail

    @hookimpl
    def alert_changed(self, alert: Alert) -> None:
        self.alerts.append(alert)
        if self.fail:
            raise RuntimeError("pager is down")


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def observer(tmp_path: Path, config: str, *plugins: object, strict: bool = True) -> tuple[Observer, str]:
    path = tmp_path / "plugins.toml"
    path.write_text(config)
    url = f"sqlite:///{tmp_path / 'alerts.db'}"
    return Observer(url, config_path=path, plugins=plugins, builtins=(), entry_points=False,
                    strict=strict, spill_path=tmp_path / "spill"), url


def record_calls(obs: Observer, n: int, error: bool) -> list[str]:
    traces = []
    for _ in range(n):
        span = obs.start_span("ChatOpenAI", "llm", model="gpt-4o")
        obs.end_span(span, error="rate limited" if error else None)
        traces.append(span.trace_id)
    return traces


def test_the_observer_evaluates_stores_and_notifies(tmp_path: Path) -> None:
    told = Told()
    obs, url = observer(tmp_path, FAST, AlertsPlugin(), told)
    try:
        failed = record_calls(obs, 5, error=True)
        assert obs.flush(10)
        assert wait_for(lambda: any(a.state == "firing" for a in told.alerts))
        record_calls(obs, 20, error=False)
        assert obs.flush(10)
        assert wait_for(lambda: any(a.state == "resolved" for a in told.alerts))
    finally:
        obs.shutdown(5)
    assert [a.state for a in told.alerts] == ["firing", "resolved"]
    with Store(url) as store:
        (stored,) = store.list_alerts()
    assert stored.state == "resolved" and stored.alert_id == told.alerts[0].alert_id
    assert stored.summary == "100% of calls failed" and stored.description == "model calls over 1s"
    assert set(stored.trace_ids) == set(failed)


def test_a_failing_notifier_never_stops_evaluation(tmp_path: Path) -> None:
    broken, told = Told(fail=True), Told()
    broken.name = "broken"
    obs, url = observer(tmp_path, FAST, AlertsPlugin(), broken, told, strict=False)
    try:
        record_calls(obs, 5, error=True)
        assert obs.flush(10)
        assert wait_for(lambda: any(a.state == "firing" for a in told.alerts))
        record_calls(obs, 20, error=False)
        assert obs.flush(10)
        assert wait_for(lambda: any(a.state == "resolved" for a in told.alerts))
    finally:
        obs.shutdown(5)
    assert [a.state for a in broken.alerts] == ["firing", "resolved"]  # it raised both times
    assert [h.failures for h in obs.dispatcher.snapshot() if h.name == "broken"] == [2]
    with Store(url) as store:
        assert [a.state for a in store.list_alerts()] == ["resolved"]


def test_no_evaluator_when_evaluation_is_elsewhere_or_the_store_in_memory(tmp_path: Path) -> None:
    plugin = AlertsPlugin()
    obs, _ = observer(tmp_path, '[plugins.alerts]\nevaluate = "serve"\n', plugin)
    obs.shutdown(5)
    assert plugin.thread is None and len(plugin.rules) == len(DEFAULT_NAMES)
    assert in_memory("sqlite://") and in_memory("sqlite:///:memory:") and not in_memory("sqlite:///a.db")
    plugin = AlertsPlugin()
    memory = Observer("sqlite://", plugins=[plugin], builtins=(), entry_points=False, strict=True)
    memory.shutdown(5)
    assert plugin.thread is None


def test_shutdown_releases_the_lease(tmp_path: Path) -> None:
    from chainsight.plugins.alert_engine import LEASE_NAME
    from chainsight.storage import alert_queries

    plugin = AlertsPlugin()
    obs, url = observer(tmp_path, FAST, plugin)
    record_calls(obs, 1, error=False)
    assert obs.flush(10)
    assert plugin.thread is not None and wait_for(lambda: plugin.thread is not None and plugin.thread.rounds > 0)
    obs.shutdown(5)
    with Store(url) as store:
        holder = alert_queries.lease_holder(store.engine, LEASE_NAME)
    assert holder is not None and holder[1] == 0  # expired: the next process takes it at once


CHILD = """
import json, sys, time
from chainsight import hookimpl
from chainsight.framework.observer import Observer

url, config, out, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])

class Told:
    name = "told"
    @hookimpl
    def alert_changed(self, alert):
        with open(out, "a") as f:
            f.write(json.dumps([alert.rule, alert.state, alert.alert_id]) + "\\n")

obs = Observer(url, config_path=config, builtins=[("alerts", "chainsight.plugins.alerts")],
               plugins=[Told()], entry_points=False)
end = time.time() + seconds
while time.time() < end:
    span = obs.start_span("ChatOpenAI", "llm", model="gpt-4o")
    obs.end_span(span, error="rate limited")
    time.sleep(0.01)
ok = obs.flush(20)
obs.shutdown(10)
print("flushed", ok)
"""


def test_two_processes_writing_one_store_have_one_evaluator(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    upgrade(url)
    config = tmp_path / "plugins.toml"
    config.write_text(textwrap.dedent("""
        [plugins.alerts]
        default_rules = false
        interval = "100ms"
        lease = "5s"
        rules = [{ name = "errors", metric = "error_rate", threshold = 0.5, window = "2s" }]
    """))
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    outs = [tmp_path / f"told-{i}.jsonl" for i in range(2)]
    procs = [subprocess.Popen([sys.executable, str(script), url, str(config), str(out), "3"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for out in outs]
    results = [p.communicate(timeout=120) for p in procs]
    for proc, (stdout, stderr) in zip(procs, results, strict=True):
        assert proc.returncode == 0 and "flushed True" in stdout, stderr
    told = [[json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
            for out in outs]
    firing = [t for lines in told for t in lines if t[1] == "firing"]
    assert len(firing) == 1, told  # one evaluator fired, once
    assert sum(1 for lines in told if lines) == 1  # the other process was told nothing
    with Store(url) as store:
        alerts = store.list_alerts(state="firing")
        spans = store.count_traces()
    assert [a.alert_id for a in alerts] == [firing[0][2]]
    assert spans > 100  # both processes wrote (about 150 calls a second each)


# ---- configuration ------------------------------------------------------------------------


def check(tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    path = tmp_path / "check.toml"
    path.write_text(text)
    status = main(["--config", str(path), "config", "check"])
    out = capsys.readouterr()
    return status, out.out + out.err


def test_config_check_reports_every_rule_problem_with_its_path(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, text = check(tmp_path, textwrap.dedent("""
        [plugins.alerts]
        interval = "soon"
        rules = [
          { name = "a", metric = "error_rate", op = "gte", threshold = 0.1 },
          { name = "b", metric = "latency_p95" },
          { name = "c", metric = "check_failure_rate", threshold = 0.1 },
          { name = "d", metric = "latency_p96", threshold = 1, window = "5 minutes" },
          { name = "p95_latency", threshold = 5 },
        ]
        [plugins.alert_webhook]
        targets = [{ url = { env = "CHAINSIGHT_TEST_UNSET_HOOK" } }]
    """), capsys)
    assert status == 2
    assert "plugins.alerts.interval: 'soon' does not match" in text
    assert "plugins.alerts.rules[0].op: 'gte' is not one of ['>', '>=', '<', '<=', '==', '!=']" in text
    assert "plugins.alerts.rules[1]: 'threshold' is a required property" in text
    assert "plugins.alerts.rules[2]: 'check' is a required property" in text
    assert "plugins.alerts.rules[3].metric: 'latency_p96' is not one of" in text
    assert "plugins.alerts.rules[3].window: '5 minutes' does not match" in text
    assert "rules[4]" not in text  # a built-in rule changed by name needs only what changes
    assert "plugins.alert_webhook.targets[0].url: environment variable CHAINSIGHT_TEST_UNSET_HOOK is not set" in text
    assert text.count("\n  ") >= 7  # each on its own line, with the file and line


def test_the_documented_default_configuration_is_valid(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", str(ROOT / "plugins.toml"), "config", "check"]) == 0
    capsys.readouterr()


def test_the_commented_alerts_section_builds_its_rules(tmp_path: Path) -> None:
    """plugins.toml's `# [plugins.alerts]` block, uncommented, gives rules that
    build (templates included), beyond what its schema checks (test_config)."""
    from chainsight.framework.config import load_settings, resolve_plugin_configs
    from chainsight.plugins.alert_rules import ALERTS_SCHEMA

    lines, keep = [], False
    for line in (ROOT / "plugins.toml").read_text().splitlines():
        if line.startswith("# [plugins."):
            keep = line == "# [plugins.alerts]"
        elif not line.startswith("#"):
            keep = False
        if keep and line.startswith("# ") and not line.startswith("# #"):
            lines.append(line[2:])
    config = tmp_path / "plugins.toml"
    config.write_text("\n".join(lines) + "\n")
    (tmp_path / "alert-rules.toml").write_text('[[rules]]\nname = "x"\nmetric = "spend"\nthreshold = 1\n')
    table = resolve_plugin_configs(load_settings(config), {"alerts": ALERTS_SCHEMA})["alerts"]
    rules = {r.name: r for r in load_rules(table, tmp_path)}
    assert set(DEFAULT_NAMES) | {"refusals_gpt4o", "length_drift", "x"} == set(rules)
    assert rules["refusals_gpt4o"].labels == {"team": "assistant"}


def test_built_in_rules_are_changed_or_removed_by_name(tmp_path: Path) -> None:
    rules = {r.name: r for r in load_rules({"rules": [
        {"name": "error_rate", "threshold": 0.05},
        {"name": "monthly_budget", "enabled": False},
        {"name": "mine", "metric": "requests_per_s", "threshold": 100, "op": "<"}]})}
    assert "monthly_budget" not in rules and "mine" in rules
    assert rules["error_rate"].threshold == 0.05 and rules["error_rate"].for_ns == 5 * MINUTE
    assert rules["error_rate"].severity == "critical"
    assert [r.name for r in load_rules({"default_rules": False})] == []


def test_a_rule_file_relative_to_the_configuration(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "rules.toml").write_text(textwrap.dedent("""
        [[rules]]
        name = "slow_ttft"
        metric = "ttft_p90"
        threshold = 1.5
        severity = "info"
    """))
    config = tmp_path / "conf" / "plugins.toml"
    config.write_text('[plugins.alerts]\ndefault_rules = false\nrule_file = "rules.toml"\n')
    assert main(["--config", str(config), "alerts", "rules"]) == 0
    out = capsys.readouterr().out
    assert "slow_ttft" in out and "ttft_p90 > 1.5 over 5m" in out

    (tmp_path / "conf" / "rules.toml").write_text('[[rules]]\nname = "x"\nmetric = "spend"\nop = "~"\n')
    assert main(["--config", str(config), "alerts", "rules"]) == 1
    err = capsys.readouterr().err
    assert f"rule_file {tmp_path / 'conf' / 'rules.toml'}: rules[0]: 'threshold' is a required property" in err
    assert "rules[0].op: '~' is not one of" in err


def test_a_bad_rule_file_disables_the_plugin_with_the_reason(tmp_path: Path,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    plugin = AlertsPlugin()
    obs, _ = observer(tmp_path, '[plugins.alerts]\nrule_file = "missing.toml"\n', plugin, strict=False)
    try:
        info = obs.plugins.info("alerts")
    finally:
        obs.shutdown(5)
    assert info is not None and info.status == "failed"
    assert "missing.toml: cannot read it" in (info.error or "")
    assert plugin.thread is None


def test_a_template_that_cannot_work_is_refused() -> None:
    with pytest.raises(ValueError, match=r"rule 'x': template '\{value:q\}'"):
        load_rules({"default_rules": False,
                    "rules": [{"name": "x", "metric": "spend", "threshold": 1, "summary": "{value:q}"}]})


# ---- commands ------------------------------------------------------------------------------


@pytest.fixture
def alerting_store(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    now = time.time_ns()
    minute = now - MINUTE - at(0)  # shift the helper's times to "a minute ago"
    spans = per_minute([0], lambda m, i: call(at(m, i) + minute, status="error" if i < 3 else "ok",
                                               latency_s=3.0 if i < 2 else 0.1))
    write(url, spans, alerts=[
        Alert("error_rate", "firing", "critical", 0.3, 0.01, now - 10 * MINUTE, summary="30% failed",
              labels={"model": "gpt-4o"}, trace_ids=(spans[0].trace_id,)),
        Alert("p95_latency", "resolved", "warning", 4.0, 2.0, now - 120 * MINUTE, now - 100 * MINUTE,
              summary="slow"),
        Alert("p95_latency", "inactive", "warning", 2.5, 2.0, now - 5 * MINUTE, now - 4 * MINUTE),
    ])
    return url


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = main(list(args))
    out = capsys.readouterr()
    return status, out.out, out.err


def test_alerts_lists_stored_alerts(alerting_store: str, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "alerts", "--db", alerting_store)
    assert status == 0
    assert "error_rate" in out and "firing" in out and "model=gpt-4o" in out and "resolved" in out
    assert "inactive" not in out
    _, out, _ = run(capsys, "alerts", "--db", alerting_store, "--firing")
    assert "error_rate" in out and "p95_latency" not in out
    _, out, _ = run(capsys, "alerts", "--db", alerting_store, "--since", "30m", "--json")
    data = json.loads(out)
    assert [a["rule"] for a in data["alerts"]] == ["error_rate"]
    assert data["alerts"][0]["trace_ids"] and data["alerts"][0]["labels"] == {"model": "gpt-4o"}
    _, out, _ = run(capsys, "alerts", "--db", alerting_store, "--state", "inactive", "--json")
    assert [a["state"] for a in json.loads(out)["alerts"]] == ["inactive"]


def test_alerts_test_evaluates_a_rule_now(alerting_store: str, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "alerts", "test", "error_rate", "--db", alerting_store)
    assert status == 0
    assert "error_rate > 0.01 over 5m for 5m" in out and "0.3" in out and "yes (after 5m)" in out
    status, out, _ = run(capsys, "alerts", "test", "p95_latency", "--db", alerting_store, "--json")
    (series,) = json.loads(out)["series"]
    assert series["fires"] is True and series["value"] == pytest.approx(3.0) and len(series["trace_ids"]) == 2
    _, out, _ = run(capsys, "alerts", "test", "error_rate", "--db", alerting_store, "--at", "2h")
    assert "no data in the last 5m before" in out and "it does not fire" in out
    status, _, err = run(capsys, "alerts", "test", "eror_rate", "--db", alerting_store)
    assert status == 1 and "no alert rule 'eror_rate' (did you mean 'error_rate'?)" in err


def test_alerts_on_a_missing_store_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(capsys, "alerts", "--db", f"sqlite:///{tmp_path / 'none.db'}")
    assert status == 1 and "no Chainsight store at" in err
    assert not (tmp_path / "none.db").exists()


def test_export_writes_a_rule_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_file = tmp_path / "rules.yml"
    status, _, err = run(capsys, "export", "prometheus-rules", "-o", str(out_file))
    assert status == 0
    text = out_file.read_text()
    assert "alert: \"p95_latency\"" in text and "llm_request_latency_seconds_bucket" in text
    assert "rule 'expensive_request' not exported: llm_cost_dollars_total is a counter" in err
    assert "wrote 5 rules" in err
