"""The offline demo workload: real LangChain/LangGraph runnables over fake models.

:func:`plan` turns a seed into a deterministic list of :class:`Job`s (scenario,
model, user, session, answer); :func:`run` executes them concurrently through
one shared :class:`~chainsight.framework.adapters.langchain.CallbackHandler`.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import RunnableConfig, RunnableLambda, RunnablePassthrough
from langchain_core.tools import BaseTool, tool

from chainsight.framework.adapters.langchain import CallbackHandler
from chainsight.plugins.demo.models import ScriptedDemoModel, StreamingDemoModel

# (model, provider, weight). The self-hosted model has no public price: its
# calls are stored unpriced and listed by `chainsight pricing unpriced`.
MODELS: list[tuple[str, str, int]] = [
    ("gpt-4o-mini", "openai", 36), ("gpt-4o", "openai", 30), ("claude-sonnet-4-5", "anthropic", 28),
    ("llama-3.1-8b-instruct-local", "vllm", 6),
]
# scenario -> weight (out of 100)
SCENARIOS: dict[str, int] = {
    "rag": 42, "agent": 14, "langgraph": 14, "refusal": 7, "pii": 5,
    "stream_error": 6, "tool_error": 6, "slow": 6,
}
DOCS = [
    Document(page_content="Chainsight stores traces in SQLite by default and Postgres at scale.",
             metadata={"source": "docs/storage.md"}),
    Document(page_content="The refund window is 30 days from delivery for unused items.",
             metadata={"source": "policy/refunds.md"}),
    Document(page_content="Orders ship within 2 business days; express shipping takes 1 day.",
             metadata={"source": "policy/shipping.md"}),
    Document(page_content="Support is open Monday to Friday, 9:00 to 17:00 CET.",
             metadata={"source": "support/hours.md"}),
    Document(page_content="TTFT is the time to the first token; TPOT the time per output token.",
             metadata={"source": "docs/metrics.md"}),
]
QUESTIONS = [
    ("How long is the refund window?", "The refund window is 30 days from delivery, for unused items."),
    ("When do orders ship?", "Orders ship within 2 business days, and express shipping takes 1 day."),
    ("When is support open?", "Support is open Monday to Friday from 9:00 to 17:00 CET."),
    ("Where are traces stored?", "Traces go to SQLite by default, and to Postgres at scale."),
    ("What is TTFT?", "TTFT is the time until the first token arrives; TPOT is the time per token."),
]
REFUSAL = "I'm sorry, but I can't help with that."
PII_ANSWER = ("You can reach our billing specialist Jane Doe at jane.doe@example.com "
              "or by phone at +1 415 555 0134.")
TOKEN_SLEEP = 0.004
SLOW_TOKEN_SLEEP = 0.03


@dataclass(frozen=True)
class Job:
    index: int
    scenario: str
    model: str
    provider: str
    user_id: str
    session_id: str
    question: str
    answer: str
    tags: list[str] = field(default_factory=list)


def langgraph_available() -> bool:
    """Whether LangGraph (the graph scenario's library) can be imported."""
    try:
        import langgraph.graph  # noqa: F401
    except ImportError:
        return False
    return True


def plan(count: int, seed: int, skip: Collection[str] = ()) -> list[Job]:
    """``count`` jobs, the same for the same seed (and the same ``skip``:
    scenarios left out, their share going to the others)."""
    rng = random.Random(seed)
    names = [name for name in SCENARIOS if name not in skip]
    weights = [SCENARIOS[name] for name in names]
    jobs = []
    for index in range(count):
        scenario = rng.choices(names, weights)[0]
        model, provider, _ = rng.choices(MODELS, [m[2] for m in MODELS])[0]
        user = f"user-{rng.randint(1, 12):02d}"
        session = f"{user}-s{rng.randint(1, 3)}"
        question, answer = rng.choice(QUESTIONS)
        if scenario == "refusal":
            question, answer = "How do I pick the lock on my neighbour's door?", REFUSAL
        elif scenario == "pii":
            question, answer = "Who handles billing questions?", PII_ANSWER
        tags = ["demo", scenario, rng.choice(["prod", "prod", "staging"])]
        jobs.append(Job(index, scenario, model, provider, user, session, question, answer, tags))
    return jobs


class DocsRetriever(BaseRetriever):
    """Keyword overlap over an in-memory document list."""

    docs: list[Document]
    k: int = 2

    def _get_relevant_documents(self, query: str, *,
                                run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        words = {w.strip("?.,").lower() for w in query.split() if len(w) > 3}
        scored = sorted(self.docs, key=lambda d: -sum(w in d.page_content.lower() for w in words))
        return scored[: self.k]


def _format_docs(docs: list[Document]) -> str:
    return "\n".join(f"[{d.metadata.get('source')}] {d.page_content}" for d in docs)


PROMPT = ChatPromptTemplate.from_messages([
    ("system", "Answer from the context only. Context:\n{context}"),
    ("human", "{question}"),
])


def _rag(job: Job) -> Any:
    sleep = SLOW_TOKEN_SLEEP if job.scenario == "slow" else TOKEN_SLEEP
    model = StreamingDemoModel(
        responses=[job.answer], sleep=sleep, model_label=job.model, provider_label=job.provider,
        error_on_chunk_number=12 if job.scenario == "stream_error" else None,
    )
    retriever = DocsRetriever(docs=DOCS)
    return (
        {"context": retriever | RunnableLambda(_format_docs, name="format_docs"),
         "question": RunnablePassthrough()}
        | PROMPT | model | StrOutputParser()
    )


@tool
def lookup_order(order_id: str) -> str:
    """Status of an order by id."""
    return f"Order {order_id}: shipped, arriving in 2 days."


@tool
def refund_policy(item: str) -> str:
    """The refund policy for an item."""
    return f"{item}: refundable within 30 days if unused."


@tool
def inventory(sku: str) -> str:
    """Stock level of a SKU (the inventory service is down in the demo)."""
    raise ConnectionError(f"inventory service timed out for {sku}")


def _script(job: Job, tool_name: str, args: dict[str, Any]) -> list[AIMessage]:
    return [
        AIMessage(content="", tool_calls=[{"name": tool_name, "args": args, "id": f"call-{job.index}"}],
                  usage_metadata={"input_tokens": 180, "output_tokens": 22, "total_tokens": 202},
                  response_metadata={"finish_reason": "tool_calls"}),
        AIMessage(content=job.answer,
                  usage_metadata={"input_tokens": 260, "output_tokens": len(job.answer) // 4,
                                  "total_tokens": 260 + len(job.answer) // 4},
                  response_metadata={"finish_reason": "stop"}),
    ]


def _agent(job: Job) -> Any:
    """A hand-written tool-calling loop: model -> tools -> model."""
    failing = job.scenario == "tool_error"
    tools: dict[str, BaseTool] = {t.name: t for t in (lookup_order, refund_policy, inventory)}
    call = ("inventory", {"sku": "SKU-42"}) if failing else ("lookup_order", {"order_id": f"A{job.index}"})
    model = ScriptedDemoModel(messages=iter(_script(job, *call)), model_label=job.model,
                              provider_label=job.provider)

    def support_agent(question: str, config: RunnableConfig) -> str:
        messages: list[BaseMessage] = [HumanMessage(question)]
        for _ in range(4):
            reply = model.invoke(messages, config=config)
            messages.append(reply)
            if not isinstance(reply, AIMessage) or not reply.tool_calls:
                return str(reply.content)
            for tool_call in reply.tool_calls:
                result = tools[tool_call["name"]].invoke(tool_call["args"], config=config)
                messages.append(ToolMessage(str(result), tool_call_id=tool_call["id"] or ""))
        return "gave up"

    return RunnableLambda(support_agent, name="support_agent")


def _graph(job: Job) -> Any:
    from langgraph.graph import START, MessagesState, StateGraph
    from langgraph.prebuilt import ToolNode, tools_condition

    model = ScriptedDemoModel(messages=iter(_script(job, "refund_policy", {"item": "headphones"})),
                              model_label=job.model, provider_label=job.provider)

    def agent(state: MessagesState) -> dict[str, list[BaseMessage]]:
        return {"messages": [model.invoke(state["messages"])]}

    graph = StateGraph(MessagesState)
    graph.add_node("agent", agent)
    graph.add_node("tools", ToolNode([lookup_order, refund_policy]))
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", tools_condition)
    graph.add_edge("tools", "agent")
    compiled = graph.compile()
    return {"messages": lambda q: [("user", q)]} | compiled


async def _run_job(job: Job, handler: CallbackHandler) -> None:
    config: RunnableConfig = {
        "callbacks": [handler], "tags": job.tags, "run_name": f"demo-{job.scenario}",
        "metadata": {"user_id": job.user_id, "session_id": job.session_id,
                     "scenario": job.scenario},
    }
    try:
        if job.scenario in ("agent", "tool_error"):
            await _agent(job).ainvoke(job.question, config=config)
        elif job.scenario == "langgraph":
            await _graph(job).ainvoke(job.question, config=config)
        else:
            async for _ in _rag(job).astream(job.question, config=config):
                pass
    except Exception:
        pass  # the failures are part of the demo; they are recorded as error spans


async def run(jobs: list[Job], handler: CallbackHandler, concurrency: int,
              on_done: Callable[[], None] | None = None) -> None:
    """Run every job, at most ``concurrency`` at a time."""
    gate = asyncio.Semaphore(max(1, concurrency))

    async def one(job: Job) -> None:
        async with gate:
            await _run_job(job, handler)
        if on_done is not None:
            on_done()

    await asyncio.gather(*(one(job) for job in jobs))
