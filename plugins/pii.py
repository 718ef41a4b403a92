"""Built-in plugin ``pii``: personal data and secrets in what a model saw or said.

Judges llm spans and root spans (``span_kinds`` adds others), one Score per
judged span, on its inputs and outputs:

* ``name`` ``"pii"``, ``source`` ``"check"``;
* ``value`` 1.0 when anything was found, else 0.0 (so the mean of ``value``
  is the PII rate);
* ``label`` the kinds found, sorted and comma-separated (``"email,phone"``),
  or ``"clean"``;
* ``passed`` True when nothing was found;
* ``comment`` the counts per kind, and how many were already masked by
  redaction; never the values.

Redaction runs first (``process_span``), so the text this check reads is
already masked. Redaction records what it masked on the span
(``attributes["chainsight.redacted"]``, kind -> count); this check adds those
counts to what it finds in the remaining text (kinds redaction is switched off
for). Redaction counts cover the whole span (inputs, outputs, attributes,
metadata, error). Detectors are shared with redaction: :mod:`chainsight.plugins.detectors`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any, Final

from chainsight.framework.model import REDACTED, Score, Span
from chainsight.plugins import detectors
from chainsight.plugins.span_check import SpanCheckPlugin
from chainsight.plugins.text import judges_answer, strings

NAME: Final = "pii"

CONFIG_SCHEMA: Final[dict[str, Any]] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "kinds": {
            "type": "array",
            "items": {"enum": list(detectors.SWITCHES)},
            "uniqueItems": True,
            "default": list(detectors.SWITCHES),
            "description": "What counts as PII: PII kinds, and 'secrets' for keys and tokens.",
        },
        "span_kinds": {
            "type": "array",
            "items": {"type": "string"},
            "default": ["llm"],
            "description": "Span kinds judged besides root spans.",
        },
    },
}


class PiiCheck:
    name = NAME

    def __init__(
        self,
        kinds: tuple[str, ...] = detectors.SWITCHES,
        span_kinds: tuple[str, ...] = ("llm",),
    ) -> None:
        self.detectors = detectors.detectors_for(kinds)
        self.scanner = detectors.Scanner(self.detectors)
        self.counted = frozenset(d.kind for d in self.detectors)
        self.span_kinds = span_kinds

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> PiiCheck:
        return cls(
            tuple(config.get("kinds", detectors.SWITCHES)),
            tuple(config.get("span_kinds", ("llm",))),
        )

    def check_span(self, span: Span) -> list[Score] | None:
        if not judges_answer(span, self.span_kinds):
            return None
        if span.inputs is None and span.outputs is None:
            return None
        find = self.scanner.find
        found: dict[str, int] = {}
        for value in (span.inputs, span.outputs):
            for text in strings(value):
                for finding in find(text):
                    found[finding.kind] = found.get(finding.kind, 0) + 1
        recorded = (span.attributes or {}).get(REDACTED)
        if not found and not isinstance(recorded, Mapping):  # the common case
            return [Score(NAME, "check", span.trace_id, span.span_id, 0.0, "clean", True,
                          "no PII or secrets found")]
        return [self._score(span, Counter(found), recorded)]

    def _score(self, span: Span, found: Counter[str], recorded: Any) -> Score:
        masked: Counter[str] = Counter()
        if isinstance(recorded, Mapping):
            for kind, n in recorded.items():
                if kind in self.counted and isinstance(n, int):
                    masked[kind] += n
        total = found + masked
        if not total:
            return Score(NAME, "check", span.trace_id, span.span_id, 0.0, "clean", True,
                         "no PII or secrets found")
        parts = ", ".join(f"{kind} x{n}" for kind, n in sorted(total.items()))
        comment = f"found {parts}"
        if masked:
            comment += f" ({sum(masked.values())} masked by redaction)"
        return Score(NAME, "check", span.trace_id, span.span_id, 1.0,
                     ",".join(sorted(total)), False, comment)


def create_plugin() -> SpanCheckPlugin[PiiCheck]:
    return SpanCheckPlugin(PiiCheck.from_config, CONFIG_SCHEMA)
