"""The toxicity check: labelled cases, categories not words, pluggable scorer."""

from __future__ import annotations

import sys
import types

import pytest

from chainsight.framework.model import Span
from chainsight.plugins.toxicity import LexiconScorer, ToxicityCheck, ToxicityResult, load_scorer
from tests.plugins.cases import precision_recall
from tests.plugins.cases.toxicity_cases import CASES


def answer(outputs: object, kind: str = "llm") -> Span:
    span = Span("model", kind, parent_id="p" * 16)
    span.outputs, span.status = outputs, "ok"
    return span


def test_labelled_cases_precision_recall() -> None:
    assert len(CASES) >= 20
    check = ToxicityCheck()
    pairs, misses = [], []
    for text, expected in CASES:
        (score,) = check.check_span(answer(text)) or []
        assert score.value is not None and 0.0 <= score.value <= 1.0
        predicted = not score.passed
        pairs.append((expected, predicted))
        if predicted != expected:
            misses.append(f"{text!r}: expected {expected}, p={score.value:.2f}")
    p, r, tp, fp, fn = precision_recall(pairs)
    print(f"\ntoxicity: {len(CASES)} cases, precision {p:.2f}, recall {r:.2f} (tp={tp} fp={fp} fn={fn})")
    for miss in misses:
        print("  miss:", miss)
    assert p >= 0.9 and r >= 0.9


def test_label_and_comment_give_categories_never_words() -> None:
    (score,) = ToxicityCheck().check_span(answer("I will kill you, you idiot")) or []
    assert score.passed is False
    assert score.label == "insult,threat"
    assert "idiot" not in (score.comment or "") and "kill" not in (score.comment or "")
    (score,) = ToxicityCheck().check_span(answer("Have a nice day")) or []
    assert (score.value, score.label, score.passed) == (0.0, "clean", True)


def test_negation_lowers_the_score() -> None:
    scorer = LexiconScorer()
    assert scorer.score("you are not stupid").probability < scorer.score("you are stupid").probability


def test_inputs_only_when_asked() -> None:
    span = answer("Sure, here it is.")
    span.inputs = {"messages": [{"role": "user", "content": "you idiot moron"}]}
    (score,) = ToxicityCheck().check_span(span) or []
    assert score.passed
    (score,) = ToxicityCheck(judge_inputs=True).check_span(span) or []
    assert not score.passed


class ConstantScorer:
    def __init__(self, value: float = 0.99) -> None:
        self.value = value

    def score(self, text: str) -> ToxicityResult:
        return ToxicityResult(self.value, {"model": self.value})


def test_scorer_is_pluggable_by_dotted_path(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("fake_tox_model")
    module.ConstantScorer = ConstantScorer  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fake_tox_model", module)
    check = ToxicityCheck.from_config({"scorer": "fake_tox_model:ConstantScorer",
                                       "scorer_options": {"value": 0.7}, "threshold": 0.5})
    (score,) = check.check_span(answer("perfectly polite")) or []
    assert (score.value, score.label, score.passed) == (0.7, "model", False)
    assert isinstance(load_scorer("fake_tox_model.ConstantScorer"), ConstantScorer)


def test_bad_scorer_paths_fail_clearly() -> None:
    with pytest.raises(ValueError, match="cannot load scorer"):
        load_scorer("no_such_module_xyz:Scorer")
    with pytest.raises(TypeError, match="no score"):
        load_scorer("collections:OrderedDict")


def test_long_adversarial_input_is_fast() -> None:
    import time

    scorer = LexiconScorer()
    for text in ("you " * 20_000, "f*" * 20_000, "all women are " * 5_000, "i will " * 10_000):
        started = time.perf_counter()
        scorer.score(text)
        assert time.perf_counter() - started < 1.0


def test_normalise_matches_the_plain_rewrites() -> None:
    """_normalise rewrites only the words leetspeak or masks change; the result
    is what translating every word and unmasking every token gives."""
    import random
    import re

    from chainsight.plugins import toxicity

    every_word = re.compile(r"\b\w*[a-z]\w*\b")
    every_mask = re.compile(r"[a-z]*[*#]+[a-z*#]*")
    by_length = LexiconScorer()._by_length

    def reference(text: str) -> str:
        lowered = text.lower().replace("’", "'")
        lowered = every_word.sub(lambda m: m.group(0).translate(toxicity._LEET), lowered)
        return every_mask.sub(lambda m: toxicity._unmask(m.group(0), by_length), lowered)

    rnd = random.Random(7)
    alphabet = "abfkcuXYZ0123456789@$!*#_ '’.-éÜß٣\n"
    texts = ["y0u 1d10t", "f*ck th1s sh*t", "3.11 and 4 items", "l33t_c0de"]
    texts += ["".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 24))) for _ in range(20000)]
    for text in texts:
        assert toxicity._normalise(text, by_length) == reference(text), text


