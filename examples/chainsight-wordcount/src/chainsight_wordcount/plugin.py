"""The ``wordcount`` plugin: a check, an exporter and a CLI command.

* **check** (``check_span``): counts the words of each answer (llm spans and
  each trace's root span) and scores it ``ok``, ``too_short`` or ``too_long``
  against ``min_words`` / ``max_words``;
* **exporter** (``spans_finished`` + ``shutdown``): appends one JSON line per
  stored span (ids, name, timings, tokens; no content) to ``export_path``;
* **CLI command** (``register_commands``): ``chainsight wordcount`` lists the
  latest scores from the store, through ``chainsight.framework.commands``.

Configured in plugins.toml::

    [plugins.wordcount]
    min_words = 1
    max_words = 150
    span_kinds = ["llm"]
    export_path = "wordcount.jsonl"      # or { env = "WORDCOUNT_EXPORT" }

Each observer gets its own :class:`WordCount` from :func:`create_plugin`.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from chainsight import Score, Span, hookimpl
from chainsight.framework.commands import (
    Column,
    open_store,
    parse_time,
    print_json,
    print_table,
    short_id,
)

if TYPE_CHECKING:
    from chainsight.framework.extension import CommandRegistry

NAME = "wordcount"

CONFIG_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "min_words": {"type": "integer", "minimum": 0, "default": 1,
                      "description": "Answers with fewer words fail."},
        "max_words": {"type": "integer", "minimum": 1, "default": 200,
                      "description": "Answers with more words fail."},
        "span_kinds": {"type": "array", "items": {"type": "string"}, "default": ["llm"],
                       "description": "Span kinds judged, besides each trace's root span."},
        "export_path": {"type": "string", "minLength": 1,
                        "description": "Append one JSON line per stored span to this file."},
    },
}

_WORD = re.compile(r"\w+(?:['’-]\w+)*")


def answer_text(outputs: Any) -> str:
    """The text of an answer: a string, a chat message (a live LangChain
    ``AIMessage``) or a message's dict form (as stored and recorded)."""
    if isinstance(outputs, str):
        return outputs
    content = outputs.get("content") if isinstance(outputs, Mapping) else getattr(outputs, "content", None)
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content blocks: keep the text ones
        return " ".join(block.get("text", "") if isinstance(block, Mapping) else str(block)
                        for block in content)
    return ""


def count_words(text: str) -> int:
    return len(_WORD.findall(text))


def export_record(span: Span) -> dict[str, Any]:
    """What the exporter writes for a span: no inputs or outputs."""
    return {
        "trace_id": span.trace_id, "span_id": span.span_id, "parent_id": span.parent_id,
        "name": span.name, "kind": span.kind, "status": span.status,
        "start_ns": span.start_ns, "end_ns": span.end_ns, "latency_s": span.latency_s,
        "model": span.model, "input_tokens": span.input_tokens, "output_tokens": span.output_tokens,
    }


class WordCount:
    """One per observer: its settings and its export file are its own."""

    CONFIG_SCHEMA = CONFIG_SCHEMA

    def __init__(self) -> None:
        self.min_words = 1
        self.max_words = 200
        self.span_kinds: tuple[str, ...] = ("llm",)
        self.export: IO[str] | None = None

    # ---- start-up --------------------------------------------------------------
    @hookimpl
    def configure(self, config: Mapping[str, Any]) -> None:
        # Validated against CONFIG_SCHEMA, defaults applied, { env = ... } resolved.
        self.min_words = config["min_words"]
        self.max_words = config["max_words"]
        if self.min_words > self.max_words:  # what a schema cannot say; raising disables the plugin
            raise ValueError(f"min_words ({self.min_words}) is more than max_words ({self.max_words})")
        self.span_kinds = tuple(config["span_kinds"])
        if "export_path" in config:
            path = Path(config["export_path"]).expanduser()
            self.export = path.open("a", encoding="utf-8")

    @hookimpl
    def register_commands(self, cli: CommandRegistry) -> None:
        cli.add("wordcount", "word counts of the latest answers (the wordcount check's scores)",
                _command_arguments, _command)

    # ---- the check -------------------------------------------------------------
    @hookimpl
    def check_span(self, span: Span) -> list[Score] | None:
        if span.status == "error" or span.outputs is None:
            return None
        if span.kind not in self.span_kinds and span.parent_id is not None:
            return None
        words = count_words(answer_text(span.outputs))
        label = ("too_short" if words < self.min_words
                 else "too_long" if words > self.max_words else "ok")
        return [Score(NAME, "check", span.trace_id, span.span_id, value=float(words), label=label,
                      passed=label == "ok",
                      comment=f"{words} words; allowed {self.min_words} to {self.max_words}")]

    # ---- the exporter ------------------------------------------------------------
    @hookimpl
    def spans_finished(self, spans: Sequence[Span]) -> None:
        # The worker thread, after each batch was stored: a local file is quick.
        if self.export is None:
            return
        for span in spans:
            self.export.write(json.dumps(export_record(span), default=str) + "\n")
        self.export.flush()

    @hookimpl
    def shutdown(self, timeout: float) -> None:
        # Closing a local file takes no time; a network exporter would send
        # what it still holds here, giving up after `timeout` seconds.
        if self.export is not None:
            self.export.close()
            self.export = None


def create_plugin() -> WordCount:
    """Called by Chainsight once per observer (and per ``chainsight`` run)."""
    return WordCount()


# ---- the command ---------------------------------------------------------------------


def _command_arguments(parser: argparse.ArgumentParser) -> None:
    # --db URL and --json are added by chainsight.
    parser.add_argument("--since", default="7d",
                        help="scores newer than this: 2h, 7d, or an ISO date (default 7d)")
    parser.add_argument("--limit", type=int, default=20, help="how many of the latest scores (default 20)")
    parser.add_argument("--failed", action="store_true", help="only answers outside the bounds")


COLUMNS = (Column("TRACE"), Column("SPAN"), Column("WORDS", align="right"), Column("LABEL"))


def _command(args: argparse.Namespace) -> int:
    since_ns = parse_time(args.since)  # a CommandError, printed by chainsight, if it is not a time
    with open_store(args.db) as store:  # the query API; never creates a store
        scores = store.list_scores(name=NAME, source="check", since_ns=since_ns, limit=args.limit)
    if args.failed:
        scores = [s for s in scores if s.passed is False]
    if args.json:
        print_json([{"trace_id": s.trace_id, "span_id": s.span_id, "words": int(s.value or 0),
                     "label": s.label, "passed": s.passed} for s in scores])
        return 0
    print_table(COLUMNS, [[short_id(s.trace_id), short_id(s.span_id), int(s.value or 0), s.label]
                          for s in scores])
    failed = sum(1 for s in scores if s.passed is False)
    print(f"{len(scores)} answers, {failed} outside the bounds")
    return 0
