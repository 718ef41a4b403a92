"""chainsight.testing: the harness a plugin author's tests run a plugin in."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from chainsight import Alert, Sample, Score, Span, hookimpl
from chainsight.framework.extension import CommandRegistry
from chainsight.testing import (
    ConfigError,
    PluginFailed,
    PluginHarness,
    PluginLoadError,
)

ROOT = Path(__file__).resolve().parents[2]


class Words:
    """A check with a schema, and a command reading the store."""

    name = "words"
    CONFIG_SCHEMA: Mapping[str, Any] = {
        "type": "object",
        "additionalProperties": False,
        "properties": {"max_words": {"type": "integer", "default": 3}, "token": {"type": "string"}},
    }

    def __init__(self) -> None:
        self.config: Mapping[str, Any] = {}
        self.seen: list[Any] = []

    @hookimpl
    def configure(self, config: Mapping[str, Any]) -> None:
        self.config = config

    @hookimpl
    def check_span(self, span: Span) -> list[Score] | None:
        self.seen.append(span.outputs)
        if not isinstance(span.outputs, str):
            return None
        words = len(span.outputs.split())
        return [Score("words", "check", span.trace_id, span.span_id, float(words),
                      passed=words <= self.config["max_words"])]

    @hookimpl
    def register_commands(self, cli: CommandRegistry) -> None:
        def run(ns: Any) -> int:
            from chainsight.storage.query import Store

            with Store(ns.db, create=False) as store:
                print(len(store.list_scores(name="words")), "scores", "json" if ns.json else "text")
            return 3

        cli.add("words", "count the words scores", lambda parser: None, run)


class Raises:
    """Raises in the hook named by ``where``."""

    name = "raises"

    def __init__(self, where: str) -> None:
        self.where = where

    def _maybe(self, hook: str) -> None:
        if hook == self.where:
            raise RuntimeError(f"{hook} exploded")

    @hookimpl
    def check_span(self, span: Span) -> None:
        self._maybe("check_span")

    @hookimpl
    def spans_finished(self, spans: Sequence[Span]) -> None:
        self._maybe("spans_finished")

    @hookimpl
    def collect_samples(self) -> list[Sample]:
        self._maybe("collect_samples")
        return [Sample("raises_gauge", 1.0, source="raises")]

    @hookimpl
    def shutdown(self, timeout: float) -> None:
        self._maybe("shutdown")


def answer(h: PluginHarness, text: str, name: str = "answer") -> Span:
    with h.span(name, kind="llm") as span:
        span.outputs = text
    return span


# ---- what a run reports -------------------------------------------------------------


def test_scores_spans_sinks_and_health_of_one_plugin(tmp_path: Path) -> None:
    plugin = Words()
    with PluginHarness(plugin, config={"max_words": 2}, directory=tmp_path) as h:
        with h.span("root") as root:
            short, long = answer(h, "one two", "short"), answer(h, "one two three", "long")
        result = h.flush()
    assert [s.passed for s in result.scores_for(short)] == [True]
    assert [(s.value, s.passed) for s in result.scores_for(long, "words")] == [(3.0, False)]
    assert result.scores_for(root) == []
    assert {s.name for s in result.spans} == {"root", "short", "long"}
    assert len(result.traces) == 1 and result.traces[0].span_count == 3
    assert sorted(s.name for s in result.sinks.spans) == ["long", "root", "short"]
    assert result.plugin is not None and result.plugin.hooks == ("check_span", "configure",
                                                                 "register_commands")
    health = result.plugin_health
    assert health is not None and (health.calls, health.failures) == (3, 0)
    assert set(result.health) == {"words"}  # the harness's own probe is not listed
    assert result.flushed and result.stats.written == 3
    assert plugin.config == {"max_words": 2}
    assert result.span("short").span_id == short.span_id
    with pytest.raises(AssertionError, match="0 stored spans are named 'nope'"):
        result.span("nope")


def test_feedback_alerts_and_samples_reach_sinks_and_store(tmp_path: Path) -> None:
    with PluginHarness(Words(), directory=tmp_path) as h:
        span = answer(h, "hi")
        h.flush()
        h.observer.feedback(span.trace_id, thumbs=1, comment="mail me at jo@example.com")
        h.observer.record_alert(Alert("slow_answers", "firing", value=3.0, threshold=2.0))
        h.observer.record_sample(Sample("queue_depth", 7.0, source="test"))
        result = h.flush()
    assert [s.label for s in result.sinks.feedback] == ["up"]
    assert [a.rule for a in result.sinks.alerts] == [a.rule for a in result.alerts] == ["slow_answers"]
    assert [s.name for s in result.sinks.samples] == ["queue_depth"]
    assert [s.name for s in result.samples] == ["queue_depth"]  # the pipeline's counters left out
    assert [s.name for s in result.trace_scores(span.trace_id)] == ["thumbs"]


def test_builtins_by_name_run_around_the_plugin(tmp_path: Path) -> None:
    plugin = Words()
    with PluginHarness(plugin, builtins=["redaction"], directory=tmp_path) as h:
        answer(h, "write to jo@example.com")
        result = h.flush()
    assert plugin.seen == ["write to [redacted:email]"]  # redaction runs first, as in production
    assert result.span("answer").outputs == "write to [redacted:email]"
    assert set(result.health) >= {"words", "redaction"}
    with pytest.raises(ValueError, match=r"unknown built-in plugin 'redact'; the built-ins are: redaction"):
        PluginHarness(Words(), builtins=["redact"])


def test_recorded_and_live_langchain_spans(tmp_path: Path) -> None:
    from langchain_core.language_models import FakeListChatModel

    from chainsight.testing import SAMPLE_TRACE

    plugin = Words()
    with PluginHarness(plugin, directory=tmp_path) as h:
        fed = h.feed(SAMPLE_TRACE)
        FakeListChatModel(responses=["fine thanks"]).invoke("hi", config={"callbacks": [h.handler()]})
        result = h.flush()
    assert len(fed) == 14 and fed[-1].parent_id is None  # in end order: a root last
    assert {t.name for t in result.traces} == {"rag", "summarize", "lookup", "FakeListChatModel"}
    assert result.span("lookup").status == "error"
    # recorded content is the stored dict form; a live run hands over the message object
    assert any(isinstance(o, dict) and o.get("type") == "ai" for o in plugin.seen)
    assert any(type(o).__name__ == "AIMessage" for o in plugin.seen)


def test_a_recording_fed_twice_is_copied(tmp_path: Path) -> None:
    from chainsight.testing import SAMPLE_TRACE, load_spans

    spans = load_spans(SAMPLE_TRACE)
    before = [s.to_dict() for s in spans]
    for i in range(2):
        with PluginHarness(None, builtins=["redaction"], directory=tmp_path / str(i)) as h:
            h.feed(spans)
            assert len(h.flush().spans) == 14
    assert [s.to_dict() for s in spans] == before


# ---- strict: failures fail the test ---------------------------------------------------


def test_a_check_that_raises_fails_flush_with_its_exception(tmp_path: Path) -> None:
    h = PluginHarness(Raises("check_span"), directory=tmp_path)
    try:
        answer(h, "x")
        with pytest.raises(PluginFailed, match="pipeline worker error") as failed:
            h.flush()
        assert isinstance(failed.value.__cause__, RuntimeError)
        assert str(failed.value.__cause__) == "check_span exploded"
        assert "not everything recorded was stored" in str(failed.value)
        answer(h, "y")
        with pytest.raises(PluginFailed):  # each failure is reported once, each new one again
            h.flush()
    finally:
        h.close()


def test_a_sink_that_raises_fails_flush(tmp_path: Path) -> None:
    with PluginHarness(Raises("spans_finished"), directory=tmp_path) as h:
        answer(h, "x")
        with pytest.raises(PluginFailed) as failed:
            h.flush()
    assert str(failed.value.__cause__) == "spans_finished exploded"


def test_a_shutdown_hook_that_raises_fails_close(tmp_path: Path) -> None:
    h = PluginHarness(Raises("shutdown"), directory=tmp_path)
    answer(h, "x")
    h.flush()
    with pytest.raises(PluginFailed, match="chainsight-shutdown") as failed:
        h.close()
    assert str(failed.value.__cause__) == "shutdown exploded"
    assert h.close().flushed  # idempotent: the result, no second report


def test_a_sampler_that_raises(tmp_path: Path) -> None:
    h = PluginHarness(Raises("collect_samples"), directory=tmp_path)
    try:
        with pytest.raises(RuntimeError, match="collect_samples exploded"):
            h.collect_samples()  # on the test's thread
        # The observer's sampler thread took its reading at start, and says it raised.
        deadline = time.monotonic() + 5
        while not any("collect_samples of plugin 'raises'" in r.getMessage() for r in h.logs):
            assert time.monotonic() < deadline, "the sampler thread's failure was not logged"
            time.sleep(0.01)
        with pytest.raises(PluginFailed, match="collect_samples of plugin 'raises' raised"):
            h.flush()
    finally:
        h.close()


def test_samples_taken_on_demand(tmp_path: Path) -> None:
    with PluginHarness(Raises("nowhere"), directory=tmp_path) as h:
        taken = h.collect_samples()
        result = h.flush()
    assert [s.name for s in taken] == ["raises_gauge"]
    assert "raises_gauge" in {s.name for s in result.samples}  # and the start-up reading, perhaps


def test_a_slow_check_fails_strict_runs(tmp_path: Path) -> None:
    class Slow:
        name = "slow"

        @hookimpl
        def check_span(self, span: Span) -> None:
            time.sleep(0.05)

    with PluginHarness(Slow(), pipeline={"check_budget_ms": 1}, directory=tmp_path) as h:
        answer(h, "x")
        with pytest.raises(PluginFailed, match=r"plugin 'slow' failed 1 time\(s\); last: check_span: took"):
            h.flush()


def test_load_problems_fail_the_constructor(tmp_path: Path) -> None:
    class Typo:
        name = "typo"

        @hookimpl
        def trace_finish(self, root: Span, spans: Sequence[Span]) -> None: ...

    with pytest.raises(PluginLoadError, match=r"plugin 'typo': unknown hook 'trace_finish' \(did you mean 'trace_finished'\?\)"):
        PluginHarness(Typo(), directory=tmp_path)
    with pytest.raises(ConfigError, match=r"plugins\.words\.max_words: expected integer"):
        PluginHarness(Words(), config={"max_words": "three"}, directory=tmp_path)
    with pytest.raises(ConfigError, match="environment variable CHAINSIGHT_TEST_UNSET_TOKEN is not set"):
        PluginHarness(Words(), config={"token": {"env": "CHAINSIGHT_TEST_UNSET_TOKEN"}}, directory=tmp_path)
    with pytest.raises(ValueError, match=r"registers as 'words'.*not 'other'"):
        PluginHarness(Words(), name="other", directory=tmp_path)


def test_lenient_runs_count_failures_like_production(tmp_path: Path) -> None:
    with PluginHarness(Raises("check_span"), strict=False, pipeline={"degrade_after": 2},
                       directory=tmp_path) as h:
        for text in ("a", "b", "c"):
            answer(h, text)
        result = h.flush()
    health = result.plugin_health
    assert health is not None and health.failures == 2 and health.degraded
    assert result.stats.written == 3  # the other hooks and storage carried on
    assert any("plugin 'raises' failed in check_span" in r.getMessage() for r in result.logs)

    class Typo:
        name = "typo"

        @hookimpl
        def spans_finish(self, spans: Sequence[Span]) -> None: ...

    with PluginHarness(Typo(), strict=False, directory=tmp_path / "typo") as h:
        info = h.plugin_info
    assert info is not None and info.status == "refused"
    assert info.problems == ("unknown hook 'spans_finish' (did you mean 'spans_finished'?), not used",)


# ---- commands -----------------------------------------------------------------------


def test_a_plugin_command_runs_against_the_harness_store(tmp_path: Path) -> None:
    with PluginHarness(Words(), directory=tmp_path) as h:
        answer(h, "a b")
        h.flush()
        ran = h.run_command("words", "--json")
        assert (ran.exit_code, ran.stdout) == (3, "1 scores json\n")
        assert h.run_command("words", "--bogus").exit_code == 2
        listed = h.run_command("traces", "--json")  # the built-in commands are there too
        assert listed.exit_code == 0 and len(listed.json()["items"]) == 1


def test_a_command_the_cli_refuses_fails_strict_runs(tmp_path: Path) -> None:
    class Clash:
        name = "clash"

        @hookimpl
        def register_commands(self, cli: CommandRegistry) -> None:
            cli.add("traces", "mine", lambda parser: None, lambda ns: 0)

    with PluginHarness(Clash(), directory=tmp_path) as h, \
            pytest.raises(PluginFailed, match="command 'traces' is already taken by a built-in command"):
        h.run_command("traces")


# ---- loading like production ----------------------------------------------------------


def _install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target: str) -> None:
    """A distribution with a chainsight.plugins entry point, on sys.path."""
    dist = tmp_path / "harness_demo-2.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: harness-demo\nVersion: 2.0\n")
    (dist / "entry_points.txt").write_text(f"[chainsight.plugins]\ndemo_words = {target}\n")
    (tmp_path / "harness_demo_plugin.py").write_text(textwrap.dedent("""
        from chainsight import Score, hookimpl

        class Counter:
            CONFIG_SCHEMA = {"type": "object", "properties": {"label": {"type": "string", "default": "n"}}}

            @hookimpl
            def configure(self, config):
                self.label = config["label"]

            @hookimpl
            def check_span(self, span):
                return [Score("count", "check", span.trace_id, span.span_id, 1.0, self.label)]

        def create_plugin():
            return Counter()

        instance = Counter()
        instance.name = "demo_words"
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("harness_demo_plugin", None)


