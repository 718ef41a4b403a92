"""Built-in plugin ``length``: answers that are too short or too long.

Judges the output text of llm spans and root spans (``span_kinds`` adds
others); spans that ended in error or have no output at all are skipped (an
empty string output is judged: it is the shortest answer there is), and so
is a model reply that only calls tools (no text, ``tool_calls`` present): it
is a step towards an answer, not one. One Score per judged span:

* ``name`` ``"length"``, ``source`` ``"check"``;
* ``value`` the answer's length in characters (not 0..1: a length is a
  measurement, and its distribution is what a dashboard wants);
* ``label`` ``"ok"``, ``"too_short"`` or ``"too_long"``; ``passed`` is ``label == "ok"``;
* ``comment`` the characters and tokens against the bounds that applied.

Tokens are the span's ``output_tokens`` when the model reported them, else an
estimate (characters / 4, marked "~"). Bounds: the top-level ``min_chars``,
``max_chars``, ``min_tokens``, ``max_tokens``; a ``rules`` entry matching the
span by ``span`` (a name glob) and/or ``tag`` overrides them (the first
matching rule wins, key by key).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from chainsight.framework.model import Score, Span
from chainsight.plugins.span_check import SpanCheckPlugin
from chainsight.plugins.text import judges_answer, span_answer

NAME: Final = "length"
BOUNDS: Final[tuple[str, ...]] = ("min_chars", "max_chars", "min_tokens", "max_tokens")

_BOUND_PROPS: Final[dict[str, Any]] = {
    key: {"type": "integer", "minimum": 0, "description": f"{key.replace('_', ' ')} of an answer"}
    for key in BOUNDS
}

CONFIG_SCHEMA: Final[dict[str, Any]] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        **{k: dict(v) for k, v in _BOUND_PROPS.items()},
        "min_chars": {**_BOUND_PROPS["min_chars"], "default": 1},
        "max_chars": {**_BOUND_PROPS["max_chars"], "default": 20000},
        "rules": {
            "type": "array",
            "default": [],
            "description": "Bounds for spans matching a name glob and/or a tag; the first match wins.",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "anyOf": [{"required": ["span"]}, {"required": ["tag"]}],
                "properties": {
                    "span": {"type": "string", "description": "Span name glob (fnmatch)."},
                    "tag": {"type": "string", "description": "A tag the span carries."},
                    **_BOUND_PROPS,
                },
            },
        },
        "span_kinds": {
            "type": "array", "items": {"type": "string"}, "default": ["llm"],
            "description": "Span kinds judged besides root spans.",
        },
    },
}


@dataclass(frozen=True, slots=True)
class Bounds:
    min_chars: int | None = None
    max_chars: int | None = None
    min_tokens: int | None = None
    max_tokens: int | None = None

    def merged(self, rule: Mapping[str, Any]) -> Bounds:
        return Bounds(**{k: rule.get(k, getattr(self, k)) for k in BOUNDS})


class LengthCheck:
    name = NAME

    def __init__(
        self,
        defaults: Bounds = Bounds(min_chars=1, max_chars=20000),
        rules: tuple[Mapping[str, Any], ...] = (),
        span_kinds: tuple[str, ...] = ("llm",),
    ) -> None:
        self.defaults = defaults
        self.rules = rules
        self.span_kinds = span_kinds

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> LengthCheck:
        defaults = Bounds(**{k: config.get(k) for k in BOUNDS})
        if "min_chars" not in config and "max_chars" not in config:
            defaults = Bounds(1, 20000, defaults.min_tokens, defaults.max_tokens)
        return cls(
            defaults,
            tuple(dict(r) for r in config.get("rules", ())),
            tuple(config.get("span_kinds", ("llm",))),
        )

    def bounds_for(self, span: Span) -> Bounds:
        tags = span.tags or ()
        for rule in self.rules:
            glob, tag = rule.get("span"), rule.get("tag")
            if glob is not None and not fnmatch.fnmatchcase(span.name, glob):
                continue
            if tag is not None and tag not in tags:
                continue
            return self.defaults.merged(rule)
        return self.defaults

    def check_span(self, span: Span) -> list[Score] | None:
        if not judges_answer(span, self.span_kinds) or span.status == "error" or span.outputs is None:
            return None
        text = span_answer(span).strip()
        if not text and calls_tools(span.outputs):
            return None
        chars = len(text)
        estimated = span.output_tokens is None
        tokens = (chars + 3) // 4 if estimated else int(span.output_tokens or 0)
        b = self.bounds_for(span) if self.rules else self.defaults
        short: list[str] = []
        if b.min_chars is not None and chars < b.min_chars:
            short.append(f"{chars} chars < min {b.min_chars}")
        if b.min_tokens is not None and tokens < b.min_tokens:
            short.append(f"{tokens} tokens < min {b.min_tokens}")
        long: list[str] = []
        if b.max_chars is not None and chars > b.max_chars:
            long.append(f"{chars} chars > max {b.max_chars}")
        if b.max_tokens is not None and tokens > b.max_tokens:
            long.append(f"{tokens} tokens > max {b.max_tokens}")
        problems = short + long
        label = "too_short" if short else "too_long" if long else "ok"
        token_text = f"{'~' if estimated else ''}{tokens} tokens"
        comment = "; ".join(problems) if problems else f"{chars} chars, {token_text} within bounds"
        if problems:
            comment += f" ({chars} chars, {token_text})"
        return [Score(NAME, "check", span.trace_id, span.span_id, float(chars), label,
                      label == "ok", comment)]


def calls_tools(reply: Any, _depth: int = 0) -> bool:
    """Whether a model reply asks for tool calls: a LangChain ``AIMessage``, a
    litellm message or their dict forms (``tool_calls``, OpenAI's older
    ``function_call``); for a list of messages, its last one."""
    if reply is None or isinstance(reply, str | bytes) or _depth > 3:
        return False
    if isinstance(reply, list | tuple):
        return bool(reply) and calls_tools(reply[-1], _depth + 1)
    get = reply.get if isinstance(reply, Mapping) else lambda key: getattr(reply, key, None)
    if get("tool_calls") or get("function_call"):
        return True
    nested = get("kwargs") or get("additional_kwargs")  # serialised / raw OpenAI forms
    return isinstance(nested, Mapping) and calls_tools(nested, _depth + 1)


def create_plugin() -> SpanCheckPlugin[LengthCheck]:
    return SpanCheckPlugin(LengthCheck.from_config, CONFIG_SCHEMA)
