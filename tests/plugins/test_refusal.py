"""The refusal check: multilingual labelled cases, window, extra patterns."""

from __future__ import annotations

import re

import pytest
from langchain_core.messages import AIMessage

from chainsight.framework.model import Span
from chainsight.plugins import refusal
from chainsight.plugins.refusal import RefusalCheck
from chainsight.plugins.text import any_of, fold
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


def _random_texts(count: int, seed: int) -> list[str]:
    """Texts made of the labelled cases' words and the patterns' own words and
    phrases, so that many of them match some pattern."""
    import random

    words: set[str] = set()
    phrases: set[str] = set()
    for text in [t for t, _expected in CASES] + [e for v in CUE_EXAMPLES.values() for e in v]:
        words |= set(text.split())
        phrases |= {" ".join(text.split()[i:i + 3]) for i in range(len(text.split()))}
        phrases |= {text[i:i + 4] for i in range(len(text))} if not text.isascii() else set()
    for _family, cues, pattern in refusal.PATTERNS:
        words |= set(cues)
        words |= set(re.findall(r"[^\W\d_]+(?:'[^\W\d_]+)?", pattern))
        phrases |= set(re.findall(r"[^\W\d_][^()|\\\[\]?*+{}]*[^\W\d_]", pattern))
    pool = sorted(words) + sorted(phrases)
    rnd = random.Random(seed)
    texts = []
    for _ in range(count):
        parts = [rnd.choice(pool) for _ in range(rnd.randint(1, 12))]
        texts.append(" ".join(parts) if rnd.random() < 0.7 else rnd.choice([", ", ". ", " "]).join(parts))
    return texts


# Refusals that hold exactly one cue of the pattern they match, one per cue.
CUE_EXAMPLES = {
    "en:cannot-help": ["I can't help with that.", "I won't provide that.", "I will not assist with this.",
                       "I am not allowed to share that.", "I'm not permitted to discuss it.",
                       "I am unable to answer.", "I must decline to write it."],
    "en:sorry-cannot": ["Sorry, but I won't.", "I apologise, but I must decline to."],
    "en:as-an-ai": ["As an AI, I do not know."],
    "en:policy": ["That is against my guidelines.", "This violates our content policy.",
                  "It is not allowed by the usage policy.", "It is not permitted under the terms of service."],
    "en:decline": ["I must respectfully decline.", "I will refuse."],
    "en:not-comfortable": ["I'm not comfortable writing that."],
    "en:unable-request": ["Unable to help with that request."],
    "es": ["No puedo ayudarte.", "No me es posible responder.", "No estoy en condiciones de ayudar."],
    "fr": ["Je ne peux pas vous aider."],
    "de": ["Ich kann dir dabei nicht helfen.", "Dabei kann ich Ihnen nicht helfen."],
    "it": ["Non posso aiutarti."],
    "pt": ["Não posso ajudar.", "Não consigo responder."],
    "nl": ["Ik kan je daar niet mee helpen."],
    "ru": ["Я не могу помочь."],
    "zh": ["我不能帮助你。", "我无法回答。", "我不可以提供。"],
    "ja": ["申し訳ありませんが、できません。", "申し訳ございませんが、お答えできません。", "すみませんが、できません。"],
}


def test_every_cue_is_needed_by_an_example() -> None:
    assert set(CUE_EXAMPLES) == {family for family, _cues, _pattern in refusal.PATTERNS}
    for family, cues, pattern in refusal.PATTERNS:
        used = set()
        for example in CUE_EXAMPLES[family]:
            head = refusal._normalise(example)
            assert re.search(pattern, head, re.IGNORECASE), (family, example)
            present = [cue for cue in cues if cue in fold(head)]
            assert len(present) == 1, (family, example, present)
            used.update(present)
        assert used == set(cues), (family, set(cues) - used)


def test_cues_never_hide_a_match() -> None:
    """Every match of a built-in pattern holds one of its cues: on the cases,
    the examples and random texts made of their words, a pattern that matches
    always has a cue in the folded text, and searching only the patterns whose
    cues occur finds what running every pattern finds."""
    check = RefusalCheck()
    gated = [(family, any_of(cues), re.compile(pattern, re.IGNORECASE))
             for family, cues, pattern in refusal.PATTERNS]
    examples = [e for family in CUE_EXAMPLES.values() for e in family]
    texts = [text for text, _expected in CASES] + examples + _random_texts(20_000, seed=11)
    matched: set[str] = set()
    for text in texts:
        head = refusal._normalise(text)
        folded = fold(head)
        for family, cues, pattern in gated:
            if pattern.search(head):
                matched.add(family)
                assert cues.search(folded), (family, text)
        every = next((family for family, pattern in check.patterns if pattern.search(head)), None)
        assert check._search(head) == every, text
    assert matched == {family for family, _cues, _pattern in gated}
