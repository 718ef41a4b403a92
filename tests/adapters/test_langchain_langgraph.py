"""A LangGraph tool-calling agent: every node, model call and tool call in ONE trace."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("langgraph")

from langchain_core.language_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.tools import tool
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition

from chainsight.framework.adapters.langchain import CallbackHandler
from chainsight.framework.model import Span
from chainsight.framework.observer import Observer

sys.path.insert(0, str(Path(__file__).parent))
from langchain_helpers import trace_spans, tree


@tool
def lookup_weather(city: str) -> str:
    """Current weather in a city."""
    return f"Sunny in {city}"


@tool
def lookup_time(city: str) -> str:
    """Current time in a city."""
    return f"12:00 in {city}"


def build_graph(script: list[AIMessage]) -> Any:
    model = GenericFakeChatModel(messages=iter(script))

    def agent(state: MessagesState) -> dict[str, list[BaseMessage]]:
        return {"messages": [model.invoke(state["messages"])]}

    graph = StateGraph(MessagesState)
    graph.add_node("agent", agent)
    graph.add_node("tools", ToolNode([lookup_weather, lookup_time]))
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", tools_condition)
    graph.add_edge("tools", "agent")
    return graph.compile()


SCRIPT = [
    AIMessage(content="", tool_calls=[
        {"name": "lookup_weather", "args": {"city": "Paris"}, "id": "c1"},
        {"name": "lookup_time", "args": {"city": "Paris"}, "id": "c2"},
    ], usage_metadata={"input_tokens": 40, "output_tokens": 12, "total_tokens": 52}),
    AIMessage(content="It is sunny and noon in Paris.",
              usage_metadata={"input_tokens": 80, "output_tokens": 9, "total_tokens": 89}),
]


def check(spans: list[Span], root_run_id: str) -> None:
    assert len({s.trace_id for s in spans}) == 1
    assert [s.span_id for s in spans if s.parent_id is None] == [root_run_id]
    shape = tree(spans)
    assert shape[0:2] == ("LangGraph", "chain")
    nodes = [(name, kind) for name, kind, _ in shape[2]]
    assert nodes == [("agent", "chain"), ("tools", "chain"), ("agent", "chain")]
    agent1, tools, agent2 = shape[2]
    assert ("GenericFakeChatModel", "llm", []) in agent1[2]
    assert ("GenericFakeChatModel", "llm", []) in agent2[2]
    assert sorted(t[:2] for t in tools[2]) == [("lookup_time", "tool"), ("lookup_weather", "tool")]
    llms = [s for s in spans if s.kind == "llm"]
    assert [(s.input_tokens, s.output_tokens) for s in llms] == [(40, 12), (80, 9)]
    assert (llms[0].attributes or {})["tool_calls"][0]["name"] == "lookup_weather"
    tool_spans = {s.name: s for s in spans if s.kind == "tool"}
    assert "Sunny in Paris" in str(tool_spans["lookup_weather"].outputs)
    assert all(s.status == "ok" for s in spans)


def test_langgraph_agent_is_one_trace(lc_observer: Observer, handler: CallbackHandler) -> None:
    run_id = uuid.uuid4()
    result = build_graph(list(SCRIPT)).invoke(
        {"messages": [("user", "Weather and time in Paris?")]},
        config={"callbacks": [handler], "run_id": run_id},
    )
    assert result["messages"][-1].content == "It is sunny and noon in Paris."
    check(trace_spans(lc_observer, run_id.hex), run_id.hex)
    assert handler.open_runs == 0


async def test_langgraph_agent_async(lc_observer: Observer, handler: CallbackHandler) -> None:
    run_id = uuid.uuid4()
    result = await build_graph(list(SCRIPT)).ainvoke(
        {"messages": [("user", "Weather and time in Paris?")]},
        config={"callbacks": [handler], "run_id": run_id},
    )
    assert result["messages"][-1].content == "It is sunny and noon in Paris."
    check(trace_spans(lc_observer, run_id.hex), run_id.hex)
