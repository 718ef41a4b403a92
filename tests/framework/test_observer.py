"""The recorder end to end: hand-made traces, every hook, feedback, isolation."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from recording_plugin import EveryHook, RaisesEverywhere

from chainsight.framework.cli import main as cli_main
from chainsight.framework.model import Alert, Span
from chainsight.framework.observer import Observer, current_span
from chainsight.storage.query import Store


@pytest.fixture
def observer(store_url: str, tmp_path: Path) -> Iterator[Observer]:
    obs = Observer(store_url, builtins=(), entry_points=False, strict=True, spill_path=tmp_path / "spill.jsonl")
    yield obs
    obs.shutdown(timeout=5)


def test_three_level_trace_round_trips(observer: Observer, store_url: str) -> None:
    with observer.span("agent", kind="agent", user_id="alice", session_id="s-1",
                       tags=["prod"], metadata={"release": "1.2"}) as root:
        root.inputs = {"question": "what is 2+2?"}
        with observer.span("plan", kind="chain") as plan:
            with observer.span("chat", kind="llm", model="gpt-4o", provider="openai") as llm:
                time.sleep(0.01)
                llm.first_token_ns = time.time_ns()
                time.sleep(0.02)
                llm.input_tokens, llm.output_tokens = 12, 5
                llm.set_attribute("temperature", 0.2)
                llm.outputs = "4"
            plan.outputs = {"steps": 1}
        root.outputs = "4"
    assert observer.flush(timeout=10)

    detail = Store(store_url).get_trace(root.trace_id)
    assert detail is not None
    by_name = {s.name: s for s in detail.spans}
    assert set(by_name) == {"agent", "plan", "chat"}
    assert by_name["agent"].parent_id is None
    assert by_name["plan"].parent_id == by_name["agent"].span_id
    assert by_name["chat"].parent_id == by_name["plan"].span_id
    assert {s.trace_id for s in detail.spans} == {root.trace_id}
    chat = by_name["chat"]
    assert (chat.start_ns, chat.end_ns, chat.first_token_ns) == (llm.start_ns, llm.end_ns, llm.first_token_ns)
    assert chat.ttft_s is not None and 0.009 < chat.ttft_s < 0.5
    assert chat.tpot_s == pytest.approx((llm.end_ns - llm.first_token_ns) / 1e9 / 4)  # type: ignore[operator]
    assert (chat.model, chat.provider, chat.input_tokens, chat.output_tokens) == ("gpt-4o", "openai", 12, 5)
    assert chat.attributes == {"temperature": 0.2}
    assert chat.cost_usd is None  # no pricing plugin: unpriced, not $0
    assert by_name["agent"].inputs == {"question": "what is 2+2?"}
    assert by_name["agent"].metadata == {"release": "1.2"}

    trace = detail.trace
    assert (trace.name, trace.status, trace.user_id, trace.session_id) == ("agent", "ok", "alice", "s-1")
    assert (trace.start_ns, trace.end_ns) == (root.start_ns, root.end_ns)
    assert (trace.span_count, trace.llm_count, trace.input_tokens, trace.output_tokens) == (3, 1, 12, 5)
    assert "prod" in trace.tags


def test_errors_mark_span_and_trace(observer: Observer, store_url: str) -> None:
    with pytest.raises(ZeroDivisionError), observer.span("outer") as outer, observer.span("inner", kind="tool"):
        1 / 0  # noqa: B018
    observer.flush(timeout=10)
    detail = Store(store_url).get_trace(outer.trace_id)
    assert detail is not None
    inner = next(s for s in detail.spans if s.name == "inner")
    assert (inner.status, inner.error_type) == ("error", "ZeroDivisionError")
    assert "division by zero" in (inner.error or "")
    assert detail.trace.status == "error"


def test_decorator_nests_sync_and_async(observer: Observer, store_url: str) -> None:
    @observer.observe(kind="tool")
    def add(a: int, b: int) -> int:
        return a + b

    @observer.observe(name="pipeline")
    async def run() -> int:
        assert current_span() is not None
        results = await asyncio.gather(*(asyncio.to_thread(add, i, 1) for i in range(3)))
        return sum(results)

    assert asyncio.run(run()) == 6
    observer.flush(timeout=10)
    page = Store(store_url).list_traces(limit=10)
    [trace] = [t for t in page.items if t.name == "pipeline"]
    detail = Store(store_url).get_trace(trace.trace_id)
    assert detail is not None
    root = next(s for s in detail.spans if s.name == "pipeline")
    children = [s for s in detail.spans if s.parent_id == root.span_id]
    assert len(children) == 3 and all(s.kind == "tool" for s in children)
    assert sorted(s.outputs for s in children) == [1, 2, 3]
    assert root.outputs == 6


def test_every_hook_runs_in_order_on_the_worker(store_url: str, tmp_path: Path) -> None:
    config = tmp_path / "plugins.toml"
    config.write_text("[plugins.every_hook]\nprice_per_token = 0.5\n")
    plugin = EveryHook()
    obs = Observer(store_url, config_path=config, builtins=(), entry_points=False, strict=True,
                   plugins=[plugin], spill_path=tmp_path / "spill.jsonl")
    assert plugin.config == {"price_per_token": 0.5, "label": "fine"}  # defaults applied
    with obs.span("root") as root, obs.span("llm", kind="llm", model="m") as llm:
        llm.input_tokens, llm.output_tokens = 3, 1
    scores = obs.feedback(root.trace_id, thumbs=1, comment="nice")
    obs.record_alert(Alert("latency_p95", "firing", value=3.0, threshold=2.0, summary="slow"))
    deadline = time.monotonic() + 5
    while not plugin.samples and time.monotonic() < deadline:
        time.sleep(0.02)
    assert obs.flush(timeout=10)
    obs.shutdown(timeout=5)

    assert plugin.processed == ["llm", "root"]
    assert sorted(plugin.finished) == ["llm", "root"]
    assert plugin.traces == [("root", ["llm", "root"])]
    assert plugin.feedback == scores and [a.rule for a in plugin.alerts] == ["latency_p95"]
    assert plugin.samples and plugin.samples[0].labels == {"gpu_id": "0"}
    assert plugin.calls["shutdown"] == 1 and plugin.shutdown_timeout is not None
    assert 0 < plugin.shutdown_timeout <= 5
    pipeline_threads = {t.split(":")[1] for t in plugin.threads if t.split(":")[0] in
                        {"process_span", "price_span", "check_span", "spans_finished", "trace_finished",
                         "feedback_recorded", "alert_changed"}}
    assert pipeline_threads == {"chainsight-pipeline"}
    assert {t.split(":")[1] for t in plugin.threads if t.startswith("collect_samples:")} == {"chainsight-sampler"}

    detail = Store(store_url).get_trace(root.trace_id)
    assert detail is not None
    stored_llm = next(s for s in detail.spans if s.name == "llm")
    assert stored_llm.cost_usd == pytest.approx(2.0)  # 4 tokens x 0.5
    names = sorted((s.name, s.source) for s in detail.scores)
    assert names == [("name_length", "check"), ("name_length", "check"), ("thumbs", "feedback"),
                     ("trace_hook", "check")]
    assert all(s.label == "fine" for s in detail.scores if s.name == "name_length")


def test_raising_plugin_never_stops_storage_or_others(store_url: str, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    good = EveryHook()
    obs = Observer(store_url, builtins=(), entry_points=False, strict=False,
                   plugins=[RaisesEverywhere(), good], spill_path=tmp_path / "spill.jsonl",
                   pipeline={"degrade_after": 3})
    trace_ids = []
    for i in range(6):
        with obs.span(f"root-{i}") as root, obs.span("llm", kind="llm", model="m") as llm:
            llm.input_tokens = 2
        trace_ids.append(root.trace_id)
        obs.flush(timeout=10)
    stats = obs.stats()
    assert stats.written == 12 and stats.failed == 0
    assert stats.plugin_errors >= 3
    assert obs.dispatcher.health["raises_everywhere"].degraded
    assert not obs.dispatcher.health["every_hook"].degraded
    assert len(good.processed) == 12 and len(good.traces) == 6
    store = Store(store_url)
    assert all(store.get_trace(t) is not None for t in trace_ids)

    # `chainsight plugins` shows the runtime health of the observer's plugins
    obs.flush(timeout=5)
    assert cli_main(["plugins", "--db", store_url, "--json"]) == 0
    out = capsys.readouterr().out
    assert '"raises_everywhere"' in out and '"degraded"' in out
    obs.shutdown(timeout=5)


def test_hot_path_never_raises_into_user_code(sqlite_url: str, tmp_path: Path) -> None:
    obs = Observer(sqlite_url, builtins=(), entry_points=False, spill_path=tmp_path / "s.jsonl")
    obs.end_span("not a span")  # type: ignore[arg-type]
    obs.end_span(None)  # type: ignore[arg-type]
    span = obs.start_span(object(), tags=5)  # type: ignore[arg-type]
    assert isinstance(span, Span)
    assert obs.internal_errors >= 3
    obs.shutdown(timeout=5)


def test_feedback_rejects_bad_input(sqlite_url: str, tmp_path: Path) -> None:
    obs = Observer(sqlite_url, builtins=(), entry_points=False, spill_path=tmp_path / "s.jsonl")
    with pytest.raises(ValueError, match="thumbs must be"):
        obs.feedback("t1", thumbs=2)
    with pytest.raises(ValueError, match="rating must be an integer from 1 to 5"):
        obs.feedback("t1", rating=9)
    with pytest.raises(ValueError, match="needs thumbs, rating or comment"):
        obs.feedback("t1")
    [score] = obs.feedback("t1", rating=5, comment="great")
    assert (score.name, score.value, score.passed, score.source) == ("rating", 5.0, True, "feedback")
    obs.shutdown(timeout=5)


def test_the_store_is_handed_in_by_a_factory(sqlite_url: str, tmp_path: Path) -> None:
    """The core builds its store through ``store_api.StoreFactory``; by
    default the storage writer, named in ``defaults.DEFAULT_STORE_FACTORY``."""
    from chainsight.framework.store_api import Rows, default_store_factory
    from chainsight.storage.writer import StoreWriter

    assert default_store_factory() is StoreWriter
    built: list[tuple[str, int]] = []
    written: list[str] = []

    class CountingStore(StoreWriter):
        def write_prepared(self, rows: Rows) -> None:
            written.extend(row["span_id"] for row in rows.get("spans", []))
            super().write_prepared(rows)

    def factory(url: str, *, max_content_bytes: int) -> CountingStore:
        built.append((url, max_content_bytes))
        return CountingStore(url, max_content_bytes=max_content_bytes)

    obs = Observer(sqlite_url, builtins=(), entry_points=False, strict=True, store_factory=factory,
                   spill_path=tmp_path / "spill.jsonl", pipeline={"max_content_bytes": 1234})
    try:
        with obs.span("step", kind="chain") as span:
            pass
        assert obs.flush(timeout=10)
    finally:
        obs.shutdown(timeout=5)
    assert built == [(sqlite_url, 1234)]
    assert isinstance(obs.writer, CountingStore)
    assert span.span_id in written
    assert Store(sqlite_url).get_trace(span.trace_id) is not None


def test_exit_keeps_the_configured_deadline_while_start_up_is_still_running(tmp_path: Path) -> None:
    """Shutdown right after the first span, while start-up (which reads the
    configuration) still runs: the deadline is the configured 1.5 s, not the
    default 5 s, even though a sink then hangs."""
    from chainsight.framework import hookimpl

    class SlowStartHangingSink:
        name = "slow_start_hanging_sink"

        @hookimpl
        def configure(self) -> None:
            time.sleep(0.5)

        @hookimpl
        def spans_finished(self) -> None:
            time.sleep(30)

    config = tmp_path / "plugins.toml"
    config.write_text("[pipeline]\nshutdown_timeout_s = 1.5\n")
    obs = Observer(f"sqlite:///{tmp_path / 'd.db'}", config_path=config, builtins=(), entry_points=False,
                   plugins=[SlowStartHangingSink()], spill_path=tmp_path / "spill.jsonl")
    with obs.span("first"):
        pass
    started = time.monotonic()
    obs.shutdown()
    assert time.monotonic() - started < 3.0


def test_shutdown_without_a_timeout_stops_the_sampler(tmp_path: Path) -> None:
    """shutdown() takes its deadline from the configuration; with a sampler
    running it once divided None by 4."""
    obs = Observer(f"sqlite:///{tmp_path / 'sampled.db'}", plugins=[EveryHook()], builtins=(),
                   entry_points=False, strict=True, spill_path=tmp_path / "spill")
    assert obs.shutdown() is True
