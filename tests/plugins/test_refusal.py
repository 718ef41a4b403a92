"""The refusal check: multilingual labelled cases, window, extra patterns."""

from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage

from framework.model import Span
from plugins import refusal
from plugins.refusal import RefusalCheck
from tests.plugins.cases import precision_recall
from tests.plugins.cases.refusal_cases import CASES


def answer(outputs: object, kind: str = "llm") -> Span:
    span = Span("model", kind, parent_id="p" * 16)
    span.outputs, span.status = outputs, "ok"
    return span


def test_labelled_cases_precision_recall() -> None:
    assert len(CASES) >= 20
    check = RefusalCheck()
    pairs, misses = [], []
    for text, expected in CASES:
        (score,) = check.check_span(answer(text)) or []
        predicted = score.label == "refusal"
        assert score.value == (1.0 if predicted else 0.0) and score.passed is (not predicted)
        pairs.append((expected, predicted))
        if predicted != expected:
            misses.append(f"{text!r}: expected {expected}")
    p, r, tp, fp, fn = precision_recall(pairs)
    print(f"\nrefusal: {len(CASES)} cases, precision {p:.2f}, recall {r:.2f} (tp={tp} fp={fp} fn={fn})")
    for miss in misses:
        print("  miss:", miss)
    assert p >= 0.9 and r >= 0.9


def test_reads_messages_and_names_the_pattern_not_the_text() -> None:
    (score,) = RefusalCheck().check_span(answer(AIMessage(content="I'm sorry, but I cannot help with that."))) or []
    assert score.label == "refusal"
    assert score.comment == "refusal pattern en:cannot-help"
    (score,) = RefusalCheck().check_span(answer({"choices": [{"message": {"role": "assistant",
                                                                         "content": "Paris."}}]})) or []
    assert score.label == "answered"


def test_only_the_start_of_a_long_answer_counts() -> None:
    text = "Here is the full guide. " * 40 + "Some assistants say: I can't help with that."
    (score,) = RefusalCheck().check_span(answer(text)) or []
    assert score.label == "answered"
    (score,) = RefusalCheck(window_chars=5000).check_span(answer(text)) or []
    assert score.label == "refusal"


def test_skips_non_answers() -> None:
    check = RefusalCheck()
    assert check.check_span(answer("I can't help with that", kind="tool")) is None
    assert check.check_span(answer(None)) is None
    assert check.check_span(answer("   ")) is None


def test_extra_patterns_and_bad_patterns() -> None:
    check = RefusalCheck(extra_patterns=(r"\bcomputer says no\b",))
    (score,) = check.check_span(answer("Computer says no.")) or []
    assert score.label == "refusal" and score.comment == "refusal pattern extra[0]"
    with pytest.raises(ValueError, match=r"extra_patterns\[0\]"):
        refusal.create_plugin().configure({"extra_patterns": ["(unclosed"]})


def test_long_adversarial_input_is_fast() -> None:
    import time

    check = RefusalCheck(window_chars=100_000)
    for text in ("I can't " * 10_000, "sorry " * 20_000, "no puedo " * 10_000):
        started = time.perf_counter()
        check.detect(text)
        assert time.perf_counter() - started < 1.0


def _sentences(count: int, seed: int = 3) -> list[str]:
    import random

    words = ["I", "İ", "ı", "can't", "cannot", "won't", "help", "assist", "with", "that", "sorry", "as", "an", "AI",
             "not", "able", "to", "policy", "against", "my", "guidelines", "decline", "comfortable", "unable", "no",
             "puedo", "ayudarte", "je", "ne", "peux", "pas", "ich", "kann", "nicht", "helfen", "не", "могу",
             "помочь", "我不能", "帮助", "申し訳ありませんが", "できません", "’m", "'m", ",", ".", "\n", "item", "the"]
    rnd = random.Random(seed)
    return [" ".join(rnd.choice(words) for _ in range(rnd.randint(1, 12))) for _ in range(count)]


def test_literal_prefilters_never_change_the_verdict() -> None:
    # detect() skips patterns whose required literals are absent; the
    # reference runs every pattern, in order, on every text.
    check = RefusalCheck(extra_patterns=(r"nope\b", r"(?s)x.y", "İstanbul"))

    def reference(text: str) -> str | None:
        head = refusal._normalise(text[: check.window_chars])
        return next((family for family, pattern in check.patterns if pattern.search(head)), None)

    texts = [text for text, _ in CASES] + _sentences(5000)
    found = 0
    for text in texts:
        expected = reference(text)
        assert check.detect(text) == expected, text
        found += expected is not None
    assert found > 50  # the texts exercise the patterns
