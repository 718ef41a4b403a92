"""Built-in plugin 'token_estimate': token counts for models that report none.

Many models (local ones, fakes, some streaming APIs) report no usage. For an
``llm`` span with neither input nor output tokens this plugin fills both with
a tokenizer-free estimate and sets ``tokens_estimated = True``:

* text tokens ~ ``ceil(characters / 4)`` (the usual rule of thumb for English
  with BPE tokenizers), at least 1 per non-empty message;
* output tokens of a streamed call = the number of streamed chunks when there
  were any (providers stream about one token per chunk), which keeps TPOT
  meaningful.

A call that ended in error before producing anything (no output, no
streamed chunk) is left without tokens: it may never have reached the model,
and an estimate of its prompt would be priced as if it had been billed.

It runs on the pipeline worker, on the raw objects the LangChain adapter kept
(messages, strings, dicts, lists), so the caller's thread never counts
anything. ``tryfirst`` so that checks and sinks see the counts; pricing must
run after it for estimated spans to be priced.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from chainsight.framework.hookspecs import hookimpl
from chainsight.framework.model import Span

CHARS_PER_TOKEN = 4
_MAX_DEPTH = 6


def estimate_tokens(text: str) -> int:
    """Tokens in ``text`` by the characters/4 rule (0 for empty text)."""
    if not text:
        return 0
    return max(1, -(-len(text) // CHARS_PER_TOKEN))


def count(value: Any, depth: int = 0) -> int:
    """Estimated tokens of a message, string, content-block list or nesting of them."""
    if value is None or depth > _MAX_DEPTH:
        return 0
    if isinstance(value, str):
        return estimate_tokens(value)
    content = getattr(value, "content", None)  # BaseMessage and friends
    if content is not None:
        total = count(content, depth + 1)
        for call in getattr(value, "tool_calls", None) or ():
            total += count(call.get("name"), depth + 1) + count(str(call.get("args")), depth + 1)
        return total
    if isinstance(value, Mapping):
        if "content" in value:  # serialised message
            return count(value["content"], depth + 1)
        if "text" in value:  # content block
            return count(value["text"], depth + 1)
        return sum(count(v, depth + 1) for v in value.values())
    if isinstance(value, list | tuple):
        return sum(count(v, depth + 1) for v in value)
    return 0


@hookimpl(tryfirst=True)
def process_span(span: Span) -> None:
    if span.kind != "llm" or span.input_tokens is not None or span.output_tokens is not None:
        return
    if span.status == "error" and span.outputs is None and span.chunk_count <= 0:
        return  # failed before any output: nothing says tokens were counted or billed
    input_tokens = count(span.inputs)
    output_tokens = span.chunk_count if span.chunk_count > 0 else count(span.outputs)
    if not input_tokens and not output_tokens:
        return
    span.input_tokens = input_tokens
    span.output_tokens = output_tokens
    span.tokens_estimated = True
