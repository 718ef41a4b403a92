"""invoke / stream / batch of a prompt | model | parser chain: exact trees and timings."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import Any

from langchain_core.language_models import FakeListChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import Runnable

from chainsight.framework.adapters.langchain import CallbackHandler
from chainsight.framework.observer import Observer

sys.path.insert(0, str(Path(__file__).parent))
from langchain_helpers import trace_spans, tree

SEQ_TREE: Any = ("RunnableSequence", "chain", [
    ("ChatPromptTemplate", "prompt", []),
    ("FakeListChatModel", "llm", []),
    ("StrOutputParser", "parser", []),
])


def chain(answer: str = "hello world", sleep: float | None = None) -> Runnable[dict[str, str], str]:
    prompt = ChatPromptTemplate.from_messages([("system", "Be brief."), ("human", "{q}")])
    return prompt | FakeListChatModel(responses=[answer], sleep=sleep) | StrOutputParser()


def test_invoke_records_exact_tree(lc_observer: Observer, handler: CallbackHandler) -> None:
    run_id = uuid.uuid4()
    result = chain().invoke({"q": "hi"}, config={"callbacks": [handler], "run_id": run_id})
    assert result == "hello world"
    spans = trace_spans(lc_observer, run_id.hex)
    assert tree(spans) == SEQ_TREE
    root = spans[0]
    assert root.span_id == run_id.hex
    assert len(root.trace_id) == 32 and root.trace_id != run_id.hex  # random, not the uuid7 run id
    assert root.inputs == {"q": "hi"} and root.outputs == "hello world"
    assert all(s.status == "ok" and s.end_ns is not None and s.end_ns >= s.start_ns for s in spans)
    llm = next(s for s in spans if s.kind == "llm")
    assert [m["content"] for m in llm.inputs] == ["Be brief.", "hi"]
    assert llm.outputs["content"] == "hello world"
    assert llm.first_token_ns is None and llm.chunk_count == 0
    # the fake reports no usage: estimated from the text (chars / 4)
    assert llm.tokens_estimated is True
    assert (llm.input_tokens, llm.output_tokens) == (3 + 1, 3)  # "Be brief." + "hi"; "hello world"
    assert handler.open_runs == 0


def test_stream_ttft_and_tpot_match_the_models_delay(lc_observer: Observer,
                                                     handler: CallbackHandler) -> None:
    delay, answer = 0.05, "streaming answer"  # 16 chunks of one character
    run_id = uuid.uuid4()
    chunks = list(chain(answer, sleep=delay).stream({"q": "hi"},
                                                    config={"callbacks": [handler], "run_id": run_id}))
    assert "".join(chunks) == answer
    spans = trace_spans(lc_observer, run_id.hex)
    assert tree(spans) == SEQ_TREE
    llm = next(s for s in spans if s.kind == "llm")
    assert llm.chunk_count == len(answer)
    assert llm.output_tokens == len(answer) and llm.tokens_estimated
    assert llm.ttft_s is not None and llm.tpot_s is not None
    # The model sleeps before each chunk: never less than the delay; a loaded
    # machine oversleeps, but the second token (2x) or the last (16x) is far.
    assert 0.95 * delay <= llm.ttft_s < 1.6 * delay, llm.ttft_s
    assert 0.95 * delay <= llm.tpot_s < 1.6 * delay, llm.tpot_s
    # streaming runs send their inputs at the end: the root still has them
    assert spans[0].inputs == {"q": "hi"} and spans[0].outputs == "streaming answer"


def test_batch_gives_one_complete_trace_per_input(lc_observer: Observer,
                                                  handler: CallbackHandler) -> None:
    ids = [uuid.uuid4() for _ in range(3)]
    model = FakeListChatModel(responses=["a", "b", "c"])
    prompt = ChatPromptTemplate.from_messages([("human", "{q}")])
    runnable = prompt | model | StrOutputParser()
    results = runnable.batch(
        [{"q": str(i)} for i in range(3)],
        config=[{"callbacks": [handler], "run_id": i} for i in ids],
    )
    assert sorted(results) == ["a", "b", "c"]
    outputs = set()
    for run_id in ids:
        spans = trace_spans(lc_observer, run_id.hex)
        assert tree(spans) == SEQ_TREE
        outputs.add(spans[0].outputs)
    assert outputs == {"a", "b", "c"}


def test_user_session_tags_and_metadata(lc_observer: Observer) -> None:
    handler = CallbackHandler(lc_observer, user_id="default-user", session_id="s-default",
                              tags=["prod"], metadata={"release": "1.2"})
    run_a, run_b = uuid.uuid4(), uuid.uuid4()
    chain().invoke({"q": "x"}, config={"callbacks": [handler], "run_id": run_a, "tags": ["rag"],
                                       "metadata": {"user_id": "alice", "session_id": "s-1"}})
    chain().invoke({"q": "y"}, config={"callbacks": [handler], "run_id": run_b})
    alice = trace_spans(lc_observer, run_a.hex)
    assert {(s.user_id, s.session_id) for s in alice} == {("alice", "s-1")}
    assert alice[0].tags is not None and {"prod", "rag"} <= set(alice[0].tags)
    assert alice[0].metadata is not None and alice[0].metadata["release"] == "1.2"
    default = trace_spans(lc_observer, run_b.hex)
    assert {(s.user_id, s.session_id) for s in default} == {("default-user", "s-default")}


def test_handler_attached_mid_tree_starts_a_new_trace(lc_observer: Observer,
                                                      handler: CallbackHandler) -> None:
    # A parent run this handler never saw: the model's span becomes a root.
    model = FakeListChatModel(responses=["ok"])
    prompt = ChatPromptTemplate.from_messages([("human", "{q}")])
    runnable = prompt | model.with_config(callbacks=[handler])
    runnable.invoke({"q": "x"})
    assert lc_observer.flush(10)
    from chainsight.storage.query import Store, TraceFilter

    page = Store(lc_observer.storage_url).list_traces(TraceFilter(), limit=10)
    assert len(page.items) == 1
    detail = Store(lc_observer.storage_url).get_trace(page.items[0].trace_id)
    assert detail is not None
    spans = detail.spans
    assert tree(spans) == ("FakeListChatModel", "llm", [])
    assert spans[0].parent_id is None
