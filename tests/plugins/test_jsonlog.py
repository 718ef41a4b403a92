"""JSON-lines log: one line per span and per alert; the filter for the user's own records."""

from __future__ import annotations

import json
import logging
import os
import stat
import time
from pathlib import Path

from chainsight.framework.config import Settings
from chainsight.framework.model import Alert
from chainsight.framework.observer import Observer
from chainsight.framework.trace_context import TraceContextFilter


def lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_one_line_per_span_and_alert_with_levels_and_ids(sqlite_url: str, tmp_path: Path) -> None:
    path = tmp_path / "logs" / "spans.jsonl"
    settings = Settings(plugins={"jsonlog": {"path": str(path), "slow_ms": 50}})
    obs = Observer(sqlite_url, settings=settings, strict=True, entry_points=False)
    try:
        with obs.span("answer", kind="chain", user_id="u1") as root:
            with obs.span("chat", kind="llm") as llm:
                llm.model, llm.input_tokens, llm.output_tokens = "gpt-4o", 12, 3
                llm.inputs = {"q": "my email is bob@example.com"}
            with obs.span("slow tool", kind="tool"):
                time.sleep(0.06)
            try:
                with obs.span("broken", kind="tool"):
                    raise KeyError("missing")
            except KeyError:
                pass
        obs.record_alert(Alert("p95 latency", "firing", severity="critical", value=3.2, threshold=2.0,
                               summary="p95 latency 3.2 s > 2 s"))
        assert obs.flush(10.0)
    finally:
        obs.shutdown()
    got = lines(path)
    spans = {line["name"]: line for line in got if line["event"] == "span"}
    assert set(spans) == {"answer", "chat", "slow tool", "broken"}
    assert {line["trace_id"] for line in spans.values()} == {root.trace_id}
    chat = spans["chat"]
    assert (chat["span_id"], chat["parent_id"], chat["level"]) == (llm.span_id, root.span_id, "INFO")
    assert (chat["model"], chat["input_tokens"], chat["output_tokens"]) == ("gpt-4o", 12, 3)
    assert "inputs" not in chat  # content is opt-in
    assert spans["slow tool"]["level"] == "WARNING" and spans["slow tool"]["latency_ms"] >= 50
    assert spans["broken"]["level"] == "ERROR" and spans["broken"]["error_type"] == "KeyError"
    [alert] = [line for line in got if line["event"] == "alert"]
    assert (alert["level"], alert["rule"], alert["state"], alert["value"]) == ("ERROR", "p95 latency", "firing", 3.2)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_the_file_rotates(sqlite_url: str, tmp_path: Path) -> None:
    path = tmp_path / "spans.jsonl"
    settings = Settings(plugins={"jsonlog": {"path": str(path), "max_bytes": 2000, "backup_count": 2}})
    obs = Observer(sqlite_url, settings=settings, strict=True, entry_points=False)
    try:
        for i in range(40):
            with obs.span(f"step {i}"):
                pass
        assert obs.flush(10.0)
    finally:
        obs.shutdown()
    assert Path(f"{path}.1").exists() and path.stat().st_size <= 2000


def test_the_filter_puts_the_trace_ids_on_the_users_own_records(sqlite_url: str) -> None:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep()
    handler.addFilter(TraceContextFilter(default="-"))
    logger = logging.getLogger("an.application")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    obs = Observer(sqlite_url, settings=Settings(), strict=True, entry_points=False)
    try:
        logger.info("before")
        with obs.span("outer") as outer:
            with obs.span("inner") as inner:
                logger.info("inside")
            logger.info("back out")
    finally:
        obs.shutdown()
        logger.removeHandler(handler)
    ids = [(r.getMessage(), r.trace_id, r.span_id) for r in records]  # type: ignore[attr-defined]
    assert ids == [("before", "-", "-"), ("inside", inner.trace_id, inner.span_id),
                   ("back out", outer.trace_id, outer.span_id)]


def test_the_filter_sees_a_langchain_run(sqlite_url: str) -> None:
    from langchain_core.runnables import RunnableLambda

    from chainsight.framework.adapters.langchain import CallbackHandler

    seen: list[tuple[str, str]] = []
    log_filter = TraceContextFilter()

    def step(x: str) -> str:
        record = logging.LogRecord("app", logging.INFO, __file__, 1, "in a step", None, None)
        log_filter.filter(record)
        seen.append((record.trace_id, record.span_id))  # type: ignore[attr-defined]
        return x

    obs = Observer(sqlite_url, settings=Settings(), strict=True, entry_points=False)
    try:
        handler = CallbackHandler(obs)
        RunnableLambda(step, name="step").invoke("x", config={"callbacks": [handler]})
        assert obs.flush(10.0)
    finally:
        obs.shutdown()
    [(trace_id, span_id)] = seen
    from chainsight.storage.query import Store

    with Store(sqlite_url) as store:
        detail = store.get_trace(trace_id)
    assert detail is not None and span_id in {s.span_id for s in detail.spans}
