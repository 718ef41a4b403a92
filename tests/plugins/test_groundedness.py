"""The groundedness check: lexical support per sentence, unsupported
sentences in the comment, and the optional litellm judge (mock_response)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from langchain_core.documents import Document
from langchain_core.messages import AIMessage

from chainsight.framework.config import Settings
from chainsight.framework.model import Span
from chainsight.framework.observer import Observer
from chainsight.plugins.groundedness import GroundednessCheck, lexical_verdict, parse_judge_reply
from tests.plugins.cases.store import score_rows

DOCS = [Document(page_content="The Eiffel Tower was completed in 1889 in Paris. It is 330 metres tall."),
        {"page_content": "Gustave Eiffel's company designed and built the tower."}]


def trace(answer: object, docs: object = DOCS, root_output: bool = True) -> tuple[Span, list[Span]]:
    root = Span("rag", "chain")
    retr = Span("retrieve", "retriever", trace_id=root.trace_id, parent_id=root.span_id)
    retr.outputs = docs
    llm = Span("llm", "llm", trace_id=root.trace_id, parent_id=root.span_id)
    llm.outputs, llm.end_ns = AIMessage(content=str(answer)), 5
    if root_output:
        root.outputs = {"answer": answer, "context": docs}
    return root, [retr, llm, root]


def test_supported_answer_passes() -> None:
    root, spans = trace("The Eiffel Tower was completed in 1889. The tower is 330 metres tall. Hope this helps!")
    (score,) = GroundednessCheck().check_trace(root, spans) or []
    assert (score.value, score.label, score.passed, score.span_id) == (1.0, "grounded", True, root.span_id)
    assert score.comment == "2/2 sentences supported by 1 retrieved document set(s)"


def test_unsupported_sentences_are_listed() -> None:
    answer = ("The Eiffel Tower was completed in 1889. It was completed in 1925 by Paris builders. "
              "Napoleon personally painted the structure bright orange.")
    root, spans = trace(answer)
    (score,) = GroundednessCheck().check_trace(root, spans) or []
    assert score.value is not None and abs(score.value - 1 / 3) < 1e-3
    assert score.label == "ungrounded" and score.passed is False
    assert '"It was completed in 1925 by Paris builders."' in (score.comment or "")  # a wrong number
    assert '"Napoleon personally painted the structure bright orange."' in (score.comment or "")
    quiet = GroundednessCheck({"quote_unsupported": False}).check_trace(root, spans) or []
    assert "Napoleon" not in (quiet[0].comment or "") and "2 unsupported" in (quiet[0].comment or "")


def test_answer_falls_back_to_last_llm_span_and_skips_without_documents() -> None:
    root, spans = trace("Napoleon painted it orange in 1925 with great care.", root_output=False)
    (score,) = GroundednessCheck().check_trace(root, spans) or []
    assert score.value == 0.0
    root, spans = trace("anything at all here", docs=[])
    assert GroundednessCheck().check_trace(root, spans) is None
    root, spans = trace("Ok.")
    assert GroundednessCheck().check_trace(root, spans) is None  # nothing to judge


def test_lexical_verdict_basics() -> None:
    v = lexical_verdict("Cats sleep most of the day. Dogs fly planes.", "Cats sleep for most of the day.")
    assert (v.judged, v.supported, v.unsupported) == (2, 1, ("Dogs fly planes.",))


def test_parse_judge_reply() -> None:
    assert parse_judge_reply('```json\n{"score": 0.5, "unsupported": ["x"]}\n```')["score"] == 0.5
    assert parse_judge_reply('Verdict: {"score": 1} done')["score"] == 1


def test_llm_judge_through_litellm_mock_response(tmp_path: Path) -> None:
    for key, value in {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_OFFLINE_MODE": "true",
                       "LITELLM_MODE": "PRODUCTION"}.items():
        os.environ.setdefault(key, value)
    import litellm

    saved = (list(litellm.callbacks), list(litellm.success_callback), list(litellm.failure_callback))
    url = f"sqlite:///{tmp_path / 'g.db'}"
    reply = json.dumps({"score": 0.5, "unsupported": ["Napoleon painted it."]})
    settings = Settings(plugins={"groundedness": {"mode": "both", "judge_model": "gpt-4o-mini",
                                                  "judge_options": {"mock_response": reply}}})
    obs = Observer(url, settings=settings, strict=True, entry_points=False,
                   builtins=[("groundedness", "chainsight.plugins.groundedness")], spill_path=tmp_path / "spill")
    try:
        check = obs.plugins.pm.get_plugin("groundedness").check
        assert isinstance(check, GroundednessCheck) and check.mode == "both"
        with obs.span("rag", inputs="When was it built?") as root:
            with obs.span("retrieve", kind="retriever") as retr:
                retr.outputs = DOCS
            root.outputs = "The Eiffel Tower was completed in 1889. Napoleon painted it."
        assert obs.flush(10)
        assert check.wait(30)
        assert obs.flush(10)
    finally:
        obs.shutdown()
        litellm.callbacks[:], litellm.success_callback[:], litellm.failure_callback[:] = saved
    scores = {(r["name"], r["source"]): r for r in score_rows(url)}
    judge = scores[("groundedness", "judge")]
    assert judge["value"] == 0.5 and judge["passed"] == 0 and judge["trace_id"] == root.trace_id
    assert '"Napoleon painted it."' in judge["comment"]
    # the lexical scorer does not judge a two-word claim; the judge does
    assert scores[("groundedness", "check")]["value"] == 1.0
