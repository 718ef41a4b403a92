"""One handler shared by many asyncio tasks and threads: every trace separate and complete."""

from __future__ import annotations

import asyncio
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from langchain_core.language_models import FakeListChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import Runnable

from chainsight.framework.adapters.langchain import AsyncCallbackHandler, CallbackHandler
from chainsight.framework.observer import Observer

sys.path.insert(0, str(Path(__file__).parent))
from langchain_helpers import all_traces, trace_spans, tree

SEQ_TREE: Any = ("RunnableSequence", "chain", [
    ("ChatPromptTemplate", "prompt", []),
    ("FakeListChatModel", "llm", []),
    ("StrOutputParser", "parser", []),
])


def chain(sleep: float | None = None) -> Runnable[dict[str, str], str]:
    prompt = ChatPromptTemplate.from_messages([("human", "{q}")])
    return prompt | FakeListChatModel(responses=["answer"], sleep=sleep) | StrOutputParser()


def check_complete(observer: Observer, ids: list[uuid.UUID], *, streamed: bool = False) -> None:
    traces = all_traces(observer)
    assert set(traces) == {i.hex for i in ids}
    for run_id in ids:
        spans = traces[run_id.hex]
        assert tree(spans) == SEQ_TREE
        assert spans[0].inputs == {"q": run_id.hex}, "inputs crossed between traces"
        assert all(s.status == "ok" for s in spans)
        llm = next(s for s in spans if s.kind == "llm")
        assert llm.inputs[0]["content"] == run_id.hex
        if streamed:
            assert llm.chunk_count == len("answer") and llm.first_token_ns is not None


async def test_fifty_concurrent_ainvoke_share_one_handler(lc_observer: Observer,
                                                          handler: CallbackHandler) -> None:
    runnable = chain(sleep=0.001)
    ids = [uuid.uuid4() for _ in range(50)]
    results = await asyncio.gather(*[
        runnable.ainvoke({"q": i.hex}, config={"callbacks": [handler], "run_id": i}) for i in ids
    ])
    assert results == ["answer"] * 50
    assert handler.open_runs == 0
    check_complete(lc_observer, ids)


async def test_concurrent_astream_with_async_handler(lc_observer: Observer) -> None:
    handler = AsyncCallbackHandler(lc_observer)
    runnable = chain(sleep=0.001)
    ids = [uuid.uuid4() for _ in range(20)]

    async def consume(run_id: uuid.UUID) -> str:
        parts = [c async for c in runnable.astream({"q": run_id.hex},
                                                   config={"callbacks": [handler], "run_id": run_id})]
        return "".join(parts)

    assert await asyncio.gather(*[consume(i) for i in ids]) == ["answer"] * 20
    check_complete(lc_observer, ids, streamed=True)


async def test_abatch(lc_observer: Observer, handler: CallbackHandler) -> None:
    ids = [uuid.uuid4() for _ in range(10)]
    results = await chain().abatch([{"q": i.hex} for i in ids],
                                   config=[{"callbacks": [handler], "run_id": i} for i in ids])
    assert results == ["answer"] * 10
    check_complete(lc_observer, ids)


def test_thread_pool_sharing_one_handler(lc_observer: Observer, handler: CallbackHandler) -> None:
    runnable = chain(sleep=0.001)
    ids = [uuid.uuid4() for _ in range(40)]

    def work(run_id: uuid.UUID) -> str:
        return "".join(runnable.stream({"q": run_id.hex},
                                       config={"callbacks": [handler], "run_id": run_id}))

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert list(pool.map(work, ids)) == ["answer"] * 40
    check_complete(lc_observer, ids, streamed=True)


def test_span_for_run_exposes_the_open_span(lc_observer: Observer,
                                            handler: CallbackHandler) -> None:
    from langchain_core.runnables import RunnableLambda
    from langchain_core.runnables.config import var_child_runnable_config

    seen: dict[str, str | None] = {}

    def inside(x: str) -> str:
        # what the litellm adapter does: find our handler in the active config
        config = var_child_runnable_config.get() or {}
        manager = config.get("callbacks")
        handlers = getattr(manager, "handlers", [])
        parent_run_id = getattr(manager, "parent_run_id", None)
        ours = next(h for h in handlers if isinstance(h, CallbackHandler))
        span = ours.span_for_run(parent_run_id) if parent_run_id else None
        seen["span"] = span.name if span else None
        return x

    run_id = uuid.uuid4()
    RunnableLambda(inside, name="step").invoke("x", config={"callbacks": [handler], "run_id": run_id})
    assert seen["span"] == "step"
    assert trace_spans(lc_observer, run_id.hex)[0].name == "step"
