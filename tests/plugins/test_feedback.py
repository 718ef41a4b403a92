"""Feedback through the API and the CLI: stored as scores with
source=feedback, and feedback_recorded fires."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from chainsight.framework import hookimpl
from chainsight.framework.cli import main
from chainsight.framework.model import Score
from chainsight.framework.observer import Observer
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
    obs = Observer(url, strict=True, entry_points=False, builtins=[("feedback", "chainsight.plugins.feedback")],
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
    import chainsight.framework.observer as observer_module

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
    assert "no trace matches 'feedbeeffeedbeeffeedbeeffeedbeef'" in capsys.readouterr().err
    assert rows(url, "scores") == []
    with pytest.raises(SystemExit) as exc:
        main(["feedback", "x", "--up", "--down", "--db", url])
    assert exc.value.code == 2


# ---- short ids: what `chainsight traces` shows is enough, and stored in full ------


def make_traces(url: str, tmp_path: Path, count: int) -> list[tuple[str, str]]:
    """``count`` traces of a root and one child span: [(trace_id, child span_id)]."""
    obs = Observer(url, strict=True, entry_points=False, builtins=(), spill_path=tmp_path / "spill")
    made = []
    try:
        for i in range(count):
            with obs.span(f"chat-{i}") as root, obs.span("model", kind="llm") as child:
                child.outputs = "hi"
            made.append((root.trace_id, child.span_id))
        assert obs.flush(5)
    finally:
        obs.shutdown()
    return made


def test_cli_feedback_resolves_a_short_id_to_the_full_trace_id(
    cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from chainsight.framework.cli_render import short_id

    url = f"sqlite:///{cli_env / 'short.db'}"
    (first, first_span), (second, _) = make_traces(url, cli_env, 2)
    assert main(["feedback", short_id(first), "--up", "--db", url]) == 0
    assert f"recorded thumbs up on trace {first}" in capsys.readouterr().out
    assert main(["feedback", second[:20], "--rating", "5", "--span", short_id(first_span),
                 "--db", url]) == 1  # that span belongs to the other trace
    assert "no span of trace" in capsys.readouterr().err
    assert main(["feedback", short_id(first), "--down", "--span", short_id(first_span),
                 "--db", url]) == 0
    capsys.readouterr()
    stored = sorted((r["value"], r["trace_id"], r["span_id"]) for r in rows(url, "scores"))
    assert stored == [(-1.0, first, first_span), (1.0, first, None)]

    # and `show` (which resolves the same way) displays it
    assert main(["show", short_id(first), "--json", "--db", url]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["trace"]["trace_id"] == first
    assert sorted(s["value"] for s in doc["scores"]) == [-1.0, 1.0]


def test_cli_feedback_refuses_unknown_and_ambiguous_ids(
    cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{cli_env / 'amb.db'}"
    (first, _), (second, _) = make_traces(url, cli_env, 2)
    common = next(i for i, (a, b) in enumerate(zip(first, second, strict=True)) if a != b)
    assert common >= 2  # ids begin with the clock: two traces a moment apart share a start
    assert main(["feedback", first[:common], "--up", "--db", url]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"chainsight: error: {first[:common]!r} matches several traces (")
    assert main(["feedback", "0123456789", "--up", "--db", url]) == 1
    assert "no trace matches '0123456789'" in capsys.readouterr().err
    assert rows(url, "scores") == []


def test_cli_feedback_on_a_missing_store_creates_nothing(
    cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = cli_env / "nope" / "x.db"
    assert main(["feedback", "abc", "--up", "--db", f"sqlite:///{path}"]) == 1
    assert capsys.readouterr().err.startswith("chainsight: error: no Chainsight store at ")
    assert not path.parent.exists()