@pytest.mark.parametrize("target", ["harness_demo_plugin", "harness_demo_plugin:instance"])
def test_from_entry_point(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target: str) -> None:
    _install(tmp_path, monkeypatch, target)
    with PluginHarness.from_entry_point("demo_words", config={"label": "mine"},
                                        directory=tmp_path / "run") as h:
        span = answer(h, "x")
        (score,) = h.flush().scores_for(span)
        info = h.plugin_info
    assert score.label == "mine"
    assert info is not None and info.name == "demo_words"
    with pytest.raises(LookupError, match=r"no 'chainsight\.plugins' entry point named 'nope'.*demo_words"):
        PluginHarness.from_entry_point("nope")


def test_a_module_plugin_by_dotted_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _install(tmp_path, monkeypatch, "harness_demo_plugin")
    with PluginHarness("harness_demo_plugin", name="counter", config={"label": "by-path"},
                       directory=tmp_path / "run") as h:
        span = answer(h, "x")
        (score,) = h.flush().scores_for(span)
    assert score.label == "by-path"


# ---- the fixture, as a plugin author's pytest run sees it -------------------------------


def test_the_fixture(chainsight_harness: Any) -> None:
    h = chainsight_harness(Words(), config={"max_words": 1})
    span = answer(h, "two words")
    assert [s.passed for s in h.flush().scores_for(span)] == [False]