def test_clean_fast_path_agrees_with_full_scoring() -> None:
    # _score returns "clean" without weighing when no term and no rule
    # cue occurs; the full weighing must agree on every text.
    import random

    from chainsight.plugins import toxicity

    words = ["you", "are", "an", "idiot", "i", "will", "kill", "u", "not", "stupid", "m0r0n", "f*ck", "women",
             "vermin", "shut", "up", "go", "to", "hell", "hello", "shell", "kys", "die", "should", "watch", "your",
             "back", "regret", "trouble", "shoot", "process", "what", "a", "loser", "YOU", "IDIOT", "1d10t", "darn",
             "item", "123", "thing", "the", "weather", "is", "sunny", "'", "’", ",", "."]
    rnd = random.Random(5)
    texts = [text for text, _ in CASES] + [
        " ".join(rnd.choice(words) for _ in range(rnd.randint(1, 12))) for _ in range(5000)
    ]
    for scorer in (LexiconScorer(), LexiconScorer({"darn": 0.3, "två ord": 0.2})):
        toxic = 0
        for text in texts:
            full = scorer._weigh(toxicity._normalise(text, scorer._by_length))
            assert scorer._score(text) == full, text
            toxic += full.probability > 0
        assert 100 < toxic < len(texts) - 100  # both paths are exercised


def _rule_examples() -> list[list[str]]:
    """Per rule of toxicity.RULES, texts it matches holding exactly one of its
    cues, one per cue (normalised text: lower case)."""
    return [
        [f"i will {verb} you" for verb in ("kill", "murder", "hurt", "beat", "stab", "shoot", "rape", "destroy",
                                           "find", "hunt")],
        [f"you {modal} die" for modal in ("should", "deserve to", "ought to", "better", "will", "are going to")]
        + ["kys", "just kill yourself", "go die"],
        ["watch your back", "you'll regret this", "i know where you live"],
        [f"immigrants are {noun}" for noun in ("animals", "vermin", "subhuman", "parasites", "trash", "garbage",
                                               "scum", "inferior", "disgusting", "a disease", "rats",
                                               "cockroaches", "criminals", "terrorists")],
        [f"immigrants {modal} die" for modal in ("should", "must", "need to", "deserve to")],
        ["shut up", "shut the fuck up", "nobody likes you", "you make me sick", "go to hell", "screw you",
         "piss off", "get lost you"],
    ]


def test_every_rule_cue_is_needed_by_an_example() -> None:
    from chainsight.plugins.toxicity import RULES

    examples = _rule_examples()
    assert len(examples) == len(RULES)
    for (category, _weight, cues, pattern), texts in zip(RULES, examples, strict=True):
        used = set()
        for text in texts:
            assert pattern.search(text), (category, text)
            present = [cue for cue in cues if cue in text]
            assert len(present) == 1, (category, text, present)
            used.update(present)
        assert used == set(cues), (category, set(cues) - used)


def test_rule_cues_never_hide_a_match() -> None:
    """Every match of a rule holds one of its cues, on the cases, the examples
    and random texts made of the rules' own words."""
    import random
    import re

    from chainsight.plugins import toxicity
    from chainsight.plugins.text import any_of

    by_length = LexiconScorer()._by_length
    examples = [text for texts in _rule_examples() for text in texts]
    words = sorted({w for text in examples for w in text.split()}
                   | {w for *_rest, pattern in toxicity.RULES for w in re.findall(r"[a-z']+", pattern.pattern)})
    rnd = random.Random(9)
    texts = [text for text, _ in CASES] + examples + [
        " ".join(rnd.choice(words) for _ in range(rnd.randint(1, 8))) for _ in range(20_000)
    ]
    rules = [(category, any_of(cues), pattern) for category, _weight, cues, pattern in toxicity.RULES]
    matched = 0
    for text in texts:
        norm = toxicity._normalise(text, by_length)
        for category, cues, pattern in rules:
            if pattern.search(norm):
                matched += 1
                assert cues.search(norm), (category, text)
    assert matched > 500  # the texts do reach the rules
