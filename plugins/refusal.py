"""Built-in plugin ``refusal``: did the model decline to answer?

Judges the outputs of llm spans and root spans (``span_kinds`` adds others);
spans without output text are skipped. One Score per judged span:

* ``name`` ``"refusal"``, ``source`` ``"check"``;
* ``value`` 1.0 for a refusal, 0.0 otherwise (the mean is the refusal rate);
* ``label`` ``"refusal"`` or ``"answered"``; ``passed`` is ``not refusal``;
* ``comment`` which pattern family matched (``en:cannot-help``), never the text.

Curly apostrophes are normalised first. A curated pattern set (English, Spanish, French, German, Italian, Portuguese,
Dutch, Chinese, Japanese, Russian) looks at the first ``window_chars``
characters only: refusals come first, and a long answer that later quotes or
discusses a refusal is not one. ``extra_patterns`` (case-insensitive regular
expressions) extends it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from chainsight.framework.model import Score, Span
from chainsight.plugins.span_check import SpanCheckPlugin
from chainsight.plugins.text import any_of, fold, judges_answer, span_answer

NAME: Final = "refusal"

_CANT = r"(?: can(?:no|')?t| cannot| can not| am (?:not able|unable) to|'m (?:not able|unable) to| won'?t(?: be able to)?| will not(?: be able to)?| must decline to| am not (?:allowed|permitted) to|'m not (?:allowed|permitted) to)"
_VERB = r"(?:help|assist|provide|comply|fulfil+|do (?:that|this)|answer|support|share|create|generate|write|produce|give|engage|participate|complete|continue|discuss|offer|process|satisfy|accommodate)"

# (family, cues, pattern). Bounded, linear patterns; all compiled case-insensitive.
# Every match of a pattern holds one of its cues (lower case, looked for in
# text.fold of the answer): most answers hold none, and their patterns need not
# run. Keep them in step when a pattern changes (tests/plugins/test_refusal.py
# checks the two agree on random texts made of the patterns' words).
PATTERNS: Final[tuple[tuple[str, tuple[str, ...], str], ...]] = (
    ("en:cannot-help", ("can", "won", "will not", "am not", "'m not", "unable", "must decline"),
     rf"\bI{_CANT} (?:\w+ ){{0,2}}{_VERB}\b"),
    ("en:sorry-cannot", ("sorry", "apologi"), rf"\b(?:sorry|apologi[sz]e)\b[^.!?\n]{{0,60}}\bI{_CANT}\b"),
    ("en:as-an-ai", ("as a",), r"\bas an? (?:AI|artificial intelligence|language model|AI (?:language )?model|AI assistant)\b[^.!?\n]{0,40}\bI (?:can(?:no|'|’)?t|cannot|do not|don't|am not able|am unable)\b"),
    ("en:policy", ("against", "violat", "allowed", "permitted"), r"\b(?:against|violates?|violation of|not (?:allowed|permitted) (?:by|under)) (?:my|our|the|OpenAI's|Anthropic's)? ?(?:(?:content|usage|safety|use) )?(?:polic(?:y|ies)|guidelines|terms of (?:use|service))\b"),
    ("en:decline", ("decline", "refuse"), r"\bI (?:must|have to|need to|will|'ll|am going to|'m going to) (?:respectfully |politely )?(?:decline|refuse)\b"),
    ("en:not-comfortable", ("not comfortable",), r"\bI'?m not comfortable (?:helping|providing|assisting|writing|creating|with)\b"),
    ("en:unable-request", ("with",), r"\b(?:unable|not able) to (?:help|assist|comply) with (?:that|this|your|the)\b"),
    ("es", ("puedo", "me es posible", "en condiciones de"), r"\b(?:no puedo|no me es posible|no estoy en condiciones de) (?:\w+ ){0,2}(?:ayudar(?:te|le)?|asistir(?:te|le)?|proporcionar|cumplir|hacer eso|responder|ofrecer|generar|crear|dar(?:te|le)?)\b|\blo siento, (?:pero )?no puedo\b"),
    ("fr", ("je ne",), r"\bje ne (?:peux|suis pas en mesure de|suis pas autorisé à) (?:pas )?(?:\w+ ){0,2}(?:aider|vous aider|t'aider|fournir|répondre|faire cela|générer|créer|donner|accéder)\b|\bdésolé,? (?:mais )?je ne peux pas\b"),
    ("de", ("ich kann", "kann ich"), r"\bich kann (?:\w+ ){0,3}nicht (?:\w+ ){0,2}(?:helfen|unterstützen|beantworten|erfüllen|bereitstellen|geben|erstellen|tun|machen)\b|\bes tut mir leid, aber ich kann\b|\bdabei kann ich (?:dir |Ihnen )?nicht helfen\b"),
    ("it", ("non posso",), r"\bnon posso (?:\w+ ){0,2}(?:aiutarti|aiutarla|aiutare|assisterti|fornire|rispondere|soddisfare|fare questo|creare|generare)\b|\bmi dispiace, ma non posso\b"),
    ("pt", ("posso", "consigo"), r"\bnão (?:posso|consigo) (?:\w+ ){0,2}(?:ajudar|ajudá-lo|ajudá-la|auxiliar|fornecer|responder|atender|fazer isso|criar|gerar)\b|\bdesculpe, mas não posso\b"),
    ("nl", ("ik kan",), r"\bik kan (?:je |u )?(?:daar |hier )?niet (?:mee )?(?:helpen|assisteren|beantwoorden|voldoen)\b"),
    ("ru", ("не могу",), r"(?:я не могу|не могу) (?:\w+ ){0,2}(?:помочь|предоставить|ответить|выполнить)"),
    ("zh", ("我不能", "我无法", "我不可以"), r"(?:我不能|我无法|我不可以|抱歉，我(?:不能|无法))(?:帮助|帮你|协助|提供|回答|满足|完成)"),
    ("ja", ("ありません", "ございません", "すみませんが"), r"(?:申し訳(?:ありません|ございません)が|すみませんが)[^。\n]{0,30}(?:できません|お答えできません|お手伝いできません)"),
)

CONFIG_SCHEMA: Final[dict[str, Any]] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "extra_patterns": {
            "type": "array",
            "items": {"type": "string"},
            "default": [],
            "description": "More refusal phrases: case-insensitive regular expressions.",
        },
        "window_chars": {
            "type": "integer",
            "minimum": 20,
            "default": 400,
            "description": "Only the first N characters of an answer are searched.",
        },
        "span_kinds": {
            "type": "array",
            "items": {"type": "string"},
            "default": ["llm"],
            "description": "Span kinds judged besides root spans.",
        },
    },
}


class RefusalCheck:
    name = NAME

    def __init__(
        self,
        extra_patterns: tuple[str, ...] = (),
        window_chars: int = 400,
        span_kinds: tuple[str, ...] = ("llm",),
    ) -> None:
        self._builtins = tuple((family, any_of(cues), re.compile(p, re.IGNORECASE))
                               for family, cues, p in PATTERNS)
        self._any = any_of(cue for _family, cues, _p in PATTERNS for cue in cues)
        extras: list[tuple[str, re.Pattern[str]]] = []
        for i, pattern in enumerate(extra_patterns):
            try:
                extras.append((f"extra[{i}]", re.compile(pattern, re.IGNORECASE)))
            except re.error as exc:
                raise ValueError(f"extra_patterns[{i}] is not a valid regular expression: {exc}") from exc
        self._extras = tuple(extras)  # no cues: they always run
        self.patterns = (*((family, pattern) for family, _cues, pattern in self._builtins), *extras)
        self.window_chars = window_chars
        self.span_kinds = span_kinds
        # The last head searched and its family: a chain's root span usually
        # outputs the answer its llm span just gave.
        self._last: tuple[str, str | None] | None = None

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> RefusalCheck:
        return cls(
            tuple(config.get("extra_patterns", ())),
            int(config.get("window_chars", 400)),
            tuple(config.get("span_kinds", ("llm",))),
        )

    def detect(self, text: str) -> str | None:
        """The family of the first matching pattern, or None."""
        head = text[: self.window_chars]
        last = self._last
        if last is not None and last[0] == head:
            return last[1]
        found = self._search(_normalise(head))
        self._last = (head, found)
        return found

    def _search(self, head: str) -> str | None:
        folded = fold(head)
        if self._any.search(folded) is not None:  # most answers: no cue of any pattern occurs
            for family, cues, pattern in self._builtins:
                if cues.search(folded) is not None and pattern.search(head):
                    return family
        for family, pattern in self._extras:
            if pattern.search(head):
                return family
        return None

    def check_span(self, span: Span) -> list[Score] | None:
        if not judges_answer(span, self.span_kinds):
            return None
        text = span_answer(span).strip()
        if not text:
            return None
        family = self.detect(text)
        if family is None:
            return [Score(NAME, "check", span.trace_id, span.span_id, 0.0, "answered", True,
                          "no refusal pattern")]
        return [Score(NAME, "check", span.trace_id, span.span_id, 1.0, "refusal", False,
                      f"refusal pattern {family}")]


_SPACES = re.compile(r"\s+")


def _normalise(text: str) -> str:
    return _SPACES.sub(" ", text.replace("’", "'"))


def create_plugin() -> SpanCheckPlugin[RefusalCheck]:
    return SpanCheckPlugin(RefusalCheck.from_config, CONFIG_SCHEMA)
