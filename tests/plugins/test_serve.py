"""chainsight serve: /metrics and /healthz for a store, fed by following it."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families
from prometheus_server import Prometheus

from chainsight.framework.model import Sample, Score, Span
from chainsight.plugins.grafana import dashboard, queries
from chainsight.plugins.llm_metrics import LlmMetrics
from chainsight.plugins.serve import Serve
from chainsight.storage import schema
from chainsight.storage.engine import open_engine
from chainsight.storage.writer import StoreWriter, WriteBatch

MS = 1_000_000


def llm_trace(model: str, t0: int, *, tokens: tuple[int, int] = (100, 20), cost: float | None = 0.01,
              error: bool = False) -> list[Span]:
    root = Span("answer", "chain", start_ns=t0)
    root.end_ns, root.status = t0 + 300 * MS, "ok"
    llm = Span("chat", "llm", trace_id=root.trace_id, parent_id=root.span_id, start_ns=t0 + MS)
    llm.model, llm.provider = model, "openai"
    llm.input_tokens, llm.output_tokens = tokens
    llm.cost_usd = cost
    llm.first_token_ns = t0 + 51 * MS
    llm.end_ns = t0 + 251 * MS
    llm.status = "error" if error else "ok"
    if error:
        llm.error, llm.error_type = "rate limited", "RateLimitError"
    return [root, llm]


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, bytes(r.read())
    except urllib.error.HTTPError as error:
        return error.code, bytes(error.read())


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, body = get(f"http://127.0.0.1:{port}/metrics")
    assert status == 200
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body.decode()) for s in family.samples}


def store_sum(url: str, column: str) -> float:
    s = schema.spans
    engine = open_engine(url)
    with engine.connect() as conn:
        value = conn.execute(sa.select(sa.func.sum(s.c[column])).where(s.c.kind == "llm")).scalar()
    engine.dispose()
    return float(value or 0)


def start_cli_serve(url: str, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], int]:
    proc = subprocess.Popen([sys.executable, "-m", "chainsight.framework.cli", "serve", "--db", url,
                             "--port", "0"], stderr=subprocess.PIPE, env=env)
    assert proc.stderr is not None
    line = proc.stderr.readline().decode()
    match = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
    assert match, line + proc.stderr.read().decode() if proc.poll() is not None else line
    return proc, int(match.group(1))


def run_stats(url: str, env: dict[str, str]) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "chainsight.framework.cli", "stats", "--since", "1h",
                           "--json", "--db", url], capture_output=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    return dict(json.loads(done.stdout))


def test_a_real_prometheus_scrapes_serve_and_answers_with_the_stores_figures(
        sqlite_url: str, tmp_path: Path) -> None:
    writer = StoreWriter(sqlite_url)
    t0 = time.time_ns()
    first = llm_trace("gpt-4o", t0) + llm_trace("gpt-4o-mini", t0 + MS, tokens=(7, 3), cost=None)
    failed = Score("length", "check", first[0].trace_id, first[1].span_id, 1.0, passed=False)
    passed = Score("pii", "check", first[0].trace_id, first[1].span_id, 0.0, passed=True)
    writer.write(WriteBatch(spans=first, scores=[failed, passed]))

    env = {**os.environ, "CHAINSIGHT_CONFIG": str(tmp_path / "none.toml")}
    (tmp_path / "none.toml").write_text("")
    proc, port = start_cli_serve(sqlite_url, env)
    prometheus = Prometheus(tmp_path, [f"127.0.0.1:{port}"])
    try:
        # Stored after serve started, by "another process": followed too.
        later = llm_trace("gpt-4o", t0 + 2 * MS, tokens=(50, 5), cost=0.002, error=True)
        thumbs = Score("thumbs", "feedback", later[0].trace_id, None, 1.0)
        writer.write(WriteBatch(spans=later, scores=[thumbs]))

        prometheus.wait_for('sum(llm_tokens_total{type="input"})', store_sum(sqlite_url, "input_tokens"))
        assert store_sum(sqlite_url, "input_tokens") == 157
        prometheus.wait_for('sum(llm_tokens_total{type="output"})', store_sum(sqlite_url, "output_tokens"))
        prometheus.wait_for("sum(llm_requests_total)", 3)
        prometheus.wait_for('llm_requests_total{model="gpt-4o",status="error"}', 1)
        prometheus.wait_for("sum(llm_cost_dollars_total)", store_sum(sqlite_url, "cost_usd"))
        prometheus.wait_for('llm_errors_total{error_type="RateLimitError"}', 1)
        prometheus.wait_for('llm_check_failures_total{check="length"}', 1)
        assert prometheus.scalar('llm_check_failures_total{check="pii"}') is None
        prometheus.wait_for('llm_feedback_total{value="up"}', 1)
        # Every call took 250 ms: all 3 in the (0.1, 0.25] bucket, so the median
        # Prometheus interpolates is 0.1 + 0.15 * 1.5 / 3.
        prometheus.wait_for("histogram_quantile(0.5, sum by (le) (llm_request_latency_seconds_bucket))",
                            0.175)
        assert prometheus.scalar("sum(llm_time_to_first_token_seconds_count)") == 3
        # Every query of the Grafana dashboard runs (Grafana's variables filled in).
        exprs = queries(dashboard())
        assert len(exprs) >= 15
        for expr in exprs:
            promql = expr.replace("$__rate_interval", "1m").replace("$model", ".*")
            answer = prometheus.query(promql)
            assert answer["status"] == "success", (promql, answer)
        assert prometheus.scalar(
            'sum(llm_tokens_total{model=~".*"})') == store_sum(sqlite_url, "input_tokens") + store_sum(
                sqlite_url, "output_tokens")
        # chainsight stats prints the same figures from the store.
        stats = run_stats(sqlite_url, env)
        assert stats["llm_calls"] == prometheus.scalar("sum(llm_requests_total)") == 3
        assert stats["input_tokens"] == prometheus.scalar('sum(llm_tokens_total{type="input"})')
        assert stats["cost_usd"] == pytest.approx(prometheus.scalar("sum(llm_cost_dollars_total)"))
        assert stats["errors_by_type"] == {"RateLimitError": 1}
        # percentiles from the store's rollups: within 2%
        assert stats["latency_seconds"]["p50"] == pytest.approx(0.25, rel=0.02)
        assert stats["ttft_seconds"]["p50"] == pytest.approx(0.05, rel=0.02)
        assert stats["check_failures"] == {"length": 1} and stats["feedback"] == {"up": 1}
        status, body = get(f"http://127.0.0.1:{port}/healthz")
        health = json.loads(body)
        assert status == 200 and health["spans_seen"] == 6 and health["status"] == "ok"
    finally:
        prometheus.close()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err.decode()
    # It stored where it was: a restart does not count the same spans again.
    engine = open_engine(sqlite_url)
    with engine.connect() as conn:
        position = conn.execute(sa.select(schema.followers.c.position)).scalar()
    engine.dispose()
    # Two score rows (the passing pii check is stored on its span, read with it).
    assert position["spans"]["high"] == 6 and position["scores"]["high"] == 2
    writer.close()


def test_serve_binds_loopback_by_default_and_names_its_endpoints(sqlite_url: str) -> None:
    StoreWriter(sqlite_url).write(WriteBatch(spans=llm_trace("m", time.time_ns())))
    serve = Serve(sqlite_url, {})
    host, port = serve.start(port=0)
    try:
        assert host == "127.0.0.1"
        status, body = get(f"http://127.0.0.1:{port}/nothing")
        assert status == 404 and b"GET /metrics" in body and b"GET /healthz" in body
    finally:
        serve.stop()


def test_health_is_503_while_the_store_is_unreadable_and_recovers(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    writer = StoreWriter(url)
    writer.write(WriteBatch(spans=llm_trace("m", time.time_ns())))
    serve = Serve(url, {"poll_interval_s": 0.1})
    _, port = serve.start(port=0)
    try:
        _wait(lambda: serve.feed.spans_seen == 2, "the first spans")
        engine = open_engine(url)
        with engine.begin() as conn:  # an outage: the followed table is gone for a while
            conn.exec_driver_sql("ALTER TABLE spans RENAME TO spans_away")

        def follow_failing() -> bool:
            status, body = get(f"http://127.0.0.1:{port}/healthz")
            error = json.loads(body)["tasks"]["follow store"]["error"]
            return status == 503 and "no such table: spans" in (error or "")

        _wait(follow_failing, "/healthz to say 503 with the follower's reason")
        with engine.begin() as conn:
            conn.exec_driver_sql("ALTER TABLE spans_away RENAME TO spans")
        engine.dispose()
        writer.write(WriteBatch(spans=llm_trace("m", time.time_ns())))
        _wait(lambda: get(f"http://127.0.0.1:{port}/healthz")[0] == 200, "/healthz to recover")
        _wait(lambda: serve.feed.spans_seen == 4, "the spans stored meanwhile")
        assert scrape(port)[("llm_requests_total", (("model", "m"), ("provider", "openai"),
                                                    ("status", "ok")))] == 2
    finally:
        serve.stop()
        writer.close()


def _wait(condition: Any, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"waited {timeout} s for {what}"
        time.sleep(0.05)


def test_label_cardinality_is_bounded() -> None:
    metrics = LlmMetrics(max_label_values=2)
    t0 = time.time_ns()
    for i in range(5):
        metrics.observe_spans(llm_trace(f"model-{i}", t0))
    values = {s.labels["model"]: s.value
              for f in metrics.registry.collect() if f.name == "llm_requests"
              for s in f.samples if s.name == "llm_requests_total"}
    assert values == {"model-0": 1, "model-1": 1, "other": 3}


def test_gpu_gauges_and_pipeline_counters_come_from_stored_samples(sqlite_url: str) -> None:
    now = time.time_ns()
    StoreWriter(sqlite_url).write(WriteBatch(samples=[
        Sample("llm_gpu_utilization_percent", 40.0, "nvml", now - MS, {"gpu_id": "0"}),
        Sample("llm_gpu_utilization_percent", 55.0, "nvml", now, {"gpu_id": "0"}),
        Sample("llm_gpu_memory_used_bytes", 2e9, "nvml", now, {"gpu_id": "0"}),
        Sample("chainsight_spans_written_total", 10.0, "pipeline", now - MS, {"process": "a"}),
        Sample("chainsight_spans_written_total", 12.0, "pipeline", now, {"process": "a"}),
        Sample("chainsight_spans_written_total", 5.0, "pipeline", now, {"process": "b"}),
        Sample("chainsight_spans_dropped_total", 1.0, "pipeline", now, {"process": "b"}),
    ]))
    serve = Serve(sqlite_url, {})
    _, port = serve.start(port=0)
    try:
        _wait(lambda: serve.tasks[1].runs >= 1, "the samples task")
        got = scrape(port)
        assert got[("llm_gpu_utilization_percent", (("gpu_id", "0"),))] == 55.0
        assert got[("llm_gpu_memory_used_bytes", (("gpu_id", "0"),))] == 2e9
        assert got[("chainsight_spans_written_total", ())] == 17.0
        assert got[("chainsight_spans_dropped_total", ())] == 1.0
        assert ("process_cpu_seconds_total", ()) in got
    finally:
        serve.stop()


def test_the_prometheus_plugin_serves_the_same_metrics_from_inside_the_application(
        sqlite_url: str) -> None:
    from chainsight.framework.config import Settings
    from chainsight.framework.observer import Observer

    settings = Settings(plugins={"prometheus": {"port": 0, "latency_buckets": [0.2, 0.3]}})
    obs = Observer(sqlite_url, settings=settings, strict=True, entry_points=False)
    try:
        plugin = obs.plugins.pm.get_plugin("prometheus")
        assert plugin.address[0] == "127.0.0.1"
        with obs.span("chat", kind="llm") as span:
            span.model, span.provider, span.input_tokens, span.output_tokens = "gpt-4o", "openai", 9, 4
        obs.feedback(span.trace_id, thumbs=-1)
        assert obs.flush(10.0)
        got = scrape(plugin.address[1])
        assert got[("llm_tokens_total", (("model", "gpt-4o"), ("type", "input")))] == 9
        assert got[("llm_feedback_total", (("value", "down"),))] == 1
        assert ("llm_request_latency_seconds_bucket", (("le", "0.3"), ("model", "gpt-4o"))) in got
        assert got[("chainsight_spans_written_total", ())] >= 1
        assert got[("process_resident_memory_bytes", ())] > 0  # the application's own process
    finally:
        obs.shutdown()
    assert plugin._server is None  # its port was closed at shutdown


def test_serve_sends_every_stored_span_over_otlp_with_its_scores(sqlite_url: str) -> None:
    from otlp_receiver import OtlpReceiver

    receiver = OtlpReceiver()
    writer = StoreWriter(sqlite_url)
    spans = llm_trace("gpt-4o", time.time_ns())
    score = Score("length", "check", spans[0].trace_id, spans[1].span_id, 1.0, passed=False)
    writer.write(WriteBatch(spans=spans, scores=[score]))
    serve = Serve(sqlite_url, {"otlp": {"endpoint": receiver.endpoint}})
    serve.start(port=0)
    try:
        _wait(lambda: len(receiver.spans()) == 2, "the spans at the receiver")
    finally:
        serve.stop()
        receiver.close()
    llm = next(s for s in receiver.spans() if s.name == "chat")
    assert [e.name for e in llm.events] == ["gen_ai.evaluation.result"]
    assert serve.otlp.sent == 2


def test_cache_hits_of_langchains_response_cache_are_counted(sqlite_url: str) -> None:
    from langchain_core.caches import InMemoryCache
    from langchain_core.language_models.fake_chat_models import FakeListChatModel

    from chainsight.framework.adapters.langchain import CallbackHandler
    from chainsight.framework.config import Settings
    from chainsight.framework.observer import Observer
    from chainsight.storage.follow import StoreFollower

    obs = Observer(sqlite_url, settings=Settings(), strict=True, entry_points=False)
    try:
        model = FakeListChatModel(responses=["one answer"], cache=InMemoryCache())
        for _ in range(3):  # the first call fills the cache, the next two hit it
            model.invoke("same question", config={"callbacks": [CallbackHandler(obs)]})
        assert obs.flush(10.0)
    finally:
        obs.shutdown()
    follower = StoreFollower(sqlite_url)
    metrics = LlmMetrics()
    metrics.observe_spans(follower.poll().spans)
    follower.close()
    values = {f.name: s.value for f in metrics.registry.collect() for s in f.samples
              if s.name.endswith("_total") and f.name.startswith("llm_cache")}
    assert values == {"llm_cache_hits": 2, "llm_cache_misses": 1}


@pytest.mark.postgres
def test_serve_rides_out_a_postgres_outage_and_misses_nothing(postgres_url: str) -> None:
    sys.path.insert(0, str(Path(__file__).parent.parent / "framework"))
    from tcp_proxy import TcpProxy

    url = sa.make_url(postgres_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    writer = StoreWriter(postgres_url)  # the applications reach the store directly
    writer.write(WriteBatch(spans=llm_trace("m", time.time_ns())))
    serve = Serve(proxied, {"poll_interval_s": 0.1, "samples_interval_s": 0.2})
    _, port = serve.start(port=0)
    try:
        _wait(lambda: serve.feed.spans_seen == 2, "the first spans")
        proxy.cut()
        writer.write(WriteBatch(spans=llm_trace("m", time.time_ns())))
        _wait(lambda: get(f"http://127.0.0.1:{port}/healthz")[0] == 503, "/healthz to say 503", 30)
        proxy.restore()
        _wait(lambda: serve.feed.spans_seen == 4, "the spans stored during the outage", 30)
        _wait(lambda: get(f"http://127.0.0.1:{port}/healthz")[0] == 200, "/healthz to recover", 30)
    finally:
        serve.stop()
        proxy.close()
        writer.close()
    assert scrape_total(serve) == 2


def scrape_total(serve: Serve) -> float:
    return sum(s.value for f in serve.registry.collect() if f.name == "llm_requests"
               for s in f.samples if s.name == "llm_requests_total")


def test_without_the_otlp_extra_serve_does_not_route_v1_traces_and_says_why(
        sqlite_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    # What an environment without opentelemetry-proto looks like to an import.
    monkeypatch.setitem(sys.modules, "opentelemetry.proto", None)
    monkeypatch.setitem(sys.modules, "opentelemetry.proto.collector.trace.v1.trace_service_pb2", None)
    StoreWriter(sqlite_url).write(WriteBatch(spans=llm_trace("m", time.time_ns())))
    serve = Serve(sqlite_url, {})  # otlp_in defaults to true
    _, port = serve.start(port=0)
    try:
        request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/traces", data=b"{}", method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            urllib.request.urlopen(request, timeout=5)
            status = 200
        except urllib.error.HTTPError as error:
            status = error.code
        _, health = get(f"http://127.0.0.1:{port}/healthz")
    finally:
        serve.stop()
    assert status == 404  # not a 500 at every request
    said = [r.getMessage() for r in caplog.records if "otlp_in" in r.getMessage()]
    assert len(said) == 1 and "pip install 'chainsight[otlp]'" in said[0]
    assert json.loads(health)["otlp_in"].startswith("off: OTLP in ([plugins.serve] otlp_in) is off")


def test_serve_evaluates_alerts_when_configured_to_and_notifies(sqlite_url: str, tmp_path: Path) -> None:
    from chainsight.storage.query import Store
    from tests.plugins.cases.alerting import call, write

    now = time.time_ns()
    write(sqlite_url, [call(now - i * 10**9, status="error") for i in range(5)])
    log_path = tmp_path / "notified.jsonl"
    config = tmp_path / "plugins.toml"
    config.write_text(f"""
