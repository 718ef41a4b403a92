"""Built-in plugin ``json_schema``: outputs that must be JSON matching a schema.

Judges only the spans you name: ``schemas`` maps a span-name glob (fnmatch),
or ``"tag:NAME"`` for spans carrying a tag, to a JSON Schema (draft 2020-12);
the first matching entry applies. Every schema is checked at startup.

The instance is the span's output: a dict or list as is (a parser's output);
otherwise its text (a string, a model message's content, a litellm response),
with a Markdown code fence stripped, parsed as JSON. Spans that ended in
error are skipped. One Score per judged span:

* ``name`` ``"json_schema"``, ``source`` ``"check"``;
* ``value`` 1.0 valid, 0.0 not; ``passed`` accordingly;
* ``label`` ``"valid"``, ``"invalid"`` or ``"not_json"``;
* ``comment`` the failing paths (``$.items[2].price``) with what the schema
  wanted, never the offending values (they may be content).
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Mapping
from typing import Any, Final

import jsonschema
from jsonschema.exceptions import ValidationError

from chainsight.framework.model import Score, Span
from chainsight.plugins.span_check import SpanCheckPlugin
from chainsight.plugins.text import answer_text

NAME: Final = "json_schema"
MAX_ERRORS: Final = 3

CONFIG_SCHEMA: Final[dict[str, Any]] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "schemas": {
            "type": "object",
            "default": {},
            "description": 'Span name glob, or "tag:NAME", -> JSON Schema its output must match.',
            "additionalProperties": {"type": ["object", "boolean"]},
        },
    },
}

_FENCE = re.compile(r"^\s*```[\w-]*\s*\n(.*?)\n?\s*```\s*$", re.DOTALL)


def _path(error: ValidationError) -> str:
    out = "$"
    for part in error.absolute_path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def describe(error: ValidationError) -> str:
    """What failed and where, quoting only the schema."""
    wanted = error.validator_value
    match error.validator:
        case "required":
            message = error.message  # names the schema's property, not a value
        case "type":
            message = f"is not of type {wanted!r}"
        case "enum":
            message = "is not one of the allowed values"
        case "const":
            message = "is not the required constant"
        case "additionalProperties" | "unevaluatedProperties":
            message = "has properties the schema does not allow"
        case "pattern":
            message = f"does not match {wanted!r}"
        case _:
            message = f"fails {error.validator} {json.dumps(wanted, default=str)[:80]}"
    return f"{_path(error)}: {message}"


class JsonSchemaCheck:
    name = NAME

    def __init__(self, schemas: Mapping[str, Any] | None = None) -> None:
        self.rules: list[tuple[str, jsonschema.protocols.Validator]] = []
        for key, schema in (schemas or {}).items():
            cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
            try:
                cls.check_schema(schema)
            except jsonschema.SchemaError as exc:
                raise ValueError(f"schemas[{key!r}] is not a valid JSON Schema: {exc.message}") from exc
            self.rules.append((key, cls(schema)))

    def validator_for(self, span: Span) -> jsonschema.protocols.Validator | None:
        for key, validator in self.rules:
            if key.startswith("tag:"):
                if key[4:] in (span.tags or ()):
                    return validator
            elif fnmatch.fnmatchcase(span.name, key):
                return validator
        return None

    def check_span(self, span: Span) -> list[Score] | None:
        if not self.rules or span.status == "error" or span.outputs is None:
            return None
        validator = self.validator_for(span)
        if validator is None:
            return None
        outputs = span.outputs
        if isinstance(outputs, Mapping | list) and not _message_like(outputs):
            instance: Any = outputs
        else:
            text = answer_text(outputs)
            fenced = _FENCE.match(text)
            if fenced:
                text = fenced.group(1)
            try:
                instance = json.loads(text)
            except ValueError as exc:
                return [Score(NAME, "check", span.trace_id, span.span_id, 0.0, "not_json", False,
                              f"output is not JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
                              if isinstance(exc, json.JSONDecodeError) else "output is not JSON")]
        errors = sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.absolute_path)))
        if not errors:
            return [Score(NAME, "check", span.trace_id, span.span_id, 1.0, "valid", True,
                          "output matches the schema")]
        shown = "; ".join(describe(e) for e in errors[:MAX_ERRORS])
        more = f" (+{len(errors) - MAX_ERRORS} more)" if len(errors) > MAX_ERRORS else ""
        return [Score(NAME, "check", span.trace_id, span.span_id, 0.0, "invalid", False, shown + more)]


def _message_like(value: Any) -> bool:
    if isinstance(value, Mapping):
        return ("content" in value and ("role" in value or "type" in value)) or "choices" in value or "generations" in value
    return bool(value) and all(_message_like(v) for v in value if isinstance(v, Mapping)) and all(
        isinstance(v, Mapping) for v in value
    )


def create_plugin() -> SpanCheckPlugin[JsonSchemaCheck]:
    return SpanCheckPlugin(lambda config: JsonSchemaCheck(config.get("schemas") or {}), CONFIG_SCHEMA)
