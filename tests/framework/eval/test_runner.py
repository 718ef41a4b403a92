"""The runner through the Python API: targets, retries, timeouts, evaluator
plugins (the ``evaluate`` hook) and what reaches the store."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from chainsight import Score, hookimpl
from chainsight.framework.eval.runner import RunOptions, evaluate
from chainsight.framework.eval.targets import TargetError, as_target, is_transient
from chainsight.framework.model import EvalCase
from chainsight.storage.query import Store

ITEMS = [{"input": f"q{i}", "expected": f"a{i}"} for i in range(6)]
FAST = RunOptions(concurrency=3, retries=2, timeout_s=5, backoff_s=0.01)


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'runner.db'}"


class LengthEvaluator:
    """A third-party evaluator: implements the evaluate hook, sees the stored trace."""

    def __init__(self) -> None:
        self.cases: list[EvalCase] = []

    @hookimpl
    def evaluate(self, case: EvalCase) -> list[Score]:
        self.cases.append(case)
        return [Score("short", "custom", case.trace_id or "", value=float(len(case.output_text()) < 3),
                      comment="under 3 characters")]


async def answer(q: str) -> str:
    await asyncio.sleep(0)
    return "a" + q[1:]


def test_async_target_third_party_evaluator_and_stored_scores(url: str) -> None:
    import chainsight

    assert chainsight.evaluate is evaluate  # the public API
    custom = LengthEvaluator()
    result = evaluate(ITEMS, answer, name="api", db=url, options=FAST,
                      evaluators=["exact_match", custom])
    assert result.scores == {"exact_match": 1.0, "short": 1.0}  # only what was asked for
    assert result.dataset.name == "api" and result.dataset.item_count == 6
    assert len(custom.cases) == 6
    case = custom.cases[0]
    assert case.root is not None and case.root.name == "answer" and case.root.outputs == case.output
    assert case.root.metadata == {"experiment_id": result.experiment_id, "experiment": "api",
                                  "item_id": case.item_id}
    assert case.trace_id == case.root.trace_id and case.spans == (case.root,)
    with Store(url) as reader:
        scores = [s for s in reader.list_scores(trace_id=case.trace_id) if s.experiment_id]
    assert sorted((s.name, s.source, s.experiment_id) for s in scores) == [
        ("exact_match", "eval", result.experiment_id), ("short", "eval", result.experiment_id)]


def test_transient_errors_are_retried_and_others_are_not(url: str) -> None:
    calls: dict[str, int] = {}

    def flaky(q: str) -> str:
        calls[q] = calls.get(q, 0) + 1
        if q == "q1" and calls[q] < 3:
            raise ConnectionError("connection reset")
        if q == "q2":
            raise ValueError("bad input")
        return "a" + q[1:]

    result = evaluate(ITEMS[:3], flaky, db=url, options=FAST, evaluators=["exact_match"])
    assert calls == {"q0": 1, "q1": 3, "q2": 1}
    by_input = {r.input: r for r in result.results}
    assert by_input["q1"].error is None and by_input["q1"].scores == {"exact_match": 1.0}
    assert by_input["q2"].error == "ValueError: bad input" and by_input["q2"].scores == {"exact_match": 0.0}
    assert result.summary["errors"] == 1
    with Store(url) as reader:  # every attempt is an ordinary trace
        statuses = sorted(t.status for t in reader.list_traces().items)
    assert statuses == ["error", "error", "error", "ok", "ok"]


def test_a_per_item_timeout(url: str) -> None:
    async def slow(q: str) -> str:
        await asyncio.sleep(5 if q == "q0" else 0)
        return "a" + q[1:]

    result = evaluate(ITEMS[:2], slow, db=url, options=RunOptions(timeout_s=0.2, retries=0),
                      evaluators=["exact_match"])
    errors = {r.input: r.error for r in result.results}
    assert errors == {"q0": "TimeoutError: timed out", "q1": None}


def test_a_hung_sync_target_is_abandoned_at_its_timeout(url: str) -> None:
    import threading
    import time

    release = threading.Event()

    def hangs(q: str) -> str:
        if q == "q0":
            release.wait(30)
        return "a" + q[1:]

    start = time.monotonic()
    try:
        result = evaluate(ITEMS[:2], hangs, db=url, evaluators=["exact_match"],
                          options=RunOptions(timeout_s=0.3, retries=0))
    finally:
        release.set()
    assert time.monotonic() - start < 15  # the run's end did not wait for the hung call
    assert {r.input: r.error for r in result.results} == {"q0": "TimeoutError: timed out", "q1": None}


def test_a_raising_evaluator_is_reported_and_the_others_still_score(url: str) -> None:
    class Broken:
        @hookimpl
        def evaluate(self, case: EvalCase) -> None:
            raise RuntimeError("evaluator bug")

    result = evaluate(ITEMS[:2], answer, db=url, options=FAST, evaluators=["exact_match", Broken()])
    assert result.scores["exact_match"] == 1.0
    [(name, message)] = result.summary["evaluator_failures"].items()
    assert "Broken" in name and "RuntimeError: evaluator bug" in message


def test_llm_judge_through_the_api(url: str) -> None:
    import litellm

    from chainsight.plugins.judge import Judge

    saved = (list(litellm.callbacks), list(litellm.success_callback), list(litellm.failure_callback))
    try:
        judge = Judge(model="gpt-4o-mini", name="helpful", completion_kwargs={
            "mock_response": "Score: 5\nExplanation: exactly the expected answer"})
        result = evaluate(ITEMS[:2], answer, db=url, options=FAST, evaluators=[judge])
    finally:
        litellm.callbacks[:], litellm.success_callback[:], litellm.failure_callback[:] = saved
    assert result.scores["helpful"] == 1.0
    assert all(r.scores["helpful"] == 1.0 for r in result.results)


def test_targets() -> None:
    from langchain_core.runnables import RunnableLambda

    assert as_target(RunnableLambda(lambda x: x)).kind == "langchain"
    assert as_target(answer).kind == "async"
    assert as_target(len).kind == "sync"
    with pytest.raises(TargetError, match="neither a LangChain runnable nor callable"):
        as_target(42)
    assert is_transient(TimeoutError()) and not is_transient(ValueError())

    class RateLimitError(Exception):
        pass

    class Http(Exception):
        status_code = 503

    assert is_transient(RateLimitError()) and is_transient(Http())


def test_bad_target_specs(url: str) -> None:
    for spec, message in (("nocolon", "use module:attribute"),
                          ("no_such_module_xyz:f", "cannot import 'no_such_module_xyz'"),
                          ("eval_targets:missing", "has no attribute 'missing'")):
        with pytest.raises(TargetError, match=message):
            evaluate(ITEMS, spec, db=url)


def test_resuming_a_finished_experiment_is_refused(url: str) -> None:
    first = evaluate(ITEMS[:1], answer, name="once", db=url, options=FAST)
    with pytest.raises(ValueError, match="is finished: nothing to resume"):
        evaluate("once", answer, db=url, resume=first.experiment_id)




def test_a_run_and_its_comparison_on_both_backends(store_url: str) -> None:
    from chainsight.framework.eval.compare import compare
    from chainsight.storage.evaluation import EvalStore

    first = evaluate(ITEMS, answer, name="pg", db=store_url, options=FAST, evaluators=["exact_match"])

    async def worse(q: str) -> str:
        return "nope" if q == "q4" else "a" + q[1:]

    second = evaluate("pg", worse, db=store_url, options=FAST, evaluators=["exact_match"])
    assert (first.scores, second.scores) == ({"exact_match": 1.0}, {"exact_match": 5 / 6})
    with EvalStore(store_url) as store:
        comparison = compare(store, first.experiment_id, second.experiment_id)
    assert [r.result_b.input for r in comparison.regressions] == ["q4"]
