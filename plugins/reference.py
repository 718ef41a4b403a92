"""Built-in evaluator ``reference``: an output against the item's expected output.

Implements the ``evaluate`` hook; one Score (``source`` ``"eval"``, value in
0..1) per metric that applies to the item:

* ``exact_match``: the output text equals the expected text (outer
  whitespace ignored);
* ``normalized_match``: equal after normalising both (lower case, no
  punctuation, no articles a/an/the, whitespace collapsed: SQuAD's rule);
* ``contains``: the normalised expected text occurs in the normalised output;
* ``token_f1``: F1 of the normalised tokens (SQuAD);
* ``rouge_l``: ROUGE-L F1 (longest common subsequence of the normalised tokens);
* ``numeric``: the first number in the output is within ``rel_tol`` /
  ``abs_tol`` of the expected number (when the expected output is a number;
  the item's metadata may set ``abs_tol``/``rel_tol``);
* ``json_match``: the share of the expected keys (or ``json_keys``) whose
  values the output has (when the expected output is an object; an output
  that is a JSON string is parsed first);
* ``regex``: the output matches the item's ``metadata.regex`` (search).

The text metrics apply when the expected output is text (or a number). An
item without an expected output gets only ``regex`` (if it has one). A target
that failed scores 0 on every metric that applies, with the error as comment.
"""

from __future__ import annotations

import json
import math
import re
import string
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, Final

from chainsight.framework import hookimpl
from chainsight.framework.model import EvalCase, Score, as_text

TEXT_METRICS: Final = ("exact_match", "normalized_match", "contains", "token_f1", "rouge_l")
METRICS: Final = (*TEXT_METRICS, "numeric", "json_match", "regex")

CONFIG_SCHEMA: Final[dict[str, Any]] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "metrics": {
            "type": "array", "items": {"enum": list(METRICS)}, "default": list(METRICS),
            "description": "The metrics to compute where they apply.",
        },
        "abs_tol": {"type": "number", "minimum": 0, "default": 1e-6,
                    "description": "numeric: absolute tolerance."},
        "rel_tol": {"type": "number", "minimum": 0, "default": 0.0,
                    "description": "numeric: relative tolerance."},
        "json_keys": {"type": "array", "items": {"type": "string"},
                      "description": "json_match: compare only these keys (default: every expected key)."},
        "pass_threshold": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.5,
                           "description": "token_f1, rouge_l, json_match: passed when value >= this."},
    },
}