[plugins.alerts]
evaluate = "serve"   # the applications leave it to chainsight serve
default_rules = false
interval = "100ms"
[[plugins.alerts.rules]]
name = "errors"
metric = "error_rate"
threshold = 0.5
window = "5m"
[plugins.jsonlog]    # a notifier plugin: alert_changed writes a line
path = {json.dumps(str(log_path))}
""")
    env = {**os.environ, "CHAINSIGHT_CONFIG": str(config)}
    proc, port = start_cli_serve(sqlite_url, env)
    try:
        _wait(lambda: log_path.exists() and '"event": "alert"' in log_path.read_text(),
              "the alert notified through serve")
        _, health = get(f"http://127.0.0.1:{port}/healthz")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr.decode()
    assert json.loads(health)["tasks"]["evaluate alerts"]["ok"]
    (line,) = [json.loads(x) for x in log_path.read_text().splitlines() if '"alert"' in x]
    assert (line["rule"], line["state"]) == ("errors", "firing")
    with Store(sqlite_url) as store:
        (stored,) = store.list_alerts()
    assert (stored.rule, stored.state, stored.alert_id) == ("errors", "firing", line["alert_id"])
    engine = open_engine(sqlite_url)
    with engine.connect() as conn:  # serve gave the lease up at its exit
        assert conn.execute(sa.text("SELECT expires_ns FROM leases")).scalar() == 0
    engine.dispose()
