"""The built-in reference evaluators: each metric's exact value, and when it applies."""

from __future__ import annotations

from typing import Any

import pytest

from chainsight.framework.model import EvalCase
from chainsight.framework.plugin_manager import load_plugins
from chainsight.plugins.reference import ReferenceEvaluator, normalize, rouge_l, token_f1


def case(output: Any, expected: Any, *, error: str | None = None, **metadata: Any) -> EvalCase:
    return EvalCase("item-1", "question", expected, output, "exp-1", "trace-1", metadata, error)


def scores(output: Any, expected: Any, config: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
    evaluator = ReferenceEvaluator()
    evaluator.configure(config or {})
    return {s.name: (round(s.value, 4), s.passed) for s in evaluator.evaluate(case(output, expected, **kw))}


def test_text_metrics_exact_values() -> None:
    assert scores("The Eiffel Tower!", "eiffel tower") == {
        "exact_match": (0.0, False), "normalized_match": (1.0, True), "contains": (1.0, True),
        "token_f1": (1.0, True), "rouge_l": (1.0, True)}
    got = scores("Paris is the capital of France", "the capital is Paris")
    # tokens: paris is capital of france / capital is paris: 3 common of 5 and 3
    assert got["token_f1"] == (round(2 * (3 / 5) * 1.0 / (3 / 5 + 1.0), 4), True)
    # LCS of [paris is capital of france] and [capital is paris] is 1 ("capital"... or "is")
    assert got["rouge_l"] == (round(2 * (1 / 5) * (1 / 3) / (1 / 5 + 1 / 3), 4), False)
    assert got["exact_match"] == (0.0, False) and got["contains"] == (0.0, False)


def test_helpers() -> None:
    assert normalize("  An  apple, THE pear. ") == "apple pear"
    assert token_f1("", "") == 1.0 and token_f1("x", "") == 0.0
    assert rouge_l("x y z w", "x z w") == pytest.approx(2 * 0.75 * 1.0 / 1.75)
    assert rouge_l("a b c d", "a c d") == pytest.approx(0.8)  # "a" is an article: b c d vs c d


def test_numeric_json_and_regex_apply_by_the_expected_output() -> None:
    assert scores("It is 42.0 degrees", 42) == {
        "numeric": (1.0, True), "exact_match": (0.0, False), "normalized_match": (0.0, False),
        "contains": (1.0, True), "token_f1": (0.3333, False), "rouge_l": (0.3333, False)}
    # "it is 42 0 degrees" (the point splits 42.0) against "42": 1 of 5 tokens
    assert scores("about 41", 42, {"metrics": ["numeric"]}) == {"numeric": (0.0, False)}
    assert scores("about 41", 42, {"metrics": ["numeric"], "abs_tol": 1.5}) == {"numeric": (1.0, True)}
    assert scores("1,234.5", 1234.5, {"metrics": ["numeric"]}) == {"numeric": (1.0, True)}
    assert scores('{"a": 1, "b": 2, "c": 3}', {"a": 1, "b": 3}) == {"json_match": (0.5, True)}
    assert scores({"a": 1, "b": 3}, {"a": 1, "b": 3}) == {"json_match": (1.0, True)}
    assert scores("not json", {"a": 1}) == {"json_match": (0.0, False)}
    assert scores('{"a": 1, "b": 2}', {"a": 1, "b": 3}, {"json_keys": ["a"]}) == {"json_match": (1.0, True)}
    assert scores("order #A-123", None, regex=r"#A-\d+") == {"regex": (1.0, True)}
    assert scores("nothing", None) == {}


def test_a_failed_target_scores_zero_with_the_error() -> None:
    evaluator = ReferenceEvaluator()
    evaluator.configure({"metrics": ["exact_match", "contains"]})
    found = evaluator.evaluate(case(None, "Paris", error="TimeoutError: timed out"))
    assert [(s.name, s.value, s.passed, s.comment) for s in found] == [
        ("exact_match", 0.0, False, "target failed: TimeoutError: timed out"),
        ("contains", 0.0, False, "target failed: TimeoutError: timed out")]


def test_message_outputs_are_read_as_text() -> None:
    from langchain_core.messages import AIMessage

    assert scores(AIMessage("Paris"), "Paris", {"metrics": ["exact_match"]}) == {"exact_match": (1.0, True)}
    assert scores({"answer": "Paris", "sources": []}, "Paris", {"metrics": ["exact_match"]}) == {
        "exact_match": (1.0, True)}


def test_it_is_a_default_plugin_with_one_instance_per_observer_and_validated_config(tmp_path: Any) -> None:
    from chainsight.framework.config import ConfigError, load_settings, resolve_plugin_configs

    config = tmp_path / "plugins.toml"
    config.write_text('[plugins.reference]\nmetrics = ["exact_match", "bleu"]\n', encoding="utf-8")
    plugins = load_plugins(load_settings(config), entry_points=False)
    assert plugins.pm.get_plugin("reference") is not load_plugins(None, entry_points=False).pm.get_plugin("reference")
    with pytest.raises(ConfigError, match=r"plugins\.reference\.metrics\[1\]"):
        resolve_plugin_configs(load_settings(config), plugins.schemas)


def test_third_party_evaluators_register_through_the_same_hook() -> None:
    from chainsight import Score, hookimpl

    class Politeness:
        @hookimpl
        def evaluate(self, case: EvalCase) -> list[Score]:
            polite = "please" in case.output_text().lower()
            return [Score("polite", "eval", case.trace_id or "", value=float(polite), passed=polite)]

    plugins = load_plugins(None, entry_points=False, strict=True, extra=[Politeness()])
    reference = plugins.pm.get_plugin("reference")
    reference.configure({"metrics": ["exact_match"]})
    found = [s for scores in plugins.pm.hook.evaluate(case=case("Paris, please", "Paris")) for s in scores]
    assert sorted((s.name, s.value) for s in found) == [("exact_match", 0.0), ("polite", 1.0)]
