"""Built-in evaluator ``judge``: an LLM grades each output against a rubric.

Off until ``model`` is set. For every item the target answered, it sends the
rubric, the input, the expected output (when the item has one) and the output
to ``model`` through litellm (imported on first use), and asks for JSON
``{"score": N, "explanation": "..."}`` with N from ``min_score`` to
``max_score``. One Score per item: ``name`` (default ``"judge"``),
``source`` ``"judge"``, ``value`` N scaled to 0..1, ``label`` N as given,
``passed`` value >= ``pass_threshold``, ``comment`` the explanation. An
answer that cannot be parsed is a score with no value and the answer (cut to
200 characters) as its comment; a failed call raises and is reported by the
runner with this plugin's name.

``completion_kwargs`` go to ``litellm.completion`` as they are (``api_base``,
``temperature``, ``mock_response`` for an offline run...); secrets by
reference: ``api_key = { env = "OPENAI_API_KEY" }``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Final

from chainsight.framework import hookimpl
from chainsight.framework.model import EvalCase, Score, as_text

DEFAULT_RUBRIC: Final = (
    "Grade how well the answer responds to the input: correct, complete and faithful to the "
    "expected answer when one is given. 1 is wrong or unusable, 5 is fully correct."
)

CONFIG_SCHEMA: Final[dict[str, Any]] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "model": {"type": "string", "description": "litellm model name; the judge is off without one."},
        "name": {"type": "string", "default": "judge", "description": "The score's name."},
        "rubric": {"type": "string", "default": DEFAULT_RUBRIC},
        "min_score": {"type": "integer", "default": 1},
        "max_score": {"type": "integer", "default": 5},
        "pass_threshold": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.75},
        "timeout_s": {"type": "number", "exclusiveMinimum": 0, "default": 60},
        "completion_kwargs": {"type": "object", "default": {},
                              "description": "Passed to litellm.completion as they are."},
    },
}

_SCORE_LINE: Final = re.compile(r"score\W{0,3}\s*(-?\d+(?:\.\d+)?)", re.IGNORECASE)
_JSON_OBJECT: Final = re.compile(r"\{.*\}", re.DOTALL)


def parse_verdict(text: str) -> tuple[float | None, str]:
    """(score, explanation) from the judge's answer: a JSON object with
    ``score`` and ``explanation``, or a ``Score: N`` line; (None, text) otherwise."""
    match = _JSON_OBJECT.search(text)
    if match:
        try:
            data = json.loads(match.group())
        except ValueError:
            data = None
        if isinstance(data, dict) and isinstance(data.get("score"), int | float) \
                and not isinstance(data.get("score"), bool):
            return float(data["score"]), str(data.get("explanation") or data.get("reason") or "")
    line = _SCORE_LINE.search(text)
    if line:
        rest = (text[: line.start()] + text[line.end():]).strip()
        rest = re.sub(r"^\W*explanation\W*", "", rest, flags=re.IGNORECASE)
        return float(line.group(1)), rest
    return None, text


class Judge:
    """An LLM-as-judge evaluator; configured by ``[plugins.judge]`` or built in code:
    ``Judge(model="gpt-4o-mini", rubric="...")`` passed to ``evaluate(evaluators=[...])``."""

    CONFIG_SCHEMA = CONFIG_SCHEMA

    def __init__(self, **config: Any) -> None:
        self.model: str | None = None
        self.name = "judge"
        self.rubric = DEFAULT_RUBRIC
        self.min_score, self.max_score = 1, 5
        self.pass_threshold = 0.75
        self.timeout_s = 60.0
        self.completion_kwargs: dict[str, Any] = {}
        self._given = config
        if config:
            self._apply(config)

    @hookimpl
    def configure(self, config: Mapping[str, Any]) -> None:
        if not self._given:  # settings given in code win over the file's
            self._apply(config)

    def _apply(self, config: Mapping[str, Any]) -> None:
        self.model = config.get("model", self.model)
        self.name = str(config.get("name", self.name))
        self.rubric = str(config.get("rubric", self.rubric))
        self.min_score = int(config.get("min_score", self.min_score))
        self.max_score = int(config.get("max_score", self.max_score))
        if self.max_score <= self.min_score:
            raise ValueError(f"judge: max_score ({self.max_score}) must be above min_score ({self.min_score})")
        self.pass_threshold = float(config.get("pass_threshold", self.pass_threshold))
        self.timeout_s = float(config.get("timeout_s", self.timeout_s))
        self.completion_kwargs = dict(config.get("completion_kwargs", self.completion_kwargs))

    def messages(self, case: EvalCase) -> list[dict[str, str]]:
        parts = [f"Input:\n{as_text(case.input)}"]
        if case.expected is not None:
            parts.append(f"Expected answer:\n{as_text(case.expected)}")
        parts.append(f"Answer to grade:\n{case.output_text()}")
        system = (f"You are a strict grader. {self.rubric}\nReply with JSON only: "
                  f'{{"score": <integer {self.min_score}-{self.max_score}>, "explanation": "<one or two sentences>"}}')
        return [{"role": "system", "content": system}, {"role": "user", "content": "\n\n".join(parts)}]

    @hookimpl
    def evaluate(self, case: EvalCase) -> list[Score] | None:
        if not self.model or case.error:
            return None
        import litellm

        response: Any = litellm.completion(model=self.model, messages=self.messages(case),
                                           timeout=self.timeout_s, **self.completion_kwargs)
        text = str(response.choices[0].message.content or "")
        raw, explanation = parse_verdict(text)
        if raw is None:
            return [Score(self.name, "judge", case.trace_id or "", value=None,
                          comment=f"unparsable judge answer: {text[:200]}")]
        raw = min(max(raw, self.min_score), self.max_score)
        value = (raw - self.min_score) / (self.max_score - self.min_score)
        return [Score(self.name, "judge", case.trace_id or "", value=value, label=f"{raw:g}",
                      passed=value >= self.pass_threshold, comment=explanation or None)]


def create_plugin() -> Judge:
    return Judge()
