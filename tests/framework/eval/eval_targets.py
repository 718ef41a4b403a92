"""Targets for the evaluation tests: LangChain chains with a fake chat model
that is wrong on known items, and plain callables."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from langchain_core.language_models import FakeListChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.runnables import Runnable, RunnableLambda

N_ITEMS = 30
WRONG_A = frozenset({4, 11})
WRONG_B = frozenset({4, 11, 17, 22, 29})  # regresses on 17, 22 and 29
DONT_KNOW = "I do not know"


def question(i: int) -> str:
    return f"What is {i} + {i}?"


def right_answer(i: int) -> str:
    return f"The answer is {2 * i}"


def dataset_records() -> list[dict[str, Any]]:
    return [{"input": question(i), "expected": right_answer(i), "metadata": {"n": i}}
            for i in range(N_ITEMS)]


def make_chain(wrong: frozenset[int]) -> Runnable[Any, str]:
    def answer(text: str) -> Any:
        i = int(text.split()[2])
        reply = DONT_KNOW if i in wrong else right_answer(i)
        # One fake model per question: answers do not depend on the order items run in.
        return FakeListChatModel(responses=[reply]).invoke(text)

    return RunnableLambda(answer, name="qa_chain") | StrOutputParser()


chain_a = make_chain(WRONG_A)
chain_b = make_chain(WRONG_B)


def counted_slow(text: str) -> str:
    """Logs each call to $EVAL_CALLS_LOG, then answers after a pause."""
    with Path(os.environ["EVAL_CALLS_LOG"]).open("a", encoding="utf-8") as log:
        log.write(text + "\n")
    time.sleep(float(os.environ.get("EVAL_SLEEP_S", "0.2")))
    i = int(text.split()[2])
    return right_answer(i)
