"""``chainsight.framework.commands``, the public API for plugin commands, used
the way a third-party plugin uses it: installed through a real entry point,
run through the real CLI against a real SQLite store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chainsight.framework.cli import main
from chainsight.framework.cli_render import short_id
from chainsight.framework.observer import Observer

PLUGIN_SOURCE = '''
from chainsight import hookimpl
from chainsight.framework.commands import (
    Column, CommandError, fmt_time, open_store, parse_time, print_json, print_table,
    resolve_span, resolve_trace)


def configure(parser):
    parser.add_argument("trace_id")
    parser.add_argument("--span")
    parser.add_argument("--since", default="1h")
    parser.add_argument("--fail", action="store_true")


def run(ns):
    if ns.fail:
        raise CommandError("lookup refused on purpose", exit_status=3)
    since_ns = parse_time(ns.since)
    with open_store(ns.db) as store:
        trace_id = resolve_trace(store, ns.trace_id)
        span_id = resolve_span(store, trace_id, ns.span) if ns.span else None
        detail = store.get_trace(trace_id)
    recent = detail.trace.start_ns >= since_ns
    if ns.json:
        print_json({"trace_id": trace_id, "span_id": span_id, "name": detail.trace.name,
                    "recent": recent})
    else:
        print_table([Column("trace"), Column("name"), Column("start")],
                    [[trace_id, detail.trace.name, fmt_time(detail.trace.start_ns)]])
    return 0


@hookimpl
def register_commands(cli):
    cli.add("lookup", "find a trace by its short id", configure, run)
'''


@pytest.fixture
def lookup_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CHAINSIGHT_CONFIG", raising=False)
    monkeypatch.delenv("CHAINSIGHT_STORAGE_URL", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    site = tmp_path / "site"
    site.mkdir()
    (site / "cs_lookup.py").write_text(PLUGIN_SOURCE)
    dist = site / "cs_lookup-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: cs-lookup\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[chainsight.plugins]\nlookup = cs_lookup\n")
    monkeypatch.syspath_prepend(str(site))


def _recorded(url: str, tmp_path: Path) -> tuple[str, str]:
    obs = Observer(url, builtins=(), entry_points=False, strict=True, spill_path=tmp_path / "spill.jsonl")
    try:
        with obs.span("[bold]answer", kind="chain") as root, obs.span("child", kind="llm") as child:
            pass
        assert obs.flush(timeout=10)
    finally:
        obs.shutdown(timeout=5)
    return root.trace_id, child.span_id


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.usefixtures("lookup_plugin")
def test_a_plugin_command_uses_the_public_api(sqlite_url: str, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    trace_id, span_id = _recorded(sqlite_url, tmp_path)

    code, out, err = run(capsys, "lookup", short_id(trace_id), "--span", span_id[-8:], "--json",
                         "--db", sqlite_url)
    assert (code, err) == (0, "")
    assert json.loads(out) == {"trace_id": trace_id, "span_id": span_id, "name": "[bold]answer",
                               "recent": True}

    code, out, err = run(capsys, "lookup", short_id(trace_id), "--db", sqlite_url)
    assert (code, err) == (0, "")
    header, row = out.splitlines()
    assert header.split() == ["TRACE", "NAME", "START"]
    assert row.split()[:2] == [trace_id, "[bold]answer"]  # printed literally, not as markup


@pytest.mark.usefixtures("lookup_plugin")
@pytest.mark.parametrize(("argv", "status", "message"), [
    (["nomatch"], 1, "chainsight: error: no trace matches 'nomatch' in sqlite:///"),
    (["TRACE", "--span", "nomatch"], 1, "chainsight: error: no span of trace TRACE matches 'nomatch'"),
    (["TRACE", "--since", "yesterday"], 1, "chainsight: error: not a time: 'yesterday'"),
    (["TRACE", "--fail"], 3, "chainsight: error: lookup refused on purpose"),
])
def test_a_plugin_command_error_is_one_line_and_its_status(
        sqlite_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        argv: list[str], status: int, message: str) -> None:
    trace_id, _ = _recorded(sqlite_url, tmp_path)
    argv = [a.replace("TRACE", trace_id) for a in argv]
    code, out, err = run(capsys, "lookup", *argv, "--db", sqlite_url)
    assert (code, out) == (status, "")
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith(message.replace("TRACE", trace_id)), err


@pytest.mark.usefixtures("lookup_plugin")
def test_open_store_never_creates_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nowhere.db"
    code, out, err = run(capsys, "lookup", "abc", "--db", f"sqlite:///{missing}")
    assert (code, out) == (1, "")
    assert err.startswith("chainsight: error: ") and len(err.splitlines()) == 1
    assert str(missing) in err
    assert not missing.exists()
