"""Recorded spans: the JSON Lines format, the other JSON a trace comes in, and the sample."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from chainsight import Span
from chainsight.testing import SAMPLE_TRACE, PluginHarness, load_spans, save_spans

ROOT = Path(__file__).resolve().parents[2]


def shape(spans: list[Span]) -> list[tuple[object, ...]]:
    """What a recording says, without its ids and times (a message's id is its run's)."""
    names = {s.span_id: s.name for s in spans}

    def content(outputs: object) -> str:
        if isinstance(outputs, dict):
            outputs = {k: v for k, v in outputs.items() if k != "id"}
        return json.dumps(outputs, sort_keys=True)

    return sorted((s.name, s.kind, s.status, names.get(s.parent_id or ""), s.user_id, s.input_tokens,
                   s.output_tokens, content(s.outputs)) for s in spans)


def test_round_trip_keeps_every_field(tmp_path: Path) -> None:
    span = Span("answer", "llm", parent_id="p" * 32, start_ns=1)
    span.end_ns, span.status, span.outputs = 5, "ok", {"content": "hi", "n": [1, 2]}
    span.tags, span.metadata, span.input_tokens, span.cost_usd = ["a"], {"k": "v"}, 3, 0.5
    (back,) = load_spans(save_spans(tmp_path / "one.jsonl", [span]))
    assert back.to_dict() == span.to_dict()


def test_live_content_is_written_as_the_store_writes_it(tmp_path: Path) -> None:
    from langchain_core.messages import AIMessage

    span = Span("model", "llm", start_ns=1)
    span.outputs = AIMessage("hello")
    (back,) = load_spans(save_spans(tmp_path / "live.jsonl", [span]))
    assert back.outputs["content"] == "hello" and back.outputs["type"] == "ai"


def test_show_json_and_exports_load_too(tmp_path: Path) -> None:
    """``chainsight show --json`` (extra derived fields) and a JSON list."""
    with PluginHarness(None, directory=tmp_path / "store") as h:
        h.feed(SAMPLE_TRACE)
        h.flush()
        trace_id = next(t.trace_id for t in h.flush().traces if t.name == "rag")
        shown = h.run_command("show", trace_id, "--json")
    assert shown.exit_code == 0 and "latency_s" in shown.stdout
    (tmp_path / "show.json").write_text(shown.stdout)
    from_show = load_spans(tmp_path / "show.json")
    assert shape(from_show) == shape([s for s in load_spans(SAMPLE_TRACE) if s.trace_id == from_show[0].trace_id])
    (tmp_path / "list.json").write_text(json.dumps([s.to_dict() for s in from_show]))
    assert shape(load_spans(tmp_path / "list.json")) == shape(from_show)


@pytest.mark.parametrize(("text", "error"), [
    ('{"span_id": "a", "trace_id": "b", "name": "n", "start_ns": 1}\n\nnot json\n', r"bad\.jsonl:3: not JSON"),
    ('{"span_id": "a", "name": "n"}\n', r"bad\.jsonl:1: not a span: missing trace_id, start_ns"),
    ('[1]', r"bad\.jsonl: \[0\]: a span must be a JSON object, not int"),
    ('{"spans": [{"span_id": "a"}]}', r"bad\.jsonl: spans\[0\]: not a span: missing trace_id, name"),
])
def test_errors_name_the_file_and_line(tmp_path: Path, text: str, error: str) -> None:
    (tmp_path / "bad.jsonl").write_text(text)
    with pytest.raises(ValueError, match=error):
        load_spans(tmp_path / "bad.jsonl")


def test_the_sample_is_what_the_script_records(tmp_path: Path) -> None:
    """scripts/record_sample_trace.py makes the shipped recording from real LangChain runs."""
    out = tmp_path / "again.jsonl"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "record_sample_trace.py"), str(out)],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path, env=os.environ.copy())
    assert proc.returncode == 0, proc.stderr
    assert "14 spans in 3 traces" in proc.stdout
    assert shape(load_spans(out)) == shape(load_spans(SAMPLE_TRACE))
    rag = next(s for s in load_spans(SAMPLE_TRACE) if s.name == "rag")
    assert "[redacted:email]" in json.dumps(rag.inputs)  # recorded through redaction
