"""Issue "Trust", item 2: one bad span never costs its neighbours, and a row
the store still refuses goes to the dead-letter file, alone."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from reliability_helpers import poison, span_rows, trace_rows, wait_for

from chainsight.framework.cli import main as cli_main
from chainsight.framework.model import Span
from chainsight.framework.observer import Observer
from chainsight.framework.spill import RecordFile

NEIGHBOURS = 100


def _set(**values: Any) -> Callable[[Span], None]:
    def apply(span: Span) -> None:
        for key, value in values.items():
            setattr(span, key, value)

    return apply


BAD_VALUES: dict[str, Callable[[Span], None]] = {
    "lone surrogate in the name": _set(name="bad\udcffname"),
    "lone surrogate in the user id": _set(user_id="user\udcff"),
    "lone surrogate in a tag": _set(tags=["ok", "tag\udcff"]),
    "lone surrogate in the error": _set(status="error", error="boom \udcff here"),
    "name is None": _set(name=None),
    "user id is an object": _set(user_id=object()),
    "token count given as a string": _set(model="m", input_tokens="12"),
    "token count of 2**70": _set(model="m", output_tokens=2**70),
    "NUL in text": _set(name="nul\x00name", error="a\x00b", session_id="s\x00"),
    "cost that is not a number": _set(model="m", cost_usd="free"),
}


def _observer(url: str, tmp_path: Path, **pipeline: Any) -> Observer:
    options = {"batch_size": NEIGHBOURS + 1, "flush_interval_s": 30.0, **pipeline}
    return Observer(url, builtins=(), entry_points=False, spill_path=tmp_path / "spill.jsonl",
                    pipeline=options)


def _record_batch(obs: Observer, bad: Callable[[Span], None]) -> Span:
    for i in range(NEIGHBOURS // 2):
        obs.end_span(obs.start_span(f"neighbour-{i}"))
    span = obs.start_span("the-bad-one")
    bad(span)
    obs.end_span(span)
    for i in range(NEIGHBOURS // 2, NEIGHBOURS):
        obs.end_span(obs.start_span(f"neighbour-{i}"))
    return span


@pytest.mark.parametrize("bad", list(BAD_VALUES), ids=list(BAD_VALUES))
def test_a_bad_value_costs_no_neighbour(bad: str, store_url: str, tmp_path: Path) -> None:
    obs = _observer(store_url, tmp_path)
    try:
        span = _record_batch(obs, BAD_VALUES[bad])
        assert obs.flush(timeout=20)  # every span of the batch is stored
        rows = span_rows(store_url)
        assert len(rows) == NEIGHBOURS + 1
        assert obs.stats().written == NEIGHBOURS + 1
        (row,) = [r for r in rows if r["span_id"] == span.span_id]
        (trace,) = trace_rows(store_url, f"trace_id = '{span.trace_id}'")
        for value in [*(row[key] for key in ("name", "user_id", "error", "session_id", "tags")),
                      trace["tags"], trace["search_text"]]:  # the root's tags and text are the trace's
            if isinstance(value, str):
                value.encode("utf-8")  # valid UTF-8
                assert "\x00" not in value
    finally:
        obs.shutdown(timeout=5)


def test_the_problem_is_recorded_on_the_span(sqlite_url: str, tmp_path: Path) -> None:
    obs = _observer(sqlite_url, tmp_path)
    try:
        span = _record_batch(obs, _set(model="m", input_tokens="12", output_tokens=2**70))
        assert obs.flush(timeout=20)
        (row,) = span_rows(sqlite_url, f"span_id = '{span.span_id}'")
        assert row["input_tokens"] is None and row["output_tokens"] is None
        problems = json.loads(row["attributes"])["chainsight.invalid"]
        assert set(problems) == {"input_tokens", "output_tokens"}
        assert "str" in problems["input_tokens"] and "64-bit" in problems["output_tokens"]
    finally:
        obs.shutdown(timeout=5)


def test_a_row_the_store_refuses_is_dead_lettered_alone(
    sqlite_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    obs = _observer(sqlite_url, tmp_path)
    try:
        assert obs.pipeline.wait_started(10)  # start-up opened (and migrated) the store
        poison(sqlite_url)
        span = _record_batch(obs, _set(name="poison", inputs={"q": "hello"}))
        with caplog.at_level(logging.ERROR, "chainsight"):
            assert not obs.flush(timeout=20)  # one span was not stored: flush says so
        assert len(span_rows(sqlite_url)) == NEIGHBOURS
        stats = obs.stats()
        assert (stats.written, stats.dead_lettered, stats.failed) == (NEIGHBOURS, 1, 0)
        letters = RecordFile(tmp_path / "deadletter.jsonl").read()
        assert len(letters) == 1
        letter = letters[0]
        assert letter["table"] == "spans" and letter["row"]["span_id"] == span.span_id
        assert "refuses poison" in letter["error"]
        assert "[parameters" not in letter["error"]  # no echo of the row's values
        assert sum("rejected 1 rows" in r.getMessage() for r in caplog.records) == 1
        assert obs.flush(timeout=5)  # reported once
    finally:
        obs.shutdown(timeout=5)
    spill = str(tmp_path / "spill.jsonl")
    assert cli_main(["deadletter", "list", "--spill", spill, "--json"]) == 0
    (listed,) = json.loads(capsys.readouterr().out)["records"]
    assert listed["table"] == "spans" and "poison" in listed["span"] and "refuses" in listed["error"]
    assert cli_main(["deadletter", "show", "1", "--spill", spill]) == 0
    assert json.loads(capsys.readouterr().out)["row"]["span_id"] == span.span_id
    assert cli_main(["deadletter", "show", "2", "--spill", spill]) == 1
    assert "no dead letter #2" in capsys.readouterr().err
    assert cli_main(["plugins", "--db", sqlite_url]) == 0  # the counters the pipeline stored
    assert "1 refused by the store" in capsys.readouterr().out


def test_an_unencodable_span_keeps_its_identity(sqlite_url: str, tmp_path: Path) -> None:
    class Hostile:
        def __bool__(self) -> bool:
            raise RuntimeError("no truth value")

        def __iter__(self) -> Any:
            raise RuntimeError("not iterable")

    obs = _observer(sqlite_url, tmp_path)
    try:
        span = _record_batch(obs, _set(tags=Hostile(), metadata=Hostile()))
        assert obs.flush(timeout=20)
        assert wait_for(lambda: len(span_rows(sqlite_url)) == NEIGHBOURS + 1)
        (row,) = span_rows(sqlite_url, f"span_id = '{span.span_id}'")
        assert row["name"] == "the-bad-one"
    finally:
        obs.shutdown(timeout=5)
