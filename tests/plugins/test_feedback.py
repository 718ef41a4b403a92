"""Feedback through the API and the CLI: stored as scores with
source=feedback, and feedback_recorded fires."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from framework import hookimpl
from framework.cli import main
from framework.model import Score
from framework.observer import Observer
from tests.plugins.cases.store import rows


class Listener:
    name = "listener"

    def __init__(self) -> None:
        self.scores: list[Score] = []

    @hookimpl
    def feedback_recorded(self, score: Score) -> None:
        self.scores.append(score)


def make_trace(url: str, tmp_path: Path) -> str:
    obs = Observer(url, strict=True, entry_points=False, builtins=(), spill_path=tmp_path / "spill")
    try:
        with obs.span("chat") as span:
            span.outputs = "hi"
        assert obs.flush(5)
    finally:
        obs.shutdown()
    return span.trace_id


def test_api_feedback_is_stored_and_announced(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'f.db'}"
    trace_id = make_trace(url, tmp_path)
    listener = Listener()
    obs = Observer(url, strict=True, entry_points=False, builtins=[("feedback", "plugins.feedback")],
                   plugins=[listener], spill_path=tmp_path / "spill")
    try:
        obs.feedback(trace_id, thumbs=1, comment="great")
        obs.feedback(trace_id, rating=2, user_id="u7")
        with pytest.raises(ValueError):
            obs.feedback(trace_id, rating=9)
        assert obs.flush(5)
    finally:
        obs.shutdown()
    stored = {r["name"]: r for r in rows(url, "scores")}
    assert stored["thumbs"]["source"] == "feedback" and stored["thumbs"]["value"] == 1.0
    assert stored["thumbs"]["comment"] == "great" and stored["thumbs"]["trace_id"] == trace_id
    assert stored["rating"]["value"] == 2.0 and stored["rating"]["passed"] == 0
    assert [s.name for s in listener.scores] == ["thumbs", "rating"]
    assert all(s.source == "feedback" for s in listener.scores)


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # spill file and default config resolve here
    monkeypatch.delenv("CHAINSIGHT_CONFIG", raising=False)
    monkeypatch.delenv("CHAINSIGHT_STORAGE_URL", raising=False)
    return tmp_path


def test_cli_feedback_up_rating_and_json(cli_env: Path, capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{cli_env / 'cli.db'}"
    trace_id = make_trace(url, cli_env)
    # feedback_recorded fires in the CLI's observer too (plugins from entry points)
    listener = Listener()
    import framework.observer as observer_module

    real = observer_module.Observer

    def with_listener(*args: Any, **kwargs: Any) -> Observer:
        kwargs["plugins"] = [*kwargs.get("plugins", ()), listener]
        return real(*args, **kwargs)

    monkeypatch.setattr(observer_module, "Observer", with_listener)
    assert main(["feedback", trace_id, "--up", "--comment", "nice", "--db", url]) == 0
    assert f"recorded thumbs up on trace {trace_id}" in capsys.readouterr().out
    assert main(["feedback", trace_id[:10], "--rating", "4", "--json", "--db", url]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["recorded"][0]["name"] == "rating" and doc["recorded"][0]["value"] == 4.0
    assert main(["feedback", trace_id, "--down", "--db", url]) == 0
    capsys.readouterr()
    stored = sorted((r["name"], r["value"], r["source"]) for r in rows(url, "scores"))
    assert stored == [("rating", 4.0, "feedback"), ("thumbs", -1.0, "feedback"), ("thumbs", 1.0, "feedback")]
    assert [s.name for s in listener.scores] == ["thumbs", "rating", "thumbs"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rating", "7"], "--rating must be from 1 to 5"),
        ([], "give --up, --down, --rating N or --comment TEXT"),
        (["--up", "--trace-missing"], None),
    ],
)
def test_cli_feedback_bad_input(cli_env: Path, capsys: pytest.CaptureFixture[str],
                                args: list[str], message: str | None) -> None:
    url = f"sqlite:///{cli_env / 'bad.db'}"
    trace_id = make_trace(url, cli_env)
    if message is None:  # argparse rejects unknown flags with exit 2
        with pytest.raises(SystemExit) as exc:
            main(["feedback", trace_id, *args, "--db", url])
        assert exc.value.code != 0
        return
    assert main(["feedback", trace_id, *args, "--db", url]) != 0
    assert message in capsys.readouterr().err
    assert rows(url, "scores") == []


def test_cli_feedback_unknown_trace_and_both_thumbs(cli_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{cli_env / 'u.db'}"
    make_trace(url, cli_env)
    assert main(["feedback", "feedbeef" * 4, "--up", "--db", url]) == 1
    assert "no trace 'feedbeeffeedbeeffeedbeeffeedbeef'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["feedback", "x", "--up", "--down", "--db", url])
    assert exc.value.code == 2
