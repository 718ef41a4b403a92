"""The shared text helpers: the fast list walk agrees with the generator, the
per-span answer memo never serves a stale answer, and fold and any_of look for
cues the way the regex engine would."""

from __future__ import annotations

import random
from typing import Any

from langchain_core.documents import Document
from langchain_core.messages import AIMessage, HumanMessage

from chainsight.framework.model import Span
from chainsight.plugins.text import (
    MAX_DEPTH,
    all_text,
    answer_text,
    any_of,
    fold,
    iter_strings,
    span_answer,
    strings,
)


class _Mapping(dict[str, Any]):
    """A dict subclass: not the exact-type fast path."""


def _value(rng: random.Random, depth: int = 0) -> Any:
    r = rng.random()
    if depth > 4 or r < 0.3:
        return rng.choice(["a", "", "text with words", "ſ"])
    if r < 0.4:
        return rng.choice([None, 1, 2.5, True, b"bytes", [], {}, ()])
    if r < 0.55:
        return {str(i): _value(rng, depth + 1) for i in range(rng.randint(0, 3))}
    if r < 0.6:
        return _Mapping(k=_value(rng, depth + 1))
    if r < 0.72:
        return [_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    if r < 0.78:
        return tuple(_value(rng, depth + 1) for _ in range(rng.randint(0, 3)))
    if r < 0.8:
        return frozenset({"f"})
    if r < 0.88:
        return HumanMessage(content=str(rng.random()))
    if r < 0.94:
        return AIMessage(content=[{"type": "text", "text": "t"}],
                         tool_calls=[{"name": "n", "args": {"q": "v"}, "id": "c"}])
    return Document(page_content="doc", metadata={"source": "s"})


def _nested(depth: int) -> Any:
    value: Any = "leaf"
    for i in range(depth):
        value = [value, f"list{i}"] if i % 2 else {"k": value, "j": f"dict{i}"}
    return value


def test_strings_matches_iter_strings() -> None:
    rng = random.Random(7)
    values = [_value(rng) for _ in range(500)]
    values += [_nested(MAX_DEPTH - 1), _nested(MAX_DEPTH), _nested(MAX_DEPTH + 1), _nested(MAX_DEPTH + 5)]
    values += ["s", None, 3, {"a": ("b", {"c": ["d"]})}]
    for value in values:
        assert strings(value) == list(iter_strings(value))
        assert all_text(value) == "\n".join(s for s in iter_strings(value) if s)


def test_span_answer_follows_the_span_and_its_outputs() -> None:
    a, b = Span("a", "llm"), Span("b", "llm")
    a.outputs, b.outputs = {"text": "first"}, {"text": "second"}
    assert span_answer(a) == "first" and span_answer(a) == "first"
    assert span_answer(b) == "second"
    a.outputs = {"text": "replaced"}  # a new outputs object is read again
    assert span_answer(a) == "replaced" == answer_text(a.outputs)
    a.outputs = None
    assert span_answer(a) == ""


def test_fold_sees_every_ignorecase_spelling_of_the_pattern_characters() -> None:
    # The cues of an IGNORECASE pattern are looked for in fold(text): every
    # character IGNORECASE equates with a pattern (or cue) character must fold
    # the same way (the dotless and dotted i are the exceptions fold fixes).
    import re
    import sys

    from chainsight.plugins.refusal import PATTERNS

    everything = "".join(map(chr, range(sys.maxunicode + 1)))
    chars = {c for _family, cues, pattern in PATTERNS for c in pattern + "".join(cues)}
    for char in chars:
        for same in re.findall(re.escape(char), everything, re.IGNORECASE):
            assert fold(same) == fold(char), (char, same)


def test_any_of_matches_where_a_flat_alternation_does() -> None:
    import re

    from chainsight.plugins.toxicity import INSULTS, PROFANITY

    words = [*INSULTS, *PROFANITY, "a.b", "x*", "(", "hell", "hello", "ab", "abc", "b"]
    flat = re.compile("|".join(map(re.escape, words)))
    texts = ["", "hello there", "shell", "a.b", "axb", "x*y", "(", "nothing", "idio", "idiots", "AB", "cab"]
    for text in texts + [w[1:] for w in words] + words:
        assert (any_of(words).search(text) is None) == (flat.search(text) is None), text
    assert any_of([]).search("anything") is None
    assert any_of([""]).search("") is not None
