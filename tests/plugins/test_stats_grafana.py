"""chainsight stats (figures from the store) and chainsight export grafana."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from chainsight.framework.cli import main
from chainsight.framework.model import Score, Span
from chainsight.plugins.grafana import PANELS
from chainsight.storage.writer import StoreWriter, WriteBatch

MS = 1_000_000


def calls(url: str) -> None:
    now = time.time_ns()
    spans = []
    for i, model in enumerate(["gpt-4o", "gpt-4o", "claude-3-5-haiku"]):
        llm = Span("chat", "llm", start_ns=now - (10 + i) * 1000 * MS)
        llm.model, llm.provider, llm.input_tokens, llm.output_tokens = model, "x", 10, 5
        llm.end_ns, llm.status, llm.cost_usd = llm.start_ns + (i + 1) * 100 * MS, "ok", 0.5
        llm.attributes = {"litellm.cache_hit": True} if i == 0 else None
        spans.append(llm)
    old = Span("chat", "llm", start_ns=now - 3 * 3600 * 10**9)  # outside --since 1h
    old.model, old.end_ns, old.status = "gpt-4o", old.start_ns + MS, "ok"
    StoreWriter(url).write(WriteBatch(spans=[*spans, old], scores=[
        Score("rating", "feedback", spans[0].trace_id, None, 5.0),
        Score("refusal", "check", spans[1].trace_id, spans[1].span_id, 1.0, passed=False),
        Score("pii", "check", spans[1].trace_id, spans[1].span_id, 0.0, passed=True)]))  # on its span


def test_stats_prints_the_window_figures(sqlite_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    calls(sqlite_url)
    assert main(["stats", "--since", "1h", "--json", "--db", sqlite_url]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert (stats["llm_calls"], stats["input_tokens"], stats["cost_usd"]) == (3, 30, 1.5)
    assert stats["latency_seconds"]["p50"] == pytest.approx(0.2, rel=0.02)  # from the rollups
    assert stats["cache_hit_rate"] == pytest.approx(1 / 3)
    assert stats["feedback"] == {"5": 1} and stats["refusals"] == 1
    assert stats["check_failures"] == {"refusal": 1}  # the passing pii verdict is no failure
    assert [m["model"] for m in stats["by_model"]] == ["gpt-4o", "claude-3-5-haiku"]
    assert main(["stats", "--since", "1h", "--db", sqlite_url]) == 0
    text = capsys.readouterr().out
    p50 = f"{stats['latency_seconds']['p50'] * 1000:.0f}ms"  # 200 ms within 2% (the rollups)
    assert "LLM calls" in text and p50 in text and "refusal 1" in text and "33.3%" in text


def test_stats_needs_a_store_and_a_time(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stats", "--db", f"sqlite:///{tmp_path / 'none.db'}"]) == 1
    assert "no Chainsight store" in capsys.readouterr().err
    assert main(["stats", "--since", "soon", "--db", f"sqlite:///{tmp_path / 'none.db'}"]) == 1
    assert "not a time: 'soon'" in capsys.readouterr().err


def test_export_grafana_writes_a_dashboard(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "dash.json"
    assert main(["export", "grafana", "-o", str(out)]) == 0
    board = json.loads(out.read_text())
    assert len(board["panels"]) == len(PANELS)
    titles = {p["title"] for p in board["panels"]}
    assert {"Latency", "Requests per second", "Tokens per second", "Cache hit rate", "GPU utilisation",
            "Spend (cumulative)", "Time to first token", "Time per output token", "Error rate"} <= titles
    assert all(p["targets"] and p["datasource"]["uid"] == "${datasource}" for p in board["panels"])
    assert main(["export", "grafana", "-o", str(tmp_path / "no" / "such" / "dir.json")]) == 1
    assert "cannot write the dashboard" in capsys.readouterr().err
