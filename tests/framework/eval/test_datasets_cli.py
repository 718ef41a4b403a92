"""chainsight dataset create|list|show|export: JSONL, CSV and stored traces in; JSONL and CSV out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from chainsight.framework.cli import main
from chainsight.framework.eval.datasets import DatasetFileError, read_items
from chainsight.framework.observer import Observer


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = main(list(args))
    out, err = capsys.readouterr()
    return status, out, err


def test_jsonl_versions_show_and_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'd.db'}"
    data = tmp_path / "qa.jsonl"
    data.write_text('{"input": {"q": "2+2"}, "expected": "4", "metadata": {"level": 1}}\n\n'
                    '{"question": "[bold]capital?", "expected_output": "Paris"}\n', encoding="utf-8")
    status, out, _ = run(capsys, "dataset", "create", "qa", "--from", str(data), "--db", url)
    assert status == 0 and out.startswith("dataset qa@") and "2 items, stored" in out
    status, out, _ = run(capsys, "dataset", "create", "qa", "--from", str(data), "--db", url)
    assert "unchanged" in out
    data.write_text('{"input": "3*3", "expected": 9}\n', encoding="utf-8")
    run(capsys, "dataset", "create", "qa", "--from", str(data), "--db", url)
    status, out, _ = run(capsys, "dataset", "list", "--db", url, "--json")
    versions = json.loads(out)
    assert [(d["name"], d["items"]) for d in versions] == [("qa", 1), ("qa", 2)]
    old = versions[1]["version"]

    status, out, _ = run(capsys, "dataset", "show", f"qa@{old}", "--db", url, "--json")
    shown = json.loads(out)
    assert [(i["input"], i["expected"], i["metadata"]) for i in shown["items"]] == [
        ({"q": "2+2"}, "4", {"level": 1}), ({"question": "[bold]capital?"}, "Paris", {})]
    status, out, _ = run(capsys, "dataset", "show", f"qa@{old}", "--db", url)
    assert "[bold]capital?" in out  # stored text printed as it is, never as markup

    exported = tmp_path / "out.jsonl"
    assert run(capsys, "dataset", "export", f"qa@{old}", "--db", url, "-o", str(exported))[0] == 0
    assert [(i.input, i.expected, i.metadata) for i in read_items(exported)] == [
        ({"q": "2+2"}, "4", {"level": 1}), ({"question": "[bold]capital?"}, "Paris", {})]
    status, out, _ = run(capsys, "dataset", "export", "qa", "--db", url, "--format", "csv")
    assert out.splitlines() == ["input,expected", "3*3,9"]


def test_csv_in(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'd.db'}"
    data = tmp_path / "qa.csv"
    data.write_text('input,expected,topic,extra\n"{""q"": 1}",one,math,\nhello,,greeting,"[1, 2]"\n',
                    encoding="utf-8")
    assert run(capsys, "dataset", "create", "csvqa", "--from", str(data), "--db", url)[0] == 0
    _status, out, _ = run(capsys, "dataset", "show", "csvqa", "--db", url, "--json")
    assert [(i["input"], i["expected"], i["metadata"]) for i in json.loads(out)["items"]] == [
        ({"q": 1}, "one", {"topic": "math"}), ("hello", None, {"topic": "greeting", "extra": [1, 2]})]


def test_from_traces(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'd.db'}"
    with Observer(url, builtins=(), entry_points=False, strict=True) as obs:
        for i in range(3):
            with obs.span("qa" if i < 2 else "other", inputs={"q": i}) as span:
                span.outputs = f"answer {i}"
        assert obs.flush(10)
    status, out, err = run(capsys, "dataset", "create", "golden", "--from-traces", "name:qa", "--db", url,
                           "--json")
    assert status == 0, err
    assert json.loads(out)["items"] == 2
    status, out, _ = run(capsys, "dataset", "show", "golden", "--db", url, "--json")
    items: list[dict[str, Any]] = json.loads(out)["items"]
    assert [(i["input"], i["expected"]) for i in items] == [({"q": 0}, "answer 0"), ({"q": 1}, "answer 1")]
    assert all(len(i["metadata"]["trace_id"]) == 32 for i in items)


def test_errors_name_the_file_line_and_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'd.db'}"
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"input": 1}\n{oops\n', encoding="utf-8")
    status, _, err = run(capsys, "dataset", "create", "x", "--from", str(bad), "--db", url)
    assert status == 1 and f"{bad}:2: invalid JSON" in err
    with pytest.raises(DatasetFileError, match="needs an 'input' column"):
        (tmp_path / "c.csv").write_text("question\nx\n", encoding="utf-8")
        read_items(tmp_path / "c.csv")
    status, _, err = run(capsys, "dataset", "show", "nope", "--db", url)
    assert status == 1 and "no Chainsight store at" in err  # a reader never creates one
    assert run(capsys, "db", "upgrade", "--db", url)[0] == 0
    status, _, err = run(capsys, "dataset", "show", "nope", "--db", url)
    assert status == 1 and "no dataset 'nope'" in err
    status, _, err = run(capsys, "eval", "compare", "a", "b", "--db", url)
    assert status == 1 and "no experiment 'a'" in err
    status, _, err = run(capsys, "eval", "run", "nope", "--target", "x:y", "--db", url, "--no-progress")
    assert status == 1 and "cannot import 'x'" in err
    status, _, err = run(capsys, "eval", "run", "nope", "--target", "x:y", "--db", url,
                         "--max-regression", "exact_match=0.1")
    assert status == 1 and "--max-regression needs --baseline" in err
    status, _, err = run(capsys, "eval", "run", "nope", "--target", "x:y", "--db", url, "--fail-under", "x")
    assert status == 1 and "--fail-under 'x': use SCORE=NUMBER" in err
    status, _, err = run(capsys, "eval", "list", "--db", url)
    assert status == 0 and "no experiments" in err


def test_the_progress_bar_shows_items_and_an_eta_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from chainsight.framework.eval.cli import _Bar

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    bar = _Bar(True)
    for done in range(4):
        bar(done, 3)
    bar.stop()
    text = terminal.getvalue()
    assert "3/3" in text and "ETA" in text
    quiet = Terminal()
    monkeypatch.setattr("sys.stderr", quiet)
    off = _Bar(False)  # --no-progress
    off(1, 3)
    off.stop()
    assert quiet.getvalue() == ""
