"""Record ``chainsight/testing/data/sample_trace.jsonl``, the recording that
``chainsight.testing.SAMPLE_TRACE`` names: three real LangChain runs with fake
chat models, stored through the redaction built-in (offline, ~2 s)::

    .venv/bin/python scripts/record_sample_trace.py [PATH]

``tests/testing/test_recorded.py`` runs it and checks that the shipped file
has the same spans, so change both together.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from chainsight.testing import SAMPLE_TRACE, record  # noqa: E402

LONG_ANSWER = (
    "The quarterly report shows revenue up eight percent, driven by the new subscription tier, "
    "while support costs fell after the help centre was rebuilt. Churn stayed flat. The team "
    "recommends hiring two engineers for the billing rewrite, delaying the mobile redesign to "
    "the next quarter, and reviewing the pricing of the legacy plan before renewals start in "
    "March, when most annual contracts come up."
)


def sample_runs(handler: Any) -> None:
    """The three runs, each its own trace: ``rag``, ``summarize``, ``lookup``."""
    from langchain_core.callbacks import CallbackManagerForRetrieverRun
    from langchain_core.documents import Document
    from langchain_core.language_models import FakeListChatModel, GenericFakeChatModel
    from langchain_core.messages import AIMessage
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate
    from langchain_core.retrievers import BaseRetriever
    from langchain_core.runnables import RunnableLambda, RunnablePassthrough

    class Handbook(BaseRetriever):
        def _get_relevant_documents(
            self, query: str, *, run_manager: CallbackManagerForRetrieverRun
        ) -> list[Document]:
            return [
                Document("Refunds are issued within 14 days of receiving the return.",
                         metadata={"source": "handbook/refunds.md"}),
                Document("Store credit never expires.", metadata={"source": "handbook/credit.md"}),
            ]

    def join(documents: list[Document]) -> str:
        return "\n".join(d.page_content for d in documents)

    config = {"callbacks": [handler]}
    prompt = ChatPromptTemplate.from_messages(
        [("system", "Answer from the context only.\n{context}"), ("human", "{question}")])
    model = GenericFakeChatModel(messages=iter([AIMessage(
        "Refunds are issued within 14 days of receiving the return.",
        usage_metadata={"input_tokens": 41, "output_tokens": 12, "total_tokens": 53},
    )]))
    rag = ({"context": Handbook() | RunnableLambda(join), "question": RunnablePassthrough()}
           | prompt | model | StrOutputParser()).with_config(run_name="rag")
    rag.invoke("How long do refunds take? Answer to jane.doe@example.com", config=config)

    summarize = (ChatPromptTemplate.from_messages([("human", "Summarize: {text}")])
                 | FakeListChatModel(responses=[LONG_ANSWER]) | StrOutputParser()
                 ).with_config(run_name="summarize", metadata={"user_id": "u-42"})
    summarize.invoke({"text": "Q3 report"}, config=config)

    def lookup_order(order_id: str) -> str:
        raise LookupError(f"order {order_id} not found")

    try:
        RunnableLambda(lookup_order).with_config(run_name="lookup").invoke("A-1234", config=config)
    except LookupError:
        pass


def main(argv: list[str]) -> int:
    path = Path(argv[0]) if argv else SAMPLE_TRACE
    spans = record(sample_runs, path)
    print(f"{len(spans)} spans in {len({s.trace_id for s in spans})} traces written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