def test_the_fixture_closes_harnesses_and_reports_late_failures(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(textwrap.dedent("""
        from chainsight import hookimpl

        pytest_plugins = ["chainsight.testing"]

        class Sink:
            name = "sink"
            def __init__(self, fail):
                self.fail = fail
                self.closed = False
            @hookimpl
            def shutdown(self, timeout):
                self.closed = True
                if self.fail:
                    raise OSError("disk full at exit")

        PLUGINS = []

        def test_closed(chainsight_harness):
            PLUGINS.append(Sink(fail=False))
            chainsight_harness(PLUGINS[-1])

        def test_was_closed():
            assert PLUGINS[0].closed

        def test_fails_at_teardown(chainsight_harness):
            chainsight_harness(Sink(fail=True))
    """))
    # (without the snapshot plugins, whose session state is global to the process)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-p", "no:textual-snapshot", "-p", "no:syrupy", "-p", "no:asyncio")
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_fails_at_teardown*", "*disk full at exit*"])


def test_importing_the_package_loads_neither_pytest_nor_langchain() -> None:
    code = ("import sys, chainsight.testing\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "{'pytest', '_pytest', 'langchain_core', 'litellm', 'textual'}))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def test_nothing_in_chainsight_imports_the_testing_package() -> None:
    offenders = [str(p.relative_to(ROOT)) for folder in ("framework", "plugins", "storage", "tui")
                 for p in (ROOT / folder).rglob("*.py") if "chainsight.testing" in p.read_text(encoding="utf-8")]
    assert offenders == []
