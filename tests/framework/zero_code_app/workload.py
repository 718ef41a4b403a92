"""An application that knows nothing of Chainsight: a LangChain chain (sync and
async), a LangGraph tool-calling agent, a chain that fails, and a litellm call.

``app.py`` runs it as is; ``explicit.py`` runs it with Chainsight's handlers
passed explicitly (the baseline zero-code tracing must match)."""

from __future__ import annotations

import asyncio
from typing import Any

import litellm
from langchain_core.language_models import FakeListChatModel, GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda
from langchain_core.tools import tool
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition

litellm.suppress_debug_info = True


@tool
def lookup_weather(city: str) -> str:
    """Current weather in a city."""
    return f"Sunny in {city}"


def build_chain() -> Any:
    prompt = ChatPromptTemplate.from_messages([("system", "Answer briefly."), ("human", "{question}")])
    model = FakeListChatModel(responses=["Paris is the capital of France.", "It is Berlin."])
    return prompt | model | StrOutputParser()


def build_graph() -> Any:
    model = GenericFakeChatModel(messages=iter([
        AIMessage(content="", tool_calls=[{"name": "lookup_weather", "args": {"city": "Paris"}, "id": "c1"}],
                  usage_metadata={"input_tokens": 40, "output_tokens": 12, "total_tokens": 52}),
        AIMessage(content="It is sunny in Paris.",
                  usage_metadata={"input_tokens": 60, "output_tokens": 8, "total_tokens": 68}),
    ]))

    def agent(state: MessagesState) -> dict[str, list[BaseMessage]]:
        return {"messages": [model.invoke(state["messages"])]}

    graph = StateGraph(MessagesState)
    graph.add_node("agent", agent)
    graph.add_node("tools", ToolNode([lookup_weather]))
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", tools_condition)
    graph.add_edge("tools", "agent")
    return graph.compile()


def fail(_: Any) -> str:
    raise ValueError("the lookup service is down")


def main(callbacks: list[Any] | None = None) -> None:
    config: Any = {"callbacks": callbacks} if callbacks else None
    chain = build_chain()
    print(chain.invoke({"question": "Capital of France?"}, config=config))
    print(asyncio.run(chain.ainvoke({"question": "Capital of Germany?"}, config=config)))
    state = build_graph().invoke({"messages": [HumanMessage("Weather in Paris?")]}, config=config)
    print(state["messages"][-1].content)
    try:
        (RunnableLambda(lambda q: q.strip()) | RunnableLambda(fail)).invoke(" weather? ", config=config)
    except ValueError as exc:
        print(f"failed as it should: {exc}")
    response = litellm.completion(model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}],
                                  mock_response="Hello from litellm.")
    print(response.choices[0].message.content)
