"""The json_schema check: chosen spans only, fences, paths without values."""

from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage

from chainsight.framework.model import Span
from chainsight.plugins.json_schema import JsonSchemaCheck

INVOICE = {"type": "object", "required": ["total", "items"],
           "properties": {"total": {"type": "number"},
                          "items": {"type": "array", "items": {"type": "object", "required": ["sku"],
                                                               "properties": {"price": {"type": "number"}}}}}}


def span(outputs: object, name: str = "extract_invoice", tags: list[str] | None = None) -> Span:
    s = Span(name, "llm", parent_id="p" * 16)
    s.outputs, s.status, s.tags = outputs, "ok", tags
    return s


def test_valid_fenced_message_and_dict_outputs() -> None:
    check = JsonSchemaCheck({"extract_*": INVOICE})
    fenced = AIMessage(content='```json\n{"total": 3, "items": [{"sku": "a", "price": 3}]}\n```')
    (score,) = check.check_span(span(fenced)) or []
    assert (score.value, score.label, score.passed) == (1.0, "valid", True)
    (score,) = check.check_span(span({"total": 1, "items": []})) or []
    assert score.passed


def test_invalid_output_names_paths_not_values() -> None:
    check = JsonSchemaCheck({"extract_*": INVOICE})
    bad = '{"total": "secret-value-123", "items": [{"sku": "a"}, {"price": "cheap-secret"}]}'
    (score,) = check.check_span(span(bad)) or []
    assert (score.value, score.label, score.passed) == (0.0, "invalid", False)
    comment = score.comment or ""
    assert "$.total: is not of type 'number'" in comment
    assert "$.items[1]: 'sku' is a required property" in comment
    assert "$.items[1].price" in comment
    assert "secret" not in comment and "cheap" not in comment


def test_not_json_and_unmatched_spans() -> None:
    check = JsonSchemaCheck({"tag:structured": {"type": "array"}})
    (score,) = check.check_span(span("Sure! Here you go", name="x", tags=["structured"])) or []
    assert score.label == "not_json" and "Sure" not in (score.comment or "")
    assert check.check_span(span("[]", name="x")) is None
    assert JsonSchemaCheck().check_span(span("{}")) is None


def test_invalid_schema_fails_at_startup() -> None:
    with pytest.raises(ValueError, match="not a valid JSON Schema"):
        JsonSchemaCheck({"x": {"type": "nonsense"}})
