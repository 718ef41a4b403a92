"""The LLM judge: a rubric prompt through litellm (mock_response), a parsed score and explanation."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from chainsight.framework.model import EvalCase
from chainsight.plugins.judge import Judge, parse_verdict


@pytest.fixture(autouse=True)
def _litellm_globals() -> Iterator[None]:
    import litellm

    litellm.suppress_debug_info = True
    saved = (list(litellm.callbacks), list(litellm.success_callback), list(litellm.failure_callback))
    yield
    litellm.callbacks[:], litellm.success_callback[:], litellm.failure_callback[:] = saved


def case(**changes: Any) -> EvalCase:
    fields: dict[str, Any] = {"item_id": "i1", "input": "capital of France?", "expected": "Paris",
                              "output": "Lyon", "experiment_id": "e1", "trace_id": "t1"}
    fields.update(changes)
    return EvalCase(**fields)


def test_parse_verdict() -> None:
    assert parse_verdict('{"score": 4, "explanation": "close"}') == (4.0, "close")
    assert parse_verdict('Sure! ```json\n{"score": 2, "reason": "wrong city"}\n```') == (2.0, "wrong city")
    assert parse_verdict("Score: 5\nExplanation: exact") == (5.0, "exact")
    assert parse_verdict("I cannot grade this") == (None, "I cannot grade this")


def test_judge_scores_through_litellm_with_the_rubric() -> None:
    judge = Judge(model="gpt-4o-mini", rubric="Is the city right?", completion_kwargs={
        "mock_response": '{"score": 2, "explanation": "Lyon is not the capital"}'})
    [score] = judge.evaluate(case()) or []
    assert (score.name, score.source, score.value, score.label, score.passed, score.comment) == (
        "judge", "judge", 0.25, "2", False, "Lyon is not the capital")
    system, user = judge.messages(case())
    assert "Is the city right?" in system["content"] and '"score"' in system["content"]
    assert "Expected answer:\nParis" in user["content"] and "Answer to grade:\nLyon" in user["content"]


def test_unparsable_answers_failed_targets_and_no_model() -> None:
    judge = Judge(model="gpt-4o-mini", completion_kwargs={"mock_response": "no idea"})
    [score] = judge.evaluate(case()) or []
    assert score.value is None and score.comment == "unparsable judge answer: no idea"
    assert judge.evaluate(case(error="ValueError: boom", output=None)) is None
    off = Judge()
    off.configure({})
    assert off.evaluate(case()) is None
    with pytest.raises(ValueError, match="max_score"):
        Judge(model="m", min_score=5, max_score=5)


def test_a_failing_model_call_raises_for_the_runner_to_report() -> None:
    judge = Judge(model="gpt-4o-mini", completion_kwargs={"mock_response": Exception("upstream 500")})
    with pytest.raises(Exception, match="upstream 500"):
        judge.evaluate(case())
