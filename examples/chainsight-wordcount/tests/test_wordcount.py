"""The wordcount plugin, run by chainsight.testing's harness in a real observer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chainsight.testing import SAMPLE_TRACE, ConfigError, PluginHarness

PLUGIN = "chainsight_wordcount.plugin"


def test_answers_are_scored_against_the_bounds(chainsight_harness) -> None:
    h = chainsight_harness(PLUGIN, name="wordcount", config={"min_words": 2, "max_words": 4})
    with h.span("chat", kind="chain"):  # the root: judged too
        with h.span("short", kind="llm") as short:
            short.outputs = "Yes."
        with h.span("fine", kind="llm") as fine:
            fine.outputs = "It ships on Monday."
        with h.span("long", kind="llm") as long:
            long.outputs = "It ships on Monday, unless the warehouse is closed."
        with h.span("lookup", kind="tool") as tool:  # not an answer: not judged
            tool.outputs = "order 1234: shipped"
    result = h.flush()

    def verdict(span):
        (score,) = result.scores_for(span, "wordcount")
        return score.value, score.label, score.passed

    assert verdict(short) == (1.0, "too_short", False)
    assert verdict(fine) == (4.0, "ok", True)
    assert verdict(long) == (9.0, "too_long", False)
    assert result.scores_for(tool) == []
    assert result.scores_for(result.span("chat")) == []  # the root has no output
    assert result.plugin.hooks == ("check_span", "configure", "register_commands", "shutdown",
                                   "spans_finished")


def test_a_recorded_trace(chainsight_harness) -> None:
    """The sample recording: stored content, in its dict form."""
    h = chainsight_harness(PLUGIN, name="wordcount", config={"max_words": 40})
    h.feed(SAMPLE_TRACE)
    result = h.flush()
    judged = {span.name: score for span in result.spans for score in result.scores_for(span, "wordcount")}
    assert judged["GenericFakeChatModel"].value == 10  # "Refunds are issued within 14 days..."
    assert judged["rag"].value == 10  # the root's output, a string
    assert judged["FakeListChatModel"].label == "too_long"
    assert judged["summarize"].label == "too_long"
    assert "lookup" not in judged  # a failed run is not judged
    assert {s.name for s in result.spans} >= {"Handbook", "StrOutputParser", "lookup"}


def test_a_live_langchain_run(chainsight_harness) -> None:
    """A real chain with a fake chat model: the check gets live message objects."""
    from langchain_core.language_models import FakeListChatModel
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate

    h = chainsight_harness(PLUGIN, name="wordcount", config={"max_words": 5})
    chain = (ChatPromptTemplate.from_messages([("human", "{q}")])
             | FakeListChatModel(responses=["Paris is the capital of France."]) | StrOutputParser())
    assert chain.invoke({"q": "capital of France?"}, config={"callbacks": [h.handler()]}) \
        == "Paris is the capital of France."
    result = h.flush()
    (model,) = [s for s in result.spans if s.kind == "llm"]
    (score,) = result.scores_for(model, "wordcount")
    assert (score.value, score.label) == (6.0, "too_long")


def test_the_exporter_writes_one_line_per_stored_span(chainsight_harness, tmp_path: Path) -> None:
    export = tmp_path / "spans.jsonl"
    h = chainsight_harness(PLUGIN, name="wordcount", config={"export_path": str(export)})
    h.feed(SAMPLE_TRACE)
    result = h.close()  # shutdown(timeout) closes the file
    lines = [json.loads(line) for line in export.read_text().splitlines()]
    assert sorted(r["span_id"] for r in lines) == sorted(s.span_id for s in result.spans)
    assert sorted(r["span_id"] for r in lines) == sorted(s.span_id for s in result.sinks.spans)
    assert all("outputs" not in r for r in lines)
    assert {r["status"] for r in lines} == {"ok", "error"}


def test_the_export_path_can_come_from_the_environment(chainsight_harness, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORDCOUNT_EXPORT", str(tmp_path / "from-env.jsonl"))
    h = chainsight_harness(PLUGIN, name="wordcount", config={"export_path": {"env": "WORDCOUNT_EXPORT"}})
    with h.span("answer", kind="llm") as span:
        span.outputs = "hello"
    h.close()
    (line,) = (tmp_path / "from-env.jsonl").read_text().splitlines()
    assert json.loads(line)["name"] == "answer"


def test_invalid_settings_fail_at_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as problem:
        PluginHarness(PLUGIN, name="wordcount", config={"max_words": "ten"}, directory=tmp_path)
    assert "plugins.wordcount.max_words" in str(problem.value)
    # what the schema cannot say, configure() checks
    with pytest.raises(ValueError, match="min_words"):
        PluginHarness(PLUGIN, name="wordcount", config={"min_words": 9, "max_words": 3},
                      directory=tmp_path)


def test_each_observer_has_its_own_settings(chainsight_harness) -> None:
    strict = chainsight_harness(PLUGIN, name="wordcount", config={"max_words": 1})
    lenient = chainsight_harness(PLUGIN, name="wordcount", config={"max_words": 100})
    for h in (strict, lenient):
        with h.span("answer", kind="llm") as span:
            span.outputs = "two words"
    assert [s.label for s in strict.flush().scores] == ["too_long"]
    assert [s.label for s in lenient.flush().scores] == ["ok"]


def test_the_command_lists_the_latest_scores(chainsight_harness) -> None:
    h = chainsight_harness(PLUGIN, name="wordcount", config={"max_words": 40})
    h.feed(SAMPLE_TRACE)
    h.flush()
    listed = h.run_command("wordcount", "--json")
    assert listed.exit_code == 0
    assert sorted(s["label"] for s in listed.json()) == ["ok", "ok", "too_long", "too_long"]
    failed = h.run_command("wordcount", "--failed")
    assert failed.exit_code == 0
    assert failed.stdout.count("too_long") == 2
    assert "2 answers, 2 outside the bounds" in failed.stdout
    bad = h.run_command("wordcount", "--since", "last week")
    assert bad.exit_code == 1 and "not a time: 'last week'" in bad.stderr


def test_the_installed_entry_point(tmp_path: Path) -> None:
    """Loaded the way chainsight loads it: by its entry point (so the package must be installed)."""
    with PluginHarness.from_entry_point("wordcount", directory=tmp_path) as h:
        assert h.plugin_info is not None and h.plugin_info.name == "wordcount"
        assert h.plugin_info.version == "0.1.0"
        with h.span("answer", kind="llm") as span:
            span.outputs = "hello there"
        (score,) = h.flush().scores_for(span)
        assert score.name == "wordcount" and score.passed
