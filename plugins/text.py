"""Text out of whatever a span holds: the shared helper of the quality checks.

Span inputs and outputs are what the chain passed around: strings, LangChain
messages (``.content`` a string or a list of content blocks), documents
(``.page_content``), ``{"content": ...}`` / ``{"output": ...}`` dicts, litellm
responses (``choices[i].message.content``), LangChain ``LLMResult``-like dicts
(``generations``), and lists of any of these (after storage they are their
JSON form, which the same rules read).

* :func:`answer_text` is the final answer: the last message of a message
  list, the first of the preferred answer keys of a dict (``answer``,
  ``output``, ``result``...) so a RAG chain's ``{"answer", "context"}`` output
  is judged by its answer, not its documents.
* :func:`all_text` is every string leaf (for scanners such as pii);
  :func:`strings` lists them.
* :func:`span_answer` is ``answer_text(span.outputs)`` read once for the
  checks of one span.
* :func:`fold` and :func:`any_of` look for the literal cues that let the
  checks skip their regular expressions on most text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Final

MAX_DEPTH: Final = 32
ANSWER_KEYS: Final[tuple[str, ...]] = (
    "answer", "output", "result", "response", "text", "content", "completion",
    "output_text", "final_answer", "page_content",
)


def _is_message(value: Any) -> bool:
    return hasattr(value, "content") and hasattr(value, "type") and not isinstance(value, Mapping)


def _blocks_text(content: Any, depth: int) -> str:
    """A message's content: a string, or content blocks ``{"type": "text", "text": ...}``."""
    if isinstance(content, str):
        return content
    if isinstance(content, list | tuple):
        parts = []
        for block in content:
            if isinstance(block, str):
                parts.append(block)
            elif isinstance(block, Mapping) and isinstance(block.get("text"), str):
                parts.append(block["text"])
        return "\n".join(p for p in parts if p)
    return answer_text(content, depth + 1)


def answer_text(value: Any, _depth: int = 0) -> str:
    """The final answer text in ``value`` ("" when there is none)."""
    if value is None or _depth > MAX_DEPTH:
        return ""
    if isinstance(value, str):
        return value
    if type(value) is dict:  # no message, document or response attributes to look for
        return _mapping_text(value, _depth)
    if isinstance(value, bool | int | float):
        return ""
    if _is_message(value):
        return _blocks_text(value.content, _depth)
    page = getattr(value, "page_content", None)
    if isinstance(page, str):
        return page
    choices = getattr(value, "choices", None)  # litellm ModelResponse
    if choices is not None and not isinstance(value, Mapping):
        return answer_text({"choices": choices}, _depth + 1)
    if isinstance(value, Mapping):
        return _mapping_text(value, _depth)
    if isinstance(value, list | tuple):
        if value and all(_is_message(v) or _looks_like_message(v) for v in value):
            return answer_text(value[-1], _depth + 1)
        return "\n".join(t for t in (answer_text(v, _depth + 1) for v in value) if t)
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        try:
            return answer_text(dump(), _depth + 1)
        except Exception:
            return ""
    return ""


def _mapping_text(value: Mapping[Any, Any], _depth: int) -> str:
    if "choices" in value and isinstance(value["choices"], list | tuple):
        parts = []
        for choice in value["choices"]:
            message = _get(choice, "message") or _get(choice, "delta")
            text = _get(choice, "text")
            parts.append(answer_text(message, _depth + 1) if message is not None else answer_text(text, _depth + 1))
        return "\n".join(p for p in parts if p)
    if "generations" in value:
        return answer_text(_first_generation(value["generations"]), _depth + 1)
    if "messages" in value and isinstance(value["messages"], list | tuple) and value["messages"]:
        return answer_text(value["messages"][-1], _depth + 1)
    if "content" in value and ("type" in value or "role" in value):  # a serialised message
        return _blocks_text(value["content"], _depth)
    for key in ANSWER_KEYS:
        if key in value:
            text = answer_text(value[key], _depth + 1)
            if text:
                return text
    return "\n".join(t for t in (answer_text(v, _depth + 1) for v in value.values()) if t)


def _looks_like_message(value: Any) -> bool:
    return isinstance(value, Mapping) and "content" in value and ("role" in value or "type" in value)


def _get(obj: Any, key: str) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(key)
    return getattr(obj, key, None)


def _first_generation(generations: Any) -> Any:
    """``generations`` is ``[[gen, ...], ...]``; a generation has ``message`` or ``text``."""
    while isinstance(generations, list | tuple) and generations:
        generations = generations[0]
    message = _get(generations, "message")
    return message if message is not None else _get(generations, "text")


