"""The length check: bounds in characters and tokens, per span name or tag."""

from __future__ import annotations

from pathlib import Path

from chainsight.framework.model import Span
from chainsight.plugins.length import LengthCheck


def answer(text: object, name: str = "model", tags: list[str] | None = None, tokens: int | None = None) -> Span:
    span = Span(name, "llm", parent_id="p" * 16)
    span.outputs, span.status, span.tags, span.output_tokens = text, "ok", tags, tokens
    return span


def test_default_bounds() -> None:
    check = LengthCheck.from_config({})
    (ok,) = check.check_span(answer("Hello there")) or []
    assert (ok.value, ok.label, ok.passed) == (11.0, "ok", True)
    (empty,) = check.check_span(answer("")) or []
    assert (empty.label, empty.passed) == ("too_short", False)
    (long,) = check.check_span(answer("x" * 20001)) or []
    assert long.label == "too_long" and "20001 chars > max 20000" in (long.comment or "")


def test_tokens_reported_or_estimated() -> None:
    check = LengthCheck.from_config({"min_chars": 0, "max_tokens": 5})
    (score,) = check.check_span(answer("one two three", tokens=9)) or []
    assert score.label == "too_long" and "9 tokens > max 5" in (score.comment or "")
    (score,) = check.check_span(answer("a" * 40)) or []  # ~10 tokens estimated
    assert score.label == "too_long" and "~10 tokens" in (score.comment or "")


def test_rules_by_span_name_and_tag_first_match_wins() -> None:
    check = LengthCheck.from_config({
        "min_chars": 1, "max_chars": 1000,
        "rules": [{"span": "summar*", "min_chars": 50}, {"tag": "terse", "max_chars": 10}],
    })
    (score,) = check.check_span(answer("short", name="summarize")) or []
    assert score.label == "too_short" and "min 50" in (score.comment or "")
    (score,) = check.check_span(answer("a" * 20, tags=["terse"])) or []
    assert score.label == "too_long"
    (score,) = check.check_span(answer("a" * 20, name="other")) or []
    assert score.label == "ok"


def test_skips_errors_non_answers_and_missing_output() -> None:
    check = LengthCheck.from_config({})
    failed = answer("x")
    failed.status = "error"
    assert check.check_span(failed) is None
    assert check.check_span(answer(None)) is None
    tool = Span("t", "tool", parent_id="p" * 16)
    tool.outputs = ""
    assert check.check_span(tool) is None


def test_a_reply_that_only_calls_tools_is_not_too_short() -> None:
    from langchain_core.messages import AIMessage

    check = LengthCheck.from_config({})
    call = {"name": "lookup", "args": {"q": "x"}, "id": "call-1"}
    assert check.check_span(answer(AIMessage(content="", tool_calls=[call]))) is None
    assert check.check_span(answer({"role": "assistant", "content": None,
                                    "tool_calls": [{"id": "c", "type": "function"}]})) is None
    # text next to the calls is an answer, and an empty reply without calls is too short
    (score,) = check.check_span(answer(AIMessage(content="Let me look.", tool_calls=[call]))) or []
    assert score.label == "ok"
    (score,) = check.check_span(answer(AIMessage(content=""))) or []
    assert score.label == "too_short"


def test_tool_calling_agent_through_the_pipeline_scores_only_the_answer(tmp_path: Path) -> None:
    """A real LangChain agent step: the model's tool-call reply gets no length score."""
    from langchain_core.language_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage, HumanMessage

    from chainsight.framework.adapters.langchain import CallbackHandler
    from chainsight.framework.observer import Observer
    from tests.plugins.cases.store import score_rows

    url = f"sqlite:///{tmp_path / 'len.db'}"
    obs = Observer(url, strict=True, entry_points=False, spill_path=tmp_path / "spill",
                   builtins=[("redaction", "chainsight.plugins.redaction"), ("length", "chainsight.plugins.length")])
    model = GenericFakeChatModel(messages=iter([
        AIMessage(content="", tool_calls=[{"name": "lookup", "args": {"q": "x"}, "id": "c1"}]),
        AIMessage(content="The order shipped."),
    ]))
    try:
        config = {"callbacks": [CallbackHandler(obs)]}
        model.invoke([HumanMessage("where is my order?")], config=config)
        model.invoke([HumanMessage("and now?")], config=config)
        assert obs.flush(10)
    finally:
        obs.shutdown()
    labels = sorted(r["label"] for r in score_rows(url) if r["name"] == "length")
    assert labels == ["ok"]  # the text answer; the tool-call reply is not judged
