"""``chainsight demo``: deterministic plan, and a small real run into SQLite."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("LANGSMITH_TRACING", "false")
pytest.importorskip("langgraph")

from chainsight.framework.cli import main as cli_main
from chainsight.plugins.demo import workload


def test_plan_is_deterministic_and_covers_every_scenario() -> None:
    first, again = workload.plan(300, seed=3), workload.plan(300, seed=3)
    assert first == again
    assert workload.plan(300, seed=4) != first
    assert {j.scenario for j in first} == set(workload.SCENARIOS)
    assert {j.model for j in first} == {m for m, _, _ in workload.MODELS}
    assert len({j.user_id for j in first}) > 5


def test_demo_records_traces_and_prints_a_summary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(workload, "TOKEN_SLEEP", 0.0005)
    monkeypatch.setattr(workload, "SLOW_TOKEN_SLEEP", 0.002)
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    assert cli_main(["demo", "--count", "40", "--concurrency", "4", "--seed", "1", "--db", url]) == 0
    out = capsys.readouterr().out
    assert "traces        40" in out and "p95 TTFT" in out and "total cost" in out

    from chainsight.storage.query import Store, TraceFilter

    store = Store(url)
    traces = store.list_traces(TraceFilter(), limit=100).items
    assert len(traces) == 40
    names = {t.name for t in traces}
    assert {"demo-rag", "demo-langgraph", "demo-agent"} <= names
    statuses = {t.name: t.status for t in traces}
    assert statuses.get("demo-stream_error", "error") == "error"
    assert statuses.get("demo-tool_error", "error") == "error"
    rag = next(t for t in traces if t.name == "demo-rag")
    detail = store.get_trace(rag.trace_id)
    assert detail is not None
    kinds = {s.kind for s in detail.spans}
    assert {"chain", "retriever", "prompt", "llm", "parser"} <= kinds
    llm = next(s for s in detail.spans if s.kind == "llm")
    assert llm.model in {m for m, _, _ in workload.MODELS}
    assert llm.first_token_ns is not None and llm.input_tokens and llm.output_tokens
    assert not llm.tokens_estimated


def test_without_langgraph_the_demo_says_it_skipped_the_graph_scenario(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "langgraph", None)  # as if not installed
    monkeypatch.setattr(workload, "TOKEN_SLEEP", 0.0005)
    monkeypatch.setattr(workload, "SLOW_TOKEN_SLEEP", 0.002)
    assert not workload.langgraph_available()
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    assert cli_main(["demo", "--count", "20", "--seed", "1", "--db", url]) == 0
    out, err = capsys.readouterr()
    assert "traces        20" in out
    assert [line for line in err.splitlines() if "langgraph" in line.lower()] == [
        "langgraph is not installed: skipped the LangGraph scenario (pip install langgraph to include it)"]

    from chainsight.storage.query import Store, TraceFilter

    names = {t.name for t in Store(url).list_traces(TraceFilter(), limit=100).items}
    assert "demo-langgraph" not in names and "demo-rag" in names
    assert all(j.scenario != "langgraph" for j in workload.plan(300, 1, skip=("langgraph",)))


def test_the_summary_never_prints_the_store_password(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from chainsight.plugins.demo.summary import print_summary

    summary = {"traces": 3, "spans": 9, "errors": 0, "p95_latency_s": 0.2, "p95_ttft_s": 0.05,
               "cost_usd": 0.01, "unpriced": 0, "input_tokens": 10, "output_tokens": 20}
    url = "postgresql+psycopg://cs:s3cret-pw@db.example:5432/chainsight"
    assert print_summary(summary, url) == 0
    out = capsys.readouterr().out
    assert "recorded into postgresql+psycopg://cs:***@db.example:5432/chainsight" in out
    assert "s3cret-pw" not in out
    print_summary(summary, url, as_json=True)
    doc = json.loads(capsys.readouterr().out)
    assert doc["db"] == "postgresql+psycopg://cs:***@db.example:5432/chainsight"


def test_demo_records_with_the_configuration_given_by_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """`chainsight --config FILE demo` runs the demo with that file's settings
    (here metrics_only: no content stored), not with the defaults."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(workload, "TOKEN_SLEEP", 0.0005)
    monkeypatch.setattr(workload, "SLOW_TOKEN_SLEEP", 0.002)
    config = tmp_path / "metrics-only.toml"
    config.write_text("[pipeline]\nmetrics_only = true\n")
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    assert cli_main(["--config", str(config), "demo", "--count", "5", "--seed", "1", "--db", url]) == 0

    from chainsight.storage.query import Store, TraceFilter

    store = Store(url)
    (trace, *_) = store.list_traces(TraceFilter(), limit=10).items
    detail = store.get_trace(trace.trace_id)
    assert detail is not None and detail.spans
    assert all(s.inputs is None and s.outputs is None for s in detail.spans)


def test_a_plain_path_is_a_sqlite_file_and_a_bad_store_stops_the_demo_before_it_records(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(workload, "TOKEN_SLEEP", 0.0005)
    monkeypatch.setattr(workload, "SLOW_TOKEN_SLEEP", 0.002)
    assert cli_main(["demo", "--count", "3", "--seed", "1", "--db", "stores/demo.db"]) == 0
    assert (tmp_path / "stores" / "demo.db").is_file()
    capsys.readouterr()
    assert cli_main(["demo", "--count", "3", "--db", "mysql://someone@somewhere/db"]) != 0
    err = capsys.readouterr().err
    assert "cannot record the demo: unsupported store URL mysql://someone@somewhere/db" in err
    assert not list(tmp_path.glob("*.spill.jsonl"))  # nothing recorded, nothing spilled
