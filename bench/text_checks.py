"""Worker-side cost of the refusal and toxicity checks' text scans per answer.

Two sets of 2,000 synthetic English answers of 20-250 words: "mixed" holds
words the checks' cues contain (I, will, you, can, should, help), "plain"
none of them. Prints the median over rounds of the cost per answer of
``RefusalCheck._search`` (first 400 characters) and ``LexiconScorer._score``,
and of building a RefusalCheck.

    python bench/text_checks.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chainsight.plugins.refusal import RefusalCheck, _normalise
from chainsight.plugins.toxicity import LexiconScorer

_TEXT = (
    "the model returns a summary of the document and you can use it to answer questions about "
    "revenue growth in the third quarter which was driven by strong demand for cloud services "
    "while costs remained stable we recommend reviewing the attached report for details on "
    "regional performance and the outlook for next year including risks such as currency "
    "movements supply chain delays and changes in regulation I will help you with that here "
    "is a step by step plan first install the package then configure the settings finally run "
    "the tests should pass if everything works"
)
WORDS = _TEXT.split()
CUE_WORDS = {"I", "will", "you", "can", "should", "help"}


def answers(words: list[str], seed: int, count: int = 2000) -> list[str]:
    rnd = random.Random(seed)
    out = []
    for _ in range(count):
        text = " ".join(rnd.choice(words) for _ in range(rnd.randint(20, 250)))
        out.append(text[0].upper() + text[1:] + ".")
    return out


def per_call_us(function: Callable[[str], object], texts: list[str], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for text in texts:
            function(text)
        times.append((time.perf_counter() - t0) / len(texts) * 1e6)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    refusal, toxicity = RefusalCheck(), LexiconScorer()
    sets = {"mixed": answers(WORDS, 1), "plain": answers([w for w in WORDS if w not in CUE_WORDS], 2)}
    print(f"{'per answer (median)':22} {'refusal':>10} {'toxicity':>10}")
    for name, texts in sets.items():
        heads = [_normalise(t[:400]) for t in texts]
        print(f"{name:22} {per_call_us(refusal._search, heads, args.rounds):8.2f} us "
              f"{per_call_us(toxicity._score, texts, args.rounds):8.2f} us")
    t0 = time.perf_counter()
    for _ in range(20):
        RefusalCheck()
    print(f"RefusalCheck() {(time.perf_counter() - t0) / 20 * 1e3:.2f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
