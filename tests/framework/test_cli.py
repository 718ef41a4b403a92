"""The ``chainsight`` CLI: run in-process through ``main([...])``, plus one real subprocess."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from chainsight.framework import cli
from chainsight.framework.cli import main
from chainsight.framework.cli_render import (
    Column,
    clean,
    fmt_cost,
    fmt_seconds,
    print_table,
    tree_order,
)
from chainsight.framework.commands import CommandError, parse_duration, parse_time
from chainsight.framework.model import Score, Span

REPO = Path(__file__).resolve().parents[2]

BAD_TOML = """\
[storage]
url = 5

[pipeline]
batch_size = "big"
queue_sise = 10

[plugins.pricng]
x = 1

[plugins.redaction]
no_such_option = true

[exporters]
"""
BAD_PROBLEMS = [
    ":2: storage.url: expected string, got integer 5",
    ":5: pipeline.batch_size: expected integer, got string 'big'",
    ":6: pipeline.queue_sise: unknown key",
    ":8: plugins.pricng: unknown plugin; installed: ",
    ":12: plugins.redaction.no_such_option: unknown key",
    ":14: exporters: unknown section",
]


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CHAINSIGHT_CONFIG", raising=False)
    monkeypatch.delenv("CHAINSIGHT_STORAGE_URL", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# ---- parser and errors ----------------------------------------------------------


def test_help_lists_builtin_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for name in ("traces", "show", "plugins", "config", "db"):
        assert name in out


def test_no_command_prints_usage(capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = run(capsys)
    assert code == 2
    assert "usage: chainsight" in err


def test_command_group_without_subcommand_prints_its_usage(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "db")
    assert code == 2
    assert "usage: chainsight db" in err and "upgrade" in err


def test_value_parsers() -> None:
    assert parse_duration("500ms") == 0.5
    assert parse_duration("2s") == 2
    assert parse_duration("1.5") == 1.5
    assert parse_duration("30m") == 1800
    assert parse_time("2h", now_ns=10_000 * 10**9) == (10_000 - 7200) * 10**9
    assert parse_time("2025-01-31T12:00:00+00:00") == 1738324800 * 10**9
    with pytest.raises(CommandError, match="not a duration"):
        parse_duration("soon")
    with pytest.raises(CommandError, match="not a time"):
        parse_time("yesterday")


def test_unexpected_error_is_one_line_without_traceback(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(ns: Any) -> int:
        raise RuntimeError("disk on fire\nsecond line")

    monkeypatch.setattr(cli, "cmd_plugins", boom)
    code, _out, err = run(capsys, "plugins")
    assert code == 1
    assert err == "chainsight: error: disk on fire (run with --debug for the traceback)\n"
    with pytest.raises(RuntimeError, match="disk on fire"):
        main(["plugins", "--debug"])


# ---- config check ----------------------------------------------------------------------


def test_config_check_ok_on_the_repository_default(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "config", "check", "--config", str(REPO / "plugins.toml"))
    assert code == 0, err
    assert out.startswith(f"OK: {REPO / 'plugins.toml'}, ")
    assert "plugins configured" in out


def test_config_check_without_a_file_uses_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "config", "check")
    assert code == 0
    assert out.startswith("OK: built-in defaults, ")


def test_config_check_lists_every_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(BAD_TOML)
    code, out, err = run(capsys, "--config", str(bad), "config", "check")
    assert code == 2
    assert out == ""
    for expected in BAD_PROBLEMS:
        assert f"{bad}{expected}" in err, expected
    assert "did you mean 'pricing'" in err
    assert "Traceback" not in err


def test_config_check_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(BAD_TOML)
    code, out, _ = run(capsys, "config", "check", "--config", str(bad), "--json")
    assert code == 2
    doc = json.loads(out)
    assert doc["ok"] is False
    assert doc["file"] == str(bad)
    paths = {p["path"]: p["line"] for p in doc["problems"]}
    assert paths["pipeline.batch_size"] == 5
    assert paths["plugins.pricng"] == 8
    assert len(doc["problems"]) == len(BAD_PROBLEMS)


def test_config_check_syntax_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[pipeline]\nbatch_size = = 3\n")
    code, _, err = run(capsys, "config", "check", "--config", str(bad))
    assert code == 2
    assert f"{bad}:2: invalid TOML: " in err


def test_missing_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "--config", str(tmp_path / "nope.toml"), "plugins")
    assert code == 2
    assert f"{tmp_path / 'nope.toml'}: configuration file not found" in err


def test_other_commands_refuse_a_bad_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[pipeline]\nbatch_size = 'x'\n")
    code, out, err = run(capsys, "traces", "--config", str(bad))
    assert code == 2
    assert "pipeline.batch_size: expected integer" in err
    assert out == ""


def test_config_check_subprocess_exit_code_and_no_traceback(tmp_path: Path) -> None:
    """The real console script (or `python -m framework.cli` when not installed)."""
    bad = tmp_path / "bad.toml"
    bad.write_text(BAD_TOML)
    script = Path(sys.executable).parent / "chainsight"
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "chainsight.framework.cli"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("CHAINSIGHT_CONFIG", None)
    proc = subprocess.run(
        [*cmd, "config", "check", "--config", str(bad)],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    for expected in BAD_PROBLEMS:
        assert f"{bad}{expected}" in proc.stderr, expected
    assert "Traceback" not in proc.stdout + proc.stderr


# ---- plugins -------------------------------------------------------------------------------


def test_plugins_lists_builtins(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "plugins", "--json")
    assert code == 0
    doc = json.loads(out)
    names = {p["name"] for p in doc}
    assert "redaction" in names and "pricing" in names
    for p in doc:
        assert set(p) == {"name", "version", "source", "hooks", "status", "error", "problems",
                          "runtime"}
        assert p["problems"] == []  # litellm's map or the shipped snapshot prices everything
    assert not (Path.cwd() / "chainsight.db").exists()  # listing plugins never creates a store
    code, out, _ = run(capsys, "plugins")
    assert code == 0
    assert out.splitlines()[0].split() == ["NAME", "VERSION", "SOURCE", "HOOKS", "STATUS"]


def test_plugins_shows_disabled(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conf = tmp_path / "c.toml"
    conf.write_text("[plugins.pricing]\nenabled = false\n")
    code, out, _ = run(capsys, "plugins", "--json", "--config", str(conf))
    assert code == 0
    status = {p["name"]: p["status"] for p in json.loads(out)}
    assert status["pricing"] == "disabled"


def test_plugins_shows_degraded_status_recorded_by_an_observer(
    sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from chainsight.framework.dispatch import PluginHealth
    from chainsight.storage.writer import StoreWriter

    writer = StoreWriter(sqlite_url)
    writer.write_plugin_health([
        PluginHealth("pricing", calls=9, failures=5, consecutive=5, degraded=True, last_error="boom"),
        PluginHealth("hand_made", calls=3),
    ])
    writer.close()
    code, out, _ = run(capsys, "plugins", "--db", sqlite_url, "--json")
    assert code == 0
    info = {p["name"]: p for p in json.loads(out)}
    assert info["pricing"]["status"] == "degraded"
    assert info["pricing"]["error"] == "boom"
    assert info["pricing"]["runtime"]["failures"] == 5
    assert info["hand_made"]["status"] == "active"
    assert info["hand_made"]["source"] == "observer (from the store)"
    assert info["redaction"]["runtime"] is None
    code, out, _ = run(capsys, "plugins", "--db", sqlite_url)
    assert "degraded: boom" in out


# ---- register_commands -----------------------------------------------------------------

PLUGIN_SOURCE = '''
import json
from chainsight.framework import hookimpl

@hookimpl
def register_commands(cli):
    def configure(parser):
        parser.add_argument("who")
        parser.add_argument("--shout", action="store_true")

    def run(ns):
        text = f"hello {ns.who}" + ("!" if ns.shout else "")
        if ns.json:
            print(json.dumps({"text": text, "db": ns.db}))
        else:
            print(text, "db=" + ns.db)
        return 3

    cli.add("hello", "say hello", configure, run)
    cli.add("traces", "clashes with a built-in", lambda p: None, run)
    cli.add("hello", "clashes with itself", lambda p: None, run)
    cli.add("bad-args", "configure raises", lambda p: p.add_argument("--db"), run)


@hookimpl
def setup_problems(config):
    return [f"the hello service is not reachable (config {config!r})"]
'''

RAISING_SOURCE = '''
from chainsight.framework import hookimpl

@hookimpl
def register_commands(cli):
    raise RuntimeError("cannot register")


@hookimpl
def setup_problems():
    raise RuntimeError("cannot tell")
'''


@pytest.fixture
def command_plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two plugins installed through real `chainsight.plugins` entry points."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "cs_hello.py").write_text(PLUGIN_SOURCE)
    (site / "cs_raises.py").write_text(RAISING_SOURCE)
    dist = site / "cs_test_plugins-1.2.3.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: cs-test-plugins\nVersion: 1.2.3\n")
    (dist / "entry_points.txt").write_text(
        "[chainsight.plugins]\nhello = cs_hello\nraises = cs_raises\n"
    )
    monkeypatch.syspath_prepend(str(site))


@pytest.mark.usefixtures("command_plugins")
def test_register_commands_from_a_plugin(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "hello", "world", "--shout", "--db", "sqlite:///x.db")
    assert code == 3
    assert out == "hello world! db=sqlite:///x.db\n"
    assert "plugin 'hello': command 'traces' is already taken by a built-in command; ignored" in err
    assert "plugin 'hello': command 'hello' is already taken by plugin 'hello'; ignored" in err
    assert "plugin 'hello': command 'bad-args' not added: " in err
    assert "plugin 'raises': register_commands failed: cannot register" in err

    # --json is added by the host; --db defaults to the configured store
    code, out, _ = run(capsys, "hello", "you", "--json")
    assert code == 3
    assert json.loads(out) == {"text": "hello you", "db": "sqlite:///chainsight.db"}

    # the plugin shows up with its distribution and hooks
    code, out, _ = run(capsys, "plugins", "--json")
    info = {p["name"]: p for p in json.loads(out)}
    assert info["hello"]["hooks"] == ["register_commands", "setup_problems"]
    assert "cs-test-plugins" in info["hello"]["source"]

    # setup_problems: each plugin answers with its own configuration; one that
    # raises is reported, the others still answer
    assert info["hello"]["problems"] == ["the hello service is not reachable (config {})"]
    assert info["raises"]["problems"] == ["setup_problems failed: cannot tell"]
    assert info["redaction"]["problems"] == []
    code, out, _ = run(capsys, "plugins")
    hello_row = next(line for line in out.splitlines() if line.startswith("hello "))
    assert hello_row.rstrip().endswith("active: the hello service is not reachable (config {})")
    code, out, err = run(capsys, "config", "check")
    assert code == 0
    assert "warning: plugin 'hello': the hello service is not reachable" in err
    assert "warning: plugin 'raises': setup_problems failed: cannot tell" in err
    assert "(2 warnings above)" in out

    # the built-in `traces` command was not replaced
    with pytest.raises(SystemExit):
        main(["hello", "--help"])
    assert "say hello" in capsys.readouterr().out


TYPO_SOURCE = '''
from chainsight.framework import hookimpl

@hookimpl
def trace_finish(root, spans):
    return None

@hookimpl
def process_span(span):
    return None
'''


def test_plugins_shows_a_misspelled_hook(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "cs_typo.py").write_text(TYPO_SOURCE)
    dist = site / "cs_typo-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: cs-typo\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[chainsight.plugins]\ntypo = cs_typo\n")
    monkeypatch.syspath_prepend(str(site))

    code, out, err = run(capsys, "plugins", "--json")
    assert code == 0
    info = {p["name"]: p for p in json.loads(out)}["typo"]
    assert info["hooks"] == ["process_span"]
    assert info["problems"] == ["unknown hook 'trace_finish' (did you mean 'trace_finished'?), not used"]
    code, out, err = run(capsys, "plugins")
    row = next(line for line in out.splitlines() if line.startswith("typo "))
    assert row.rstrip().endswith("active: unknown hook 'trace_finish' (did you mean 'trace_finished'?), not used")
    code, out, err = run(capsys, "config", "check")
    assert code == 0
    assert "warning: plugin 'typo': unknown hook 'trace_finish'" in err


# ---- rendering -----------------------------------------------------------------------------


def test_formats() -> None:
    assert fmt_cost(None) == "—"
    assert fmt_cost(0.0) == "$0.00"
    assert fmt_cost(0.000123) == "$0.000123"
    assert fmt_cost(0.0123) == "$0.0123"
    assert fmt_cost(12.5) == "$12.50"
    assert fmt_seconds(None) == "—"
    assert fmt_seconds(0.25) == "250ms"
    assert fmt_seconds(2.5) == "2.50s"
    assert fmt_seconds(125) == "2m05s"
    assert clean("a\nb\x1b[31mc") == "a b [31mc"


def test_rich_output_never_interprets_stored_text_as_markup() -> None:
    buf = io.StringIO()
    nasty = ["[bold]x[/]", "[@click=app.quit]", "[/unclosed", "ok"]
    print_table([Column("a"), Column("b"), Column("c"), Column("status")], [nasty], out=buf, rich=True)
    text = buf.getvalue()
    for cell in ("[bold]x[/]", "[@click=app.quit]", "[/unclosed"):
        assert cell in text


def test_tree_order_nests_children_under_parents() -> None:
    root = Span("root", span_id="r", trace_id="t", start_ns=1)
    a = Span("a", span_id="a", trace_id="t", parent_id="r", start_ns=2)
    b = Span("b", span_id="b", trace_id="t", parent_id="r", start_ns=3)
    a1 = Span("a1", span_id="a1", trace_id="t", parent_id="a", start_ns=4)
    orphan = Span("orphan", span_id="o", trace_id="t", parent_id="missing", start_ns=5)
    order = [(guide + s.name) for guide, s in tree_order([b, a1, orphan, a, root])]
    assert order == ["root", "├─ a", "│  └─ a1", "└─ b", "orphan"]


# ---- traces and show on a real SQLite file ------------------------------------------------


def _record_traces(url: str) -> tuple[str, str]:
    pytest.importorskip("chainsight.storage.query")
    from chainsight.storage.writer import StoreWriter, WriteBatch

    now = time.time_ns()
    t1, t2 = "a1" * 16, "a1b2" * 8  # share the prefix "a1"
    root = Span("agent [bold]run", "chain", span_id="1" * 16, trace_id=t1, start_ns=now - 3 * 10**9)
    root.end_ns, root.status, root.user_id = now, "error", "u-42"
    llm = Span("ChatModel", "llm", span_id="2" * 16, trace_id=t1, parent_id=root.span_id,
               start_ns=now - 2 * 10**9)
    llm.end_ns, llm.status = now - 10**9, "ok"
    llm.first_token_ns = now - int(1.5 * 10**9)
    llm.model, llm.input_tokens, llm.output_tokens = "local-llm", 100, 11  # unpriced
    tool = Span("search", "tool", span_id="3" * 16, trace_id=t1, parent_id=llm.span_id,
                start_ns=now - int(1.8 * 10**9))
    tool.end_ns, tool.status, tool.error, tool.error_type = now - int(1.7 * 10**9), "error", "timed out", "TimeoutError"

    other = Span("quick", "llm", span_id="4" * 16, trace_id=t2, start_ns=now - 10 * 10**9)
    other.end_ns, other.status, other.model = now - 9 * 10**9, "ok", "gpt-4o-mini"
    other.input_tokens, other.output_tokens, other.cost_usd = 10, 20, 0.00042

    score = Score("refusal", "check", trace_id=t1, span_id=llm.span_id, value=0.0, passed=True,
                  comment="no refusal")
    writer = StoreWriter(url)
    try:
        writer.write(WriteBatch(spans=[root, llm, tool, other], scores=[score]))
    finally:
        writer.close()
    return t1, t2


def test_traces_and_show(store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """On a real SQLite file (and PostgreSQL where the tests have a server)."""
    url = store_url
    t1, t2 = _record_traces(url)

    code, out, err = run(capsys, "traces", "--db", url)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["TIME", "TRACE", "NAME", "STATUS"]
    assert t1[:8] in lines[1] and "agent [bold]run" in lines[1]  # newest first, literal text
    assert "—" in lines[1]  # unpriced: a dash, never $0
    assert "$0.00042" in lines[2]

    code, out, _ = run(capsys, "traces", "--db", url, "--json")
    doc = json.loads(out)
    assert [t["trace_id"] for t in doc["items"]] == [t1, t2]
    assert doc["items"][0]["cost_usd"] is None

    code, out, _ = run(capsys, "traces", "--db", url, "--status", "error", "--json")
    assert [t["trace_id"] for t in json.loads(out)["items"]] == [t1]
    code, out, _ = run(capsys, "traces", "status:ok", "--db", url, "--json")
    assert [t["trace_id"] for t in json.loads(out)["items"]] == [t2]
    code, out, _ = run(capsys, "traces", "--db", url, "--min-latency", "2s", "--json")
    assert [t["trace_id"] for t in json.loads(out)["items"]] == [t1]

    code, out, _ = run(capsys, "traces", "--db", url, "--limit", "1", "--json")
    first = json.loads(out)
    assert len(first["items"]) == 1 and first["next_cursor"]
    code, out, _ = run(capsys, "traces", "--db", url, "--limit", "1", "--cursor", first["next_cursor"], "--json")
    assert [t["trace_id"] for t in json.loads(out)["items"]] == [t2]

    code, out, err = run(capsys, "show", t1[:10], "--db", url)
    assert code == 0, err
    assert f"trace {t1}" in out
    assert "├─" in out or "└─" in out
    assert "ChatModel" in out and "search" in out
    assert "TimeoutError: timed out" in out
    assert "refusal" in out and "no refusal" in out
    tree = next(line for line in out.splitlines() if "search" in line)
    assert tree.index("search") > next(line for line in out.splitlines() if "ChatModel" in line).index("ChatModel")

    code, out, _ = run(capsys, "show", t1, "--db", url, "--json")
    doc = json.loads(out)
    assert doc["trace"]["trace_id"] == t1
    assert {s["name"] for s in doc["spans"]} == {"agent [bold]run", "ChatModel", "search"}
    assert doc["scores"][0]["name"] == "refusal"

    code, _, err = run(capsys, "show", "ffff", "--db", url)
    assert code == 1
    assert err.startswith("chainsight: error: no trace matches 'ffff'")
    code, _, err = run(capsys, "show", "a1", "--db", url)
    assert code == 1
    assert err.startswith("chainsight: error: 'a1' matches several traces (")
    assert "give more of the id" in err


def test_invalid_filter_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("chainsight.storage.filters")
    code, _, err = run(capsys, "traces", "latency>>>", "--db", f"sqlite:///{tmp_path / 'x.db'}")
    assert code == 1
    assert err.startswith("chainsight: error: invalid filter 'latency>>>'")


def test_db_upgrade(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}"
    code, out, err = run(capsys, "db", "upgrade", "--db", url)
    assert code == 0, err
    assert out.startswith(f"{url}: at revision ")
    code, out, _ = run(capsys, "db", "upgrade", "--db", url, "--json")
    assert json.loads(out)["revision"]


def test_unreachable_store_is_a_clean_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("chainsight.storage.query")
    (tmp_path / "a-file").write_text("")
    url = f"sqlite:///{tmp_path / 'a-file' / 'x.db'}"  # a parent that is a file
    code, _, err = run(capsys, "traces", "--db", url)
    assert code == 1
    assert err.startswith("chainsight: error: ")
    assert "Traceback" not in err
