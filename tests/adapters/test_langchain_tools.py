"""Tools, retrievers, errors (mid-stream, in a tool) and agent callbacks."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from langchain_core.agents import AgentAction, AgentFinish
from langchain_core.callbacks import CallbackManager, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.language_models import FakeListChatModel
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import RunnableLambda, RunnablePassthrough
from langchain_core.tools import tool

from chainsight.framework.adapters.langchain import CallbackHandler
from chainsight.framework.observer import Observer

sys.path.insert(0, str(Path(__file__).parent))
from langchain_helpers import trace_spans, tree


class KeywordRetriever(BaseRetriever):
    docs: list[Document]

    def _get_relevant_documents(self, query: str, *,
                                run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        return [d for d in self.docs if any(w in d.page_content for w in query.split())]


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@tool
def broken(city: str) -> str:
    """A tool that always fails."""
    raise ConnectionError(f"weather service down for {city}")


def test_tool_span(lc_observer: Observer, handler: CallbackHandler) -> None:
    run_id = uuid.uuid4()
    assert add.invoke({"a": 2, "b": 3}, config={"callbacks": [handler], "run_id": run_id}) == 5
    (span,) = trace_spans(lc_observer, run_id.hex)
    assert (span.name, span.kind, span.status) == ("add", "tool", "ok")
    assert span.inputs == {"a": 2, "b": 3} and span.outputs == 5


def test_tool_error_marks_span_and_trace(lc_observer: Observer, handler: CallbackHandler) -> None:
    run_id = uuid.uuid4()
    pipeline: Any = RunnablePassthrough() | broken
    with pytest.raises(ConnectionError):
        pipeline.invoke({"city": "Oslo"}, config={"callbacks": [handler], "run_id": run_id})
    spans = trace_spans(lc_observer, run_id.hex)
    assert tree(spans) == ("RunnableSequence", "chain", [
        ("RunnablePassthrough", "chain", []), ("broken", "tool", [])])
    failed = {s.name: s for s in spans if s.status == "error"}
    assert set(failed) == {"RunnableSequence", "broken"}
    assert failed["broken"].error_type == "ConnectionError"
    assert failed["broken"].error == "weather service down for Oslo"
    from chainsight.storage.query import Store

    detail = Store(lc_observer.storage_url).get_trace(failed["RunnableSequence"].trace_id)
    assert detail is not None and detail.trace.status == "error"


def test_rag_chain_with_retriever(lc_observer: Observer, handler: CallbackHandler) -> None:
    docs = [Document(page_content="Paris is the capital of France."),
            Document(page_content="Berlin is the capital of Germany.")]
    retriever = KeywordRetriever(docs=docs)
    prompt = ChatPromptTemplate.from_messages(
        [("system", "Context: {context}"), ("human", "{question}")])
    rag = (
        {"context": retriever, "question": RunnablePassthrough()}
        | prompt | FakeListChatModel(responses=["Paris."])
    )
    run_id = uuid.uuid4()
    assert rag.invoke("Paris", config={"callbacks": [handler], "run_id": run_id}).content == "Paris."
    spans = trace_spans(lc_observer, run_id.hex)
    shape = tree(spans)
    assert shape[0:2] == ("RunnableSequence", "chain")
    parallel, prompt_node, llm_node = shape[2]
    assert parallel[0:2] == ("RunnableParallel<context,question>", "chain")
    assert sorted(parallel[2]) == [("KeywordRetriever", "retriever", []),
                                   ("RunnablePassthrough", "chain", [])]
    assert prompt_node == ("ChatPromptTemplate", "prompt", [])
    assert llm_node == ("FakeListChatModel", "llm", [])
    retrieval = next(s for s in spans if s.kind == "retriever")
    assert retrieval.inputs == "Paris"
    assert [d["page_content"] for d in retrieval.outputs] == ["Paris is the capital of France."]


def test_model_error_mid_stream(lc_observer: Observer, handler: CallbackHandler) -> None:
    model = FakeListChatModel(responses=["abcdefgh"], error_on_chunk_number=3, sleep=0.001)
    runnable = RunnableLambda(lambda x: x) | model
    run_id = uuid.uuid4()
    received = []
    with pytest.raises(Exception) as raised:
        for chunk in runnable.stream("go", config={"callbacks": [handler], "run_id": run_id}):
            received.append(chunk.content)
    assert received == ["a", "b", "c"]
    spans = trace_spans(lc_observer, run_id.hex)
    assert tree(spans) == ("RunnableSequence", "chain", [
        ("RunnableLambda", "chain", []), ("FakeListChatModel", "llm", [])])
    llm = next(s for s in spans if s.kind == "llm")
    assert llm.status == "error" and llm.error_type == type(raised.value).__name__
    assert llm.chunk_count == 3 and llm.first_token_ns is not None
    assert spans[0].status == "error"
    assert handler.open_runs == 0


def test_agent_callbacks_annotate_and_end_once(lc_observer: Observer,
                                               handler: CallbackHandler) -> None:
    manager = CallbackManager(handlers=[handler])
    run = manager.on_chain_start(None, {"input": "2+3?"}, name="AgentExecutor")
    run.on_agent_action(AgentAction(tool="add", tool_input={"a": 2, "b": 3}, log="use add"))
    run.on_agent_finish(AgentFinish(return_values={"output": "5"}, log="done"))
    assert handler.span_for_run(run.run_id) is not None  # finish does not end it
    run.on_chain_end({"output": "5"})
    run.on_chain_end({"output": "again"})  # a repeated end is a no-op
    assert handler.span_for_run(run.run_id) is None
    (span,) = trace_spans(lc_observer, run.run_id.hex)
    assert (span.name, span.kind, span.status, span.outputs) == (
        "AgentExecutor", "agent", "ok", {"output": "5"})
    events = (span.attributes or {})["events"]
    assert [e["name"] for e in events] == ["agent_action", "agent_finish"]
    assert events[0]["tool"] == "add" and events[0]["tool_input"] == {"a": 2, "b": 3}
    assert events[1]["return_values"] == {"output": "5"}
