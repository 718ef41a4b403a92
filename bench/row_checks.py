"""What making every row storable costs: ``StoreWriter.prepare`` with the row
checks (storage/row_checks.py) and without them, interleaved rounds in one
process, on LangChain-like spans (a chain, a prompt, a model call with
messages and usage, a parser).

    python bench/row_checks.py [--spans 40000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chainsight.framework.model import Span
from chainsight.storage import writer as writer_module
from chainsight.storage.row_checks import RowChecker
from chainsight.storage.writer import StoreWriter, WriteBatch


def _spans(n: int) -> list[Span]:
    spans: list[Span] = []
    while len(spans) < n:
        root = Span("rag_answer", "chain")
        root.inputs = {"question": "what is the refund policy?"}
        root.outputs = "Refunds within 30 days."
        root.user_id, root.tags = "u-17", ["prod"]
        prompt = Span("ChatPromptTemplate", "prompt", trace_id=root.trace_id, parent_id=root.span_id)
        prompt.inputs = {"question": "what is the refund policy?"}
        prompt.outputs = [{"role": "user", "content": "Answer: what is the refund policy?"}]
        llm = Span("ChatOpenAI", "llm", trace_id=root.trace_id, parent_id=root.span_id)
        llm.model, llm.provider = "gpt-4o-mini", "openai"
        llm.input_tokens, llm.output_tokens, llm.cost_usd = 42, 9, 0.000012
        llm.inputs, llm.outputs = prompt.outputs, "Refunds within 30 days."
        llm.first_token_ns = llm.start_ns + 1000
        parser = Span("StrOutputParser", "parser", trace_id=root.trace_id, parent_id=root.span_id)
        parser.inputs, parser.outputs = llm.outputs, llm.outputs
        for span in (prompt, llm, parser, root):
            span.end_ns = span.start_ns + 5000
            span.status = "ok"
            spans.append(span)
    return spans[:n]


class _NoChecks(RowChecker):
    def __init__(self) -> None:  # a stand-in that checks nothing
        pass

    def clean(self, row: dict[str, object]) -> None:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=40_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    spans = _spans(args.spans)
    writer = StoreWriter("sqlite://")
    checked = dict(writer_module._CHECKERS)
    unchecked = {name: _NoChecks() for name in checked}
    results: dict[str, list[float]] = {"with row checks": [], "without (baseline)": []}
    for _ in range(args.rounds):
        for label, checkers in (("without (baseline)", unchecked), ("with row checks", checked)):
            writer_module._CHECKERS.update(checkers)
            start = time.perf_counter()
            for i in range(0, len(spans), 1000):
                writer.prepare(WriteBatch(spans=spans[i:i + 1000]))
            results[label].append((time.perf_counter() - start) / len(spans) * 1e6)
    writer_module._CHECKERS.update(checked)
    print(f"StoreWriter.prepare, {args.spans} spans x {args.rounds} interleaved rounds (µs per span)")
    print(f"{'':22} {'median':>8} {'fastest':>8}")
    for label, values in results.items():
        print(f"{label:22} {statistics.median(values):8.2f} {min(values):8.2f}")
    base = statistics.median(results["without (baseline)"])
    print(f"row checks add {statistics.median(results['with row checks']) - base:.2f} µs per span "
          f"({(statistics.median(results['with row checks']) / base - 1) * 100:.0f}%)")


if __name__ == "__main__":
    main()
