"""The user's chain never breaks because of Chainsight: raising plugins, odd callbacks."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Sequence
from pathlib import Path

from langchain_core.language_models import FakeListChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate

from chainsight.framework.adapters.langchain import CallbackHandler
from chainsight.framework.hookspecs import hookimpl
from chainsight.framework.model import Span
from chainsight.framework.observer import Observer

sys.path.insert(0, str(Path(__file__).parent))
from langchain_helpers import trace_spans, tree


class RaisesEverywhere:
    name = "raises_everywhere"

    def __init__(self) -> None:
        self.calls = 0

    @hookimpl
    def price_span(self, span: Span) -> float | None:
        self.calls += 1
        raise RuntimeError("pricing exploded")

    @hookimpl
    def process_span(self, span: Span) -> None:
        self.calls += 1
        raise RuntimeError("processing exploded")

    @hookimpl
    def spans_finished(self, spans: Sequence[Span]) -> None:
        self.calls += 1
        raise RuntimeError("sink exploded")

    @hookimpl
    def trace_finished(self, root: Span, spans: Sequence[Span]) -> None:
        self.calls += 1
        raise RuntimeError("trace check exploded")


def test_chain_returns_normally_when_every_plugin_raises(tmp_path: Path) -> None:
    bad = RaisesEverywhere()
    observer = Observer(f"sqlite:///{tmp_path / 'r.db'}", builtins=(), entry_points=False,
                        strict=False, spill_path=tmp_path / "spill.jsonl", plugins=[bad])
    try:
        handler = CallbackHandler(observer)
        prompt = ChatPromptTemplate.from_messages([("human", "{q}")])
        runnable = prompt | FakeListChatModel(responses=["fine"], sleep=0.001) | StrOutputParser()
        ids = [uuid.uuid4() for _ in range(3)]
        assert runnable.invoke({"q": "x"}, config={"callbacks": [handler], "run_id": ids[0]}) == "fine"
        assert "".join(runnable.stream({"q": "y"},
                                       config={"callbacks": [handler], "run_id": ids[1]})) == "fine"
        assert runnable.batch([{"q": "z"}], config={"callbacks": [handler], "run_id": ids[2]}) == ["fine"]
        assert observer.flush(10)
        assert bad.calls > 0 and observer.stats().plugin_errors > 0
        for run_id in ids:  # the spans are still stored
            assert tree(trace_spans(observer, run_id.hex))[0] == "RunnableSequence"
        assert handler.internal_errors == 0
    finally:
        observer.shutdown(timeout=10)


def test_odd_callback_arguments_never_raise(lc_observer: Observer, handler: CallbackHandler) -> None:
    run_id, child = uuid.uuid4(), uuid.uuid4()
    handler.on_chain_start({"id": ["x", "Custom"]}, {"a": 1}, run_id=run_id)
    handler.on_chat_model_start({}, [], run_id=child, parent_run_id=run_id)
    handler.on_llm_end(object(), run_id=child)  # type: ignore[arg-type]
    handler.on_llm_new_token("t", run_id=uuid.uuid4())  # unknown run
    handler.on_chain_end({"b": 2}, run_id=uuid.uuid4())  # unknown run
    handler.on_chain_end({"b": 2}, run_id=run_id)
    assert handler.internal_errors >= 1  # counted, not raised
    assert handler.open_runs == 0  # the llm span was still ended
    spans = trace_spans(lc_observer, run_id.hex)
    assert tree(spans)[0:2] == ("Custom", "chain")