_PUNCT: Final = re.compile(f"[{re.escape(string.punctuation)}]")
_ARTICLES: Final = re.compile(r"\b(a|an|the)\b")
_NUMBER: Final = re.compile(r"[-+]?(?:\d[\d,]*\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def normalize(text: str) -> str:
    """Lower case, punctuation and articles removed, whitespace collapsed."""
    return " ".join(_ARTICLES.sub(" ", _PUNCT.sub(" ", text.lower())).split())


def token_f1(output: str, expected: str) -> float:
    out, exp = normalize(output).split(), normalize(expected).split()
    if not out or not exp:
        return float(out == exp)
    common = sum((Counter(out) & Counter(exp)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(out), common / len(exp)
    return 2 * precision * recall / (precision + recall)


def _lcs(a: Sequence[str], b: Sequence[str]) -> int:
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def rouge_l(output: str, expected: str) -> float:
    out, exp = normalize(output).split(), normalize(expected).split()
    if not out or not exp:
        return float(out == exp)
    lcs = _lcs(out, exp)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(out), lcs / len(exp)
    return 2 * precision * recall / (precision + recall)


def first_number(text: str) -> float | None:
    for match in _NUMBER.finditer(text):
        try:
            return float(match.group().replace(",", ""))
        except ValueError:
            continue
    return None


def _parsed(output: Any) -> Any:
    if isinstance(output, str):
        try:
            return json.loads(output)
        except ValueError:
            return None
    text = getattr(output, "content", None)
    return _parsed(text) if isinstance(text, str) else output


class ReferenceEvaluator:
    """One instance per evaluation run's observer (``create_plugin``)."""

    CONFIG_SCHEMA = CONFIG_SCHEMA

    def __init__(self) -> None:
        self.metrics: frozenset[str] = frozenset(METRICS)
        self.abs_tol = 1e-6
        self.rel_tol = 0.0
        self.json_keys: list[str] | None = None
        self.pass_threshold = 0.5

    @hookimpl
    def configure(self, config: Mapping[str, Any]) -> None:
        self.metrics = frozenset(config.get("metrics", METRICS))
        self.abs_tol = float(config.get("abs_tol", 1e-6))
        self.rel_tol = float(config.get("rel_tol", 0.0))
        keys = config.get("json_keys")
        self.json_keys = list(keys) if keys else None
        self.pass_threshold = float(config.get("pass_threshold", 0.5))

    @hookimpl
    def evaluate(self, case: EvalCase) -> list[Score]:
        values = self.values(case)
        comment = f"target failed: {case.error}" if case.error else None
        return [Score(name, "eval", case.trace_id or "", value=value, passed=passed,
                      comment=comment if comment else note)
                for name, (value, passed, note) in values.items()]

    def values(self, case: EvalCase) -> dict[str, tuple[float, bool, str | None]]:
        """Metric -> (value, passed, comment) for the metrics that apply."""
        found: dict[str, tuple[float, bool, str | None]] = {}
        wanted = self.metrics
        expected = case.expected
        output = None if case.error else case.output
        text = as_text(output)
        pattern = case.metadata.get("regex")
        if "regex" in wanted and isinstance(pattern, str):
            try:
                hit = re.search(pattern, text) is not None
                found["regex"] = (float(hit), hit, None)
            except re.error as exc:
                found["regex"] = (0.0, False, f"invalid regex in the item's metadata: {exc}")
        if expected is None:
            return found
        if isinstance(expected, dict):
            if "json_match" in wanted:
                found["json_match"] = self._json_match(output, expected)
            return found
        if isinstance(expected, int | float) and not isinstance(expected, bool) and "numeric" in wanted:
            found["numeric"] = self._numeric(text, float(expected), case.metadata)
        if isinstance(expected, list):
            return found
        want = as_text(expected)
        if "exact_match" in wanted:
            hit = text.strip() == want.strip()
            found["exact_match"] = (float(hit), hit, None)
        if "normalized_match" in wanted:
            hit = normalize(text) == normalize(want)
            found["normalized_match"] = (float(hit), hit, None)
        if "contains" in wanted:
            hit = bool(normalize(want)) and normalize(want) in normalize(text)
            found["contains"] = (float(hit), hit, None)
        for name, metric in (("token_f1", token_f1), ("rouge_l", rouge_l)):
            if name in wanted:
                value = metric(text, want)
                found[name] = (value, value >= self.pass_threshold, None)
        return found

    def _numeric(self, text: str, expected: float, metadata: Mapping[str, Any]) -> tuple[float, bool, str | None]:
        got = first_number(text)
        if got is None:
            return 0.0, False, "no number in the output"
        abs_tol = float(metadata.get("abs_tol", self.abs_tol))
        rel_tol = float(metadata.get("rel_tol", self.rel_tol))
        hit = math.isclose(got, expected, rel_tol=rel_tol, abs_tol=abs_tol)
        return float(hit), hit, None if hit else f"{got:g} vs {expected:g}"

    def _json_match(self, output: Any, expected: dict[str, Any]) -> tuple[float, bool, str | None]:
        parsed = _parsed(output)
        keys = self.json_keys or sorted(expected)
        if not isinstance(parsed, dict):
            return 0.0, False, "the output is not a JSON object"
        if not keys:
            hit = parsed == expected
            return float(hit), hit, None
        wrong = [k for k in keys if k not in parsed or parsed[k] != expected.get(k)]
        value = 1 - len(wrong) / len(keys)
        return value, value >= self.pass_threshold, ("keys that differ: " + ", ".join(wrong)) if wrong else None


def create_plugin() -> ReferenceEvaluator:
    return ReferenceEvaluator()
