"""Metrics-only mode ([pipeline] metrics_only = true): timings, tokens, cost
and scores are stored; no content is, anywhere."""

from __future__ import annotations

from pathlib import Path

import pytest
from langchain_core.documents import Document
from langchain_core.messages import AIMessage, HumanMessage

from chainsight.framework import hookimpl
from chainsight.framework.model import Score, Span
from chainsight.framework.observer import Observer
from tests.plugins.cases.store import all_text_rows, rows, score_rows

MARKERS = ("zebracorn", "quasarmilk", "plumbusfleeb", "glorptonic", "wizzleberry")

CHECKS = [("pii", "chainsight.plugins.pii"), ("refusal", "chainsight.plugins.refusal"), ("toxicity", "chainsight.plugins.toxicity"),
          ("length", "chainsight.plugins.length"), ("groundedness", "chainsight.plugins.groundedness")]


def run(obs: Observer) -> str:
    with obs.span("rag", inputs={"question": HumanMessage(content="Where do zebracorn live?")},
                  attributes={"prompt.template": "Answer about plumbusfleeb", "retries": 2}) as root:
        with obs.span("retrieve", kind="retriever") as retr:
            retr.outputs = [Document(page_content="The zebracorn lives in quasarmilk valleys.")]
        with obs.span("llm", kind="llm", model="gpt-4o-mini", inputs=[HumanMessage(content="zebracorn?")],
                      attributes={"tool.args": {"q": "glorptonic"}, "gen_ai.request.temperature": 0.2}) as llm:
            llm.input_tokens, llm.output_tokens, llm.cost_usd = 11, 22, 0.0003
            llm.first_token_ns = llm.start_ns + 1_000_000
            llm.outputs = AIMessage(content="The zebracorn lives in glorptonic caves. Wizzleberry trees grow there.")
        with pytest.raises(ValueError), obs.span("parse", kind="parser"):
            raise ValueError("cannot parse wizzleberry output")
        root.outputs = {"answer": "The zebracorn lives in glorptonic caves. Wizzleberry trees grow there."}
    return root.trace_id


class QuotingCheck:
    """A third-party check that quotes the output in its explanation."""

    name = "quoting"

    def check_span(self, span: Span) -> list[Score]:
        return [Score(self.name, "check", span.trace_id, span.span_id, 1.0, None, True,
                      f"saw: {span.outputs!s}")]


class QuotingPlugin:
    name = "quoting"

    @hookimpl
    def check_span(self, span: Span) -> list[Score]:
        return QuotingCheck().check_span(span)


def test_metrics_only_stores_no_content(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    obs = Observer(url, strict=True, entry_points=False, builtins=CHECKS, spill_path=tmp_path / "spill",
                   pipeline={"metrics_only": True}, plugins=[QuotingPlugin()])
    try:
        trace_id = run(obs)
        obs.feedback(trace_id, thumbs=-1, comment="answer was vague")
        assert obs.flush(10)
    finally:
        obs.shutdown()
    texts = all_text_rows(url)
    for marker in MARKERS:
        leaks = [(t, c, v[:80]) for t, c, v in texts if marker in v.lower()]
        assert not leaks, f"content {marker!r} stored in metrics-only mode: {leaks}"
    spans = {r["name"]: r for r in rows(url, "spans")}
    assert all(r["inputs"] is None and r["outputs"] is None for r in spans.values())
    llm = spans["llm"]
    assert (llm["input_tokens"], llm["output_tokens"], llm["cost_usd"]) == (11, 22, 0.0003)
    assert llm["first_token_ns"] == llm["start_ns"] + 1_000_000 and llm["end_ns"] >= llm["start_ns"]
    assert spans["parse"]["status"] == "error" and spans["parse"]["error"] == "ValueError"
    assert '"gen_ai.request.temperature":0.2' in (llm["attributes"] or "").replace(" ", "")
    (trace,) = rows(url, "traces")
    assert trace["trace_id"] == trace_id and trace["input_tokens"] == 11 and trace["cost_usd"] == 0.0003
    names = {r["name"] for r in score_rows(url)}
    # checks ran on the content before it was dropped
    assert {"length", "refusal", "toxicity", "pii", "groundedness"} <= names
    grounded = next(r for r in score_rows(url) if r["name"] == "groundedness")
    assert grounded["value"] == 0.0
    # explanations of checks may quote content, so they are dropped; the
    # user's own feedback comment is kept
    assert all(r["comment"] is None for r in score_rows(url) if r["source"] == "check")
    thumbs = next(r for r in score_rows(url) if r["name"] == "thumbs")
    assert thumbs["comment"] == "answer was vague"


def test_control_without_metrics_only_the_markers_are_stored(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    obs = Observer(url, strict=True, entry_points=False, builtins=CHECKS, spill_path=tmp_path / "spill")
    try:
        run(obs)
        assert obs.flush(10)
    finally:
        obs.shutdown()
    stored = " ".join(v.lower() for _, _, v in all_text_rows(url))
    assert all(m in stored for m in MARKERS)
