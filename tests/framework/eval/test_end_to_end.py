"""Issue 16, end to end through the CLI: a 30-item dataset, a LangChain target
whose fake model is wrong on known items, exact scores per evaluator, a
comparison that finds exactly the known regressions, and gates that fail and pass."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from eval_targets import DONT_KNOW, N_ITEMS, WRONG_A, WRONG_B, dataset_records, question

from chainsight.framework.cli import main
from chainsight.storage.evaluation import EvalStore
from chainsight.storage.query import Store

JUDGE_REPLY = '{"score": 4, "explanation": "mostly right"}'
REFERENCE = ("exact_match", "normalized_match", "contains", "token_f1", "rouge_l")


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any, str]:
    status = main(list(args))
    out, err = capsys.readouterr()
    return status, (json.loads(out) if "--json" in args and out.strip() else out), err


@pytest.fixture
def setup(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[str, str]:
    url = f"sqlite:///{tmp_path / 'eval.db'}"
    data = tmp_path / "qa.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in dataset_records()), encoding="utf-8")
    config = tmp_path / "plugins.toml"
    config.write_text(
        '[plugins.judge]\nmodel = "gpt-4o-mini"\nrubric = "Is the sum right?"\n'
        f"completion_kwargs = {{ mock_response = '{JUDGE_REPLY}' }}\n", encoding="utf-8")
    status, created, _ = run_cli(capsys, "dataset", "create", "qa", "--from", str(data), "--db", url, "--json")
    assert status == 0 and created["items"] == N_ITEMS and created["new"] is True
    return url, str(config)


def test_run_compare_and_gates(setup: tuple[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    import litellm

    saved = (list(litellm.callbacks), list(litellm.success_callback), list(litellm.failure_callback))
    try:
        _run_compare_and_gates(*setup, capsys)
    finally:
        litellm.callbacks[:], litellm.success_callback[:], litellm.failure_callback[:] = saved


def _run_compare_and_gates(url: str, config: str, capsys: pytest.CaptureFixture[str]) -> None:
    common = ("--db", url, "--config", config, "--json", "--no-progress")
    # A: wrong on 2 of 30; a gate that passes
    status, a, err = run_cli(capsys, "eval", "run", "qa", "--target", "eval_targets:chain_a", "--name", "A",
                             "--fail-under", "exact_match=0.9", *common)
    assert status == 0, err
    assert a["gates_failed"] == [] and "all 1 gate(s) passed" in err
    scores = a["summary"]["scores"]
    for name in REFERENCE:
        assert (scores[name]["mean"], scores[name]["n"]) == (pytest.approx(28 / 30), 30), name
    assert (scores["judge"]["mean"], scores["judge"]["n"]) == (0.75, 30)  # 4 on 1..5
    assert a["summary"]["items"] == 30 and a["summary"]["errors"] == 0
    assert a["summary"]["output_tokens"] > 0  # the fake model's usage, estimated by the pipeline

    # B: wrong on 5; a regression gate against A that fails, and says which
    status, b, err = run_cli(capsys, "eval", "run", "qa", "--target", "eval_targets:chain_b", "--name", "B",
                             "--baseline", "A", "--max-regression", "exact_match=0.05",
                             "--fail-under", "token_f1=0.8", *common)
    assert status == 3
    assert b["summary"]["scores"]["exact_match"]["mean"] == pytest.approx(25 / 30)
    assert b["gates_failed"] == [
        "--max-regression exact_match=0.05: fell by 0.1000 from the baseline 'A' "
        "(0.9333 -> 0.8333, 3 item(s) worse)"]
    assert "chainsight: gate failed: --max-regression exact_match=0.05" in err

    # the comparison finds exactly the items B got wrong and A did not
    status, comparison, _ = run_cli(capsys, "eval", "compare", "A", "B", "--db", url, "--json")
    assert status == 0
    with EvalStore(url) as store:
        items = {i.item_id: i.metadata["n"] for i in store.dataset_items(store.get_dataset("qa").dataset_id)}
    assert sorted(items[i] for i in comparison["regressed_items"]) == sorted(WRONG_B - WRONG_A)
    exact = next(m for m in comparison["metrics"] if m["name"] == "exact_match")
    assert (exact["n"], exact["regressed"], exact["improved"]) == (30, 3, 0)
    assert exact["delta"] == pytest.approx(-0.1) and exact["p_value"] == 0.25  # 2 of 2**3 sign flips
    judge = next(m for m in comparison["metrics"] if m["name"] == "judge")
    assert judge["regressed"] == 0
    for name in REFERENCE:
        worse = {items[r["item_id"]] for r in comparison["regressions"] if r["metric"] == name}
        assert worse == WRONG_B - WRONG_A, name

    # the human-readable comparison lists the same three items
    status, text, _ = run_cli(capsys, "eval", "compare", "A", "B", "--db", url)
    assert "3 item(s) regressed" in text
    assert all(question(n) in text for n in WRONG_B - WRONG_A)

    # a regression gate that passes: the same target as A again
    status, c, err = run_cli(capsys, "eval", "run", "qa", "--target", "eval_targets:chain_a", "--name", "C",
                             "--baseline", "A", "--max-regression", "exact_match=0", *common)
    assert status == 0 and c["gates_failed"] == [], err

    _each_item_is_an_ordinary_trace(url, b["experiment_id"])


def _each_item_is_an_ordinary_trace(url: str, experiment_id: str) -> None:
    with EvalStore(url) as store:
        results = store.results(experiment_id)
    assert len(results) == N_ITEMS
    wrong = next(r for r in results if r.output == DONT_KNOW)
    with Store(url) as reader:
        detail = reader.get_trace(wrong.trace_id or "")
        assert detail is not None
        root = next(s for s in detail.spans if s.parent_id is None)
        assert root.metadata is not None and root.metadata["experiment_id"] == experiment_id
        assert root.tags == ["eval"]
        assert {s.kind for s in detail.spans} >= {"chain", "llm"}
        evals = {s.name: s for s in detail.scores if s.source in ("eval", "judge")}
        assert evals["exact_match"].value == 0.0 and evals["exact_match"].experiment_id == experiment_id
        assert evals["judge"].source == "judge" and evals["judge"].comment == "mostly right"
        assert {s.source for s in detail.scores} >= {"check", "eval", "judge"}
