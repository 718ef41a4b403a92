"""The async handler is the sync handler's callbacks as coroutines: the same
callback set, and the same span tree for the same chain (invoke vs ainvoke)."""

from __future__ import annotations

import inspect
import sys
import uuid
from pathlib import Path
from typing import Any

from langchain_core.callbacks import AsyncCallbackHandler as LangChainAsyncHandler
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.callbacks.manager import adispatch_custom_event, dispatch_custom_event
from langchain_core.documents import Document
from langchain_core.language_models import FakeListChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda
from langchain_core.tools import tool
from tenacity import Future, RetryCallState, Retrying

from chainsight.framework.adapters.langchain import AsyncCallbackHandler, CallbackHandler
from chainsight.framework.model import Span
from chainsight.framework.observer import Observer

sys.path.insert(0, str(Path(__file__).parent))
from langchain_helpers import trace_spans


def _overridden(cls: type, base: type) -> set[str]:
    return {name for name in dir(base) if name.startswith("on_") and getattr(cls, name) is not getattr(base, name)}


def test_both_handlers_implement_the_same_callbacks() -> None:
    sync = _overridden(CallbackHandler, BaseCallbackHandler)
    asynchronous = _overridden(AsyncCallbackHandler, LangChainAsyncHandler)
    assert sync == asynchronous
    assert {"on_chain_start", "on_chat_model_start", "on_llm_new_token", "on_retry",
            "on_custom_event", "on_retriever_end", "on_tool_error"} <= sync
    for name in sync:
        assert not inspect.iscoroutinefunction(getattr(CallbackHandler, name)), name
        assert inspect.iscoroutinefunction(getattr(AsyncCallbackHandler, name)), name


class Docs(BaseRetriever):
    def _get_relevant_documents(self, query: str, *, run_manager: Any) -> list[Document]:
        return [Document(page_content=f"about {query}")]


@tool
def shout(text: str) -> str:
    """Upper-case the text."""
    return text.upper()


def _retry_state() -> RetryCallState:
    state = RetryCallState(Retrying(), None, (), {})
    state.attempt_number = 2
    failed: Future = Future(1)
    failed.set_exception(TimeoutError("first attempt timed out"))
    state.outcome = failed
    return state


def _fails(text: str) -> str:
    raise ValueError("primary step failed")


def _step(text: str, config: RunnableConfig, run_manager: Any) -> str:
    run_manager.on_retry(_retry_state())
    run_manager.on_text("note")
    dispatch_custom_event("progress", {"done": 1}, config=config)
    Docs().invoke(text, config)
    return str(shout.invoke({"text": text}, config))


async def _astep(text: str, config: RunnableConfig, run_manager: Any) -> str:
    await run_manager.on_retry(_retry_state())
    await run_manager.on_text("note")
    await adispatch_custom_event("progress", {"done": 1}, config=config)
    await Docs().ainvoke(text, config)
    return str(await shout.ainvoke({"text": text}, config))


def chain() -> Runnable[dict[str, str], str]:
    prompt = ChatPromptTemplate.from_messages([("human", "{q}")])
    step = RunnableLambda(_step, afunc=_astep, name="step")
    primary = RunnableLambda(_fails, name="primary")
    return (prompt | FakeListChatModel(responses=["hello"]) | StrOutputParser()
            | primary.with_fallbacks([step]))


def _no_run_ids(value: Any) -> Any:
    """``value`` with the message ids LangChain derives from run ids blanked."""
    if isinstance(value, dict):
        return {k: _no_run_ids(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_no_run_ids(v) for v in value]
    if isinstance(value, str) and value.startswith("lc_run--"):
        return "lc_run--(run id)"
    return value


def _shape(spans: list[Span]) -> list[Any]:
    """The tree in start order, without ids and times."""
    index = {s.span_id: i for i, s in enumerate(spans)}
    out = []
    for s in spans:
        attributes = dict(s.attributes or {})
        attributes["events"] = [{k: v for k, v in e.items() if k != "time_ns"}
                                for e in attributes.get("events", [])]
        out.append((s.name, s.kind, index.get(s.parent_id or ""), s.status, s.error_type, s.error,
                    _no_run_ids(s.inputs), _no_run_ids(s.outputs), s.tags, s.metadata, s.model, s.input_tokens, s.output_tokens,
                    attributes))
    return out


async def test_sync_and_async_handlers_record_the_same_tree(lc_observer: Observer) -> None:
    sync_id, async_id = uuid.uuid4(), uuid.uuid4()
    sync_handler, async_handler = CallbackHandler(lc_observer), AsyncCallbackHandler(lc_observer)
    assert chain().invoke({"q": "hi"}, config={"callbacks": [sync_handler], "run_id": sync_id}) == "HELLO"
    assert await chain().ainvoke({"q": "hi"}, config={"callbacks": [async_handler], "run_id": async_id}) == "HELLO"
    assert sync_handler.open_runs == async_handler.open_runs == 0
    assert sync_handler.internal_errors == async_handler.internal_errors == 0

    sync_spans = trace_spans(lc_observer, sync_id.hex)
    async_spans = trace_spans(lc_observer, async_id.hex)
    assert _shape(sync_spans) == _shape(async_spans)
    names = [s.name for s in sync_spans]
    assert {"ChatPromptTemplate", "FakeListChatModel", "primary", "step", "Docs", "shout"} <= set(names)
    step = next(s for s in async_spans if s.name == "step")
    assert [e["name"] for e in (step.attributes or {})["events"]] == ["retry", "text", "progress"]
    retry = (step.attributes or {})["events"][0]
    assert retry["attempt"] == 2 and "first attempt timed out" in retry["error"]