def iter_strings(value: Any, _depth: int = 0) -> Iterator[str]:
    """Every string leaf in ``value`` (dict values, list items, message content,
    pydantic fields), depth-first. Mapping keys are not yielded."""
    if value is None or _depth > MAX_DEPTH:
        return
    if isinstance(value, str):
        yield value
    elif isinstance(value, bool | int | float | bytes):
        return
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from iter_strings(v, _depth + 1)
    elif isinstance(value, list | tuple | set | frozenset):
        for v in value:
            yield from iter_strings(v, _depth + 1)
    else:
        fields = getattr(type(value), "model_fields", None)
        if isinstance(fields, Mapping):  # pydantic v2 (messages, documents)
            for name in fields:
                yield from iter_strings(getattr(value, name, None), _depth + 1)


def strings(value: Any) -> list[str]:
    """:func:`iter_strings` as a list, without a generator per container."""
    out: list[str] = []
    _collect(value, out, 0)
    return out


def _collect(value: Any, out: list[str], depth: int) -> None:
    if value is None or depth > MAX_DEPTH:
        return
    kind = type(value)
    items: Any
    if kind is dict:  # exact types first: an ABC isinstance check costs more
        items = value.values()
    elif kind is list or kind is tuple:
        items = value
    elif isinstance(value, str):
        out.append(value)
        return
    elif isinstance(value, bool | int | float | bytes):
        return
    elif isinstance(value, Mapping):
        items = value.values()
    elif isinstance(value, list | tuple | set | frozenset):
        items = value
    else:
        fields = getattr(kind, "model_fields", None)
        if isinstance(fields, Mapping):  # pydantic v2 (messages, documents)
            for name in fields:
                _collect(getattr(value, name, None), out, depth + 1)
        return
    depth += 1
    if depth > MAX_DEPTH:
        return
    for v in items:
        if type(v) is str:  # the common leaf: no call
            out.append(v)
        else:
            _collect(v, out, depth)


def all_text(value: Any) -> str:
    """Every string leaf in ``value`` joined by newlines."""
    return "\n".join(s for s in strings(value) if s)


# The last span whose answer was read, its outputs and their answer text.
# The checks of one span run one after another on the pipeline worker, and
# toxicity, refusal and length all read the same answer. One tuple, replaced
# whole, so threads see a consistent entry (it keeps at most one span alive).
# Keyed by identity: plugins replace the objects a span references instead
# of mutating them (hookspecs.process_span), which gives a new identity.
_last_answer: tuple[Any, Any, str] | None = None


def span_answer(span: Any) -> str:
    """``answer_text(span.outputs)``, reused while the span and its outputs
    object are the same."""
    global _last_answer
    outputs = span.outputs
    last = _last_answer
    if last is not None and last[0] is span and last[1] is outputs:
        return last[2]
    text = answer_text(outputs)
    _last_answer = (span, outputs, text)
    return text


def judges_answer(span: Any, kinds: tuple[str, ...] = ("llm",)) -> bool:
    """Whether a check of answers applies to ``span``: a span of one of ``kinds``
    (llm by default) or a trace's root span."""
    return span.kind in kinds or span.parent_id is None


# ---- literal cues for regular expressions --------------------------------------

# Characters that IGNORECASE equates with "i" but that casefold to something
# else; tests/plugins/test_text.py checks, for every character of the
# refusal patterns and cues, that fold maps what IGNORECASE equates with it
# alike, so no other needs fixing.
_FOLD_FIXES: Final = str.maketrans({"İ": "i", "ı": "i"})


def fold(text: str) -> str:
    """``text`` as the (lower-case) cues of an IGNORECASE pattern are looked
    for in: every character IGNORECASE equates with a cue's folds the same way."""
    return text.lower() if text.isascii() else text.translate(_FOLD_FIXES).casefold()


def any_of(words: Iterable[str]) -> re.Pattern[str]:
    """A pattern that matches where one of ``words`` occurs (none: nowhere).

    For a presence test only: a word that holds another is dropped, and the
    rest form a trie (``b(?:east|ull)``), which the regex engine rejects at
    most positions after one character, unlike a flat alternation.
    """
    unique = set(words)
    kept = sorted(w for w in unique if not any(o != w and o in w for o in unique))
    return re.compile(_trie(kept) if kept else "(?!)")


def _trie(words: list[str]) -> str:
    """Sorted words, none a prefix of another, as one alternation."""
    if len(words) == 1:
        return re.escape(words[0])
    groups: dict[str, list[str]] = {}
    for word in words:
        groups.setdefault(word[0], []).append(word[1:])
    alternatives = [re.escape(first) + _trie(rest) for first, rest in groups.items()]
    return alternatives[0] if len(alternatives) == 1 else f"(?:{'|'.join(alternatives)})"
