"""``chainsight run``: the program's arguments, path, exit status, signals and
the report at exit. Real ``chainsight`` processes running small programs that
record spans by hand (no LangChain, so each run is quick); the LangChain /
LangGraph / litellm application is in test_zero_code_scripts.py."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from chainsight.framework.cli import main
from chainsight.framework.cli_run import (
    Program,
    ProgramError,
    absolute_sqlite_url,
    exit_status,
    parse_program,
    resolve,
)
from chainsight.storage.query import Store, TraceFilter

REPO = Path(__file__).resolve().parents[2]
CHAINSIGHT = Path(sys.executable).parent / "chainsight"


def _chainsight(tmp_path: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHAINSIGHT_")}
    env.update(XDG_CONFIG_HOME=str(tmp_path / "xdg"), PYTHONPATH=str(REPO), LANGSMITH_TRACING="false")
    cmd = [str(CHAINSIGHT)] if CHAINSIGHT.exists() else [sys.executable, "-m", "chainsight.framework.cli"]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=timeout)


def _write(path: Path, code: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(code))
    return path


def _trace_names(url: str) -> list[str]:
    store = Store(url, create=False)
    try:
        return sorted(t.name for t in store.list_traces(TraceFilter()).items)
    finally:
        store.close()


# ---- the command line ----------------------------------------------------------------


@pytest.mark.parametrize(("words", "program"), [
    (["--", "python", "app.py", "-v", "--db", "x"], Program(("-v", "--db", "x"), path="app.py")),
    (["python3.11", "app.py"], Program((), path="app.py")),
    ([sys.executable, "app.py"], Program((), path="app.py")),
    (["app.py", "a"], Program(("a",), path="app.py")),
    (["--", "python", "-m", "pkg.mod", "a", "-m"], Program(("a", "-m"), module="pkg.mod")),
    (["-mpkg", "a"], Program(("a",), module="pkg")),
])
def test_parse_program(words: list[str], program: Program) -> None:
    assert parse_program(words) == program


@pytest.mark.parametrize(("words", "message"), [
    ([], "no program to run"),
    (["--", "python"], "no program to run"),
    (["python", "-m"], "-m needs a module name"),
    (["python", "-u", "app.py"], "Python option '-u' cannot apply"),
    (["python", "-c", "print(1)"], "python -c is not supported: put the code in a file"),
    (["python", "-"], "standard input is not supported"),
])
def test_parse_program_refuses(words: list[str], message: str) -> None:
    with pytest.raises(ProgramError, match=message) as info:
        parse_program(words)
    assert info.value.status == 2


def test_resolve_says_what_is_missing_and_where(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ProgramError, match=f"can't open file '{tmp_path / 'nope.py'}'") as info:
        resolve(Program((), path="nope.py"))
    assert info.value.status == 2
    with pytest.raises(ProgramError, match=f"no module named 'no_such_mod_zc' .*searched from {tmp_path}") as info:
        resolve(Program((), module="no_such_mod_zc"))
    assert info.value.status == 1


def test_resolve_finds_a_python_console_script_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = _write(tmp_path / "bin" / "my-tool", f"#!{sys.executable}\nprint('tool')\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    _write(tmp_path / "bin" / "not-python", "#!/bin/sh\necho no\n").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.chdir(tmp_path)
    assert resolve(Program(("x",), path="my-tool")) == Program(("x",), path=str(script))
    with pytest.raises(ProgramError):
        resolve(Program((), path="not-python"))


def test_exit_status_is_pythons(capsys: pytest.CaptureFixture[str]) -> None:
    assert [exit_status(None), exit_status(0), exit_status(3)] == [0, 0, 3]
    assert exit_status("bad input") == 1
    assert capsys.readouterr().err == "bad input\n"


def test_relative_sqlite_paths_become_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert absolute_sqlite_url("sqlite:///runs.db") == f"sqlite:///{tmp_path / 'runs.db'}"
    for url in ("sqlite:////abs/runs.db", "sqlite://", "sqlite:///:memory:",
                "postgresql+psycopg://u:p@h/db"):
        assert absolute_sqlite_url(url) == url


def test_run_is_listed_and_a_missing_program_is_an_error(capsys: pytest.CaptureFixture[str],
                                                         tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "run a Python program with tracing on" in capsys.readouterr().out
    assert main(["run", "--db", f"sqlite:///{tmp_path / 'x.db'}"]) == 2
    assert "chainsight run: error: no program to run: chainsight run [--db URL] -- python app.py" \
        in capsys.readouterr().err
    assert not (tmp_path / "x.db").exists()


# ---- running programs --------------------------------------------------------------------

RECORDER = """
    import atexit, sys, threading, time
    from chainsight import get_observer

    def later():
        time.sleep(0.3)
        with get_observer().span("from-a-thread"):
            pass

    def at_exit():
        with get_observer().span("from-atexit"):
            pass

    with get_observer().span("main", kind="chain") as root:
        with get_observer().span("step", kind="tool"):
            pass
    try:
        with get_observer().span("failing"):
            with get_observer().span("inner"):
                raise ValueError("bad \\x1b[31mthing")
    except ValueError:
        pass
    atexit.register(at_exit)
    threading.Thread(target=later).start()
    print("argv", sys.argv[1:], flush=True)
    print("path0", sys.path[0], flush=True)
    sys.exit(int(sys.argv[1]))
"""


def test_a_script_runs_as_python_would_and_the_report_counts_everything(tmp_path: Path) -> None:
    script = _write(tmp_path / "app" / "recorder.py", RECORDER)
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    proc = _chainsight(tmp_path, "run", "--db", url, "--", "python", str(script), "4", "--db", "mine")
    assert proc.returncode == 4, proc.stderr
    assert f"argv ['4', '--db', 'mine']\npath0 {script.parent}\n" in proc.stdout
    err = proc.stderr
    # after the program's thread and atexit function: every trace is counted
    assert f"chainsight: python {script} exited with status 4 after" in err
    assert f"chainsight: 6 spans stored in {url}\n" in err
    assert _trace_names(url) == ["failing", "from-a-thread", "from-atexit", "main"]
    rows = err[err.index("COUNT"):].splitlines()
    assert rows[1].split()[:3] == ["traces", "4", "1"], rows
    assert "FAILED TRACE" in err and "ValueError: bad  [31mthing" in err  # no escape sequence
    assert "\x1b" not in err
    assert f"see them: chainsight traces --db {url} --since" in err


def test_a_module_runs_with_the_working_directory_first_on_the_path(tmp_path: Path) -> None:
    _write(tmp_path / "pkg" / "__init__.py", "")
    _write(tmp_path / "pkg" / "tool.py", """
        import os, sys
        print("argv0", sys.argv[0])
        print("path0", sys.path[0])
        print("env", os.environ["CHAINSIGHT_TRACING"], os.environ["CHAINSIGHT_STORAGE_URL"])
        sys.exit("the tool gave up")
    """)
    proc = _chainsight(tmp_path, "run", "--no-summary", "--db", "sqlite:///rel.db", "--",
                       "python", "-m", "pkg.tool", "x")
    assert proc.returncode == 1, proc.stderr
    assert f"argv0 {tmp_path / 'pkg' / 'tool.py'}\npath0 {tmp_path}\n" in proc.stdout
    # a child process that imports chainsight records into the same store, traced
    assert f"env true sqlite:///{tmp_path / 'rel.db'}\n" in proc.stdout
    assert proc.stderr.startswith("the tool gave up\n")
    assert "chainsight: python -m pkg.tool exited with status 1 after" in proc.stderr
    assert "chainsight: 0 spans stored in" in proc.stderr
    assert "COUNT" not in proc.stderr  # --no-summary


def test_an_uncaught_exception_is_pythons_traceback_and_status_1(tmp_path: Path) -> None:
    script = _write(tmp_path / "boom.py", """
        def explode():
            raise RuntimeError("kaboom")
        explode()
    """)
    proc = _chainsight(tmp_path, "run", "--db", f"sqlite:///{tmp_path / 'runs.db'}", "--", str(script))
    assert proc.returncode == 1
    err = proc.stderr
    assert err.startswith("Traceback (most recent call last):\n"), err
    assert f'File "{script}", line 4, in <module>' in err and "RuntimeError: kaboom" in err
    assert "runpy" not in err and "cli_run" not in err  # the program's frames only
    assert "exited with status 1" in err


def test_ctrl_c_in_the_program_is_status_130(tmp_path: Path) -> None:
    script = _write(tmp_path / "interrupted.py", "raise KeyboardInterrupt\n")
    proc = _chainsight(tmp_path, "run", "--db", f"sqlite:///{tmp_path / 'runs.db'}", "--", str(script))
    assert proc.returncode == 130
    assert "KeyboardInterrupt" in proc.stderr and "exited with status 130" in proc.stderr


def test_sigterm_stores_what_was_recorded_and_ends_the_process_as_sigterm(tmp_path: Path) -> None:
    script = _write(tmp_path / "terminated.py", """
        import os, signal
        from chainsight import get_observer
        with get_observer().span("before-sigterm"):
            pass
        os.kill(os.getpid(), signal.SIGTERM)
    """)
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    proc = _chainsight(tmp_path, "run", "--db", url, "--", str(script))
    assert proc.returncode == -signal.SIGTERM, proc.stderr
    assert _trace_names(url) == ["before-sigterm"]


def test_python_options_are_refused_with_what_to_do(tmp_path: Path) -> None:
    proc = _chainsight(tmp_path, "run", "--", "python", "-X", "dev", "app.py")
    assert proc.returncode == 2
    assert "Python option '-X' cannot apply" in proc.stderr and "PYTHONDEVMODE=1" in proc.stderr
    assert not (tmp_path / "chainsight.db").exists()
