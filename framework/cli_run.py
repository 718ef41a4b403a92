"""``chainsight run -- python app.py ARGS`` (or ``-- python -m module ARGS``):
run a Python program with zero-code tracing on, then say where its spans went.

The program runs in this process, as ``python`` would run it (``runpy``, with
``sys.argv`` and ``sys.path[0]`` set the same way), after
:func:`chainsight.framework.zero_code.instrument`; no ``sitecustomize`` and no
``.pth`` file are involved. Hence the program runs in the interpreter that
runs ``chainsight``, and Python's own options (``-u``, ``-X``...) are refused
with a word on what to do instead.

* Exit status: the program's, as Python would give it (``sys.exit(code)``,
  1 and the traceback for an uncaught exception, 130 for Ctrl-C).
* Signals are the program's own: nothing is installed for SIGINT; SIGTERM
  stores what was recorded and then ends the process as SIGTERM would
  (``get_observer()``'s handler, unless the program installs its own).
* The summary is printed by an ``atexit`` function registered before the
  program starts: it runs after Python has joined the program's threads and
  run the program's own ``atexit`` functions, and before the observer shuts
  down. It reads the store through the query API: the traces that started
  in it while the program ran (another process writing the same store at
  the same time is counted too). It goes to stderr, so that the program's
  stdout stays its own.
* The store URL and the configuration are put in the environment
  (``CHAINSIGHT_STORAGE_URL``, ``CHAINSIGHT_CONFIG``, with a relative SQLite
  path made absolute), with ``CHAINSIGHT_TRACING=true``: a child process that
  imports ``chainsight`` records into the same store.
"""

from __future__ import annotations

import argparse
import atexit
import importlib.util
import os
import re
import runpy
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from chainsight.framework.cli_render import (
    MISSING,
    Column,
    clean,
    fmt_cost,
    fmt_int,
    fmt_seconds,
    print_table,
    short_id,
)

if TYPE_CHECKING:
    from chainsight.framework.observer import Observer

PROG = "chainsight"
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
SUMMARY_ERRORS = 5
"""How many failed traces the summary lists."""
SUMMARY_MODELS = 5

HELP = "run a Python program with tracing on, then summarise its traces"
DESCRIPTION = (
    "Run `python app.py ARGS` or `python -m module ARGS` with every LangChain run and "
    "litellm call traced, no code changed; print where the spans went and a summary "
    "(on stderr) at exit, and exit with the program's status. The program runs in "
    "chainsight's own Python interpreter."
)
USAGE_HINT = "chainsight run [--db URL] -- python app.py [ARGS] (or -- python -m MODULE [ARGS])"
_PYTHON_NAME = re.compile(r"python(\d+(\.\d+)*)?(\.exe)?", re.IGNORECASE)


class ProgramError(Exception):
    """The command line names no program this command can run."""

    def __init__(self, message: str, status: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Program:
    """What to run: a script (or directory / zip with ``__main__.py``) or a module."""

    args: tuple[str, ...]
    path: str | None = None
    module: str | None = None

    @property
    def label(self) -> str:
        return f"python -m {self.module}" if self.module else f"python {self.path}"


def configure_run(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``chainsight run`` (``--db`` and ``--config`` are the CLI's)."""
    parser.description = DESCRIPTION
    parser.add_argument("--no-summary", action="store_true",
                        help="at exit, print only where the spans went")
    parser.add_argument("program", nargs=argparse.REMAINDER, metavar="-- python PROGRAM [ARGS]",
                        help="`python app.py ARGS` or `python -m module ARGS` (`python` may be "
                        "left out; a Python console script on PATH works too)")


def cmd_run(ns: argparse.Namespace) -> int:
    try:
        program = resolve(parse_program(ns.program))
    except ProgramError as exc:
        sys.stderr.write(f"{PROG} run: error: {exc}\n")
        return exc.status
    from chainsight.framework.observer import get_observer
    from chainsight.framework.zero_code import instrument

    url = absolute_sqlite_url(ns.db)
    os.environ["CHAINSIGHT_STORAGE_URL"] = url
    config = getattr(ns, "config", None)
    if config:
        os.environ["CHAINSIGHT_CONFIG"] = str(Path(config).resolve())
    observer = get_observer()
    instrument(observer)
    report = RunReport(program, observer, url, summary=not ns.no_summary)
    # After observer.py's own atexit function was registered (at its import),
    # so at exit this runs before it: see the module docstring.
    atexit.register(report.write)
    report.status = run_program(program)
    return report.status


# ---- the program ------------------------------------------------------------------


def parse_program(words: Sequence[str]) -> Program:
    """``[--] [python] (SCRIPT | -m MODULE) ARGS...`` as a :class:`Program`."""
    words = list(words)
    if words and words[0] == "--":
        words = words[1:]
    if words and is_python(words[0]):
        words = words[1:]
    if not words:
        raise ProgramError(f"no program to run: {USAGE_HINT}")
    first = words[0]
    if first == "-m" or (first.startswith("-m") and len(first) > 2):
        module = first[2:] or (words[1] if len(words) > 1 else "")
        if not module:
            raise ProgramError(f"-m needs a module name: {USAGE_HINT}")
        return Program(tuple(words[2:] if first == "-m" else words[1:]), module=module)
    if first == "-c" or (first.startswith("-c") and len(first) > 2):
        raise ProgramError(
            "python -c is not supported: put the code in a file and run that, or call "
            "chainsight.instrument() at the top of it: " + USAGE_HINT)
    if first.startswith("-") and first != "-":
        raise ProgramError(
            f"Python option {first!r} cannot apply: the program runs inside chainsight's own "
            f"interpreter ({sys.executable}); give the chainsight command the matching PYTHON* "
            "environment variable instead (PYTHONUNBUFFERED=1, PYTHONWARNINGS=..., "
            "PYTHONDEVMODE=1...), or run only: " + USAGE_HINT)
    if first == "-":
        raise ProgramError(f"a program on standard input is not supported: {USAGE_HINT}")
    return Program(tuple(words[1:]), path=first)


def is_python(word: str) -> bool:
    """Whether ``word`` names a Python interpreter (``python``, ``python3.11``, a path to one)."""
    return bool(_PYTHON_NAME.fullmatch(os.path.basename(word)))


def resolve(program: Program) -> Program:
    """Check that the program exists, as Python would before running it; a
    name that is no file but a Python console script on PATH is that script.
    A module is looked up as ``python -m`` does, from the working directory."""
    if program.module is not None:
        _set_path0(os.getcwd())
        try:
            found = importlib.util.find_spec(program.module)
        except (ImportError, ValueError) as exc:
            raise ProgramError(f"no module named {program.module!r} ({exc})", 1) from None
        if found is None:
            raise ProgramError(f"no module named {program.module!r} (in python -m {program.module}, "
                               f"searched from {os.getcwd()})", 1)
        return program
    assert program.path is not None
    if os.path.exists(program.path):
        return program
    command = shutil.which(program.path) if os.sep not in program.path else None
    if command is not None and _is_python_script(command):
        return Program(program.args, path=command)
    raise ProgramError(f"can't open file {str(Path(program.path).absolute())!r}: "
                       "no such file (nor a Python console script of that name on PATH)")


def _is_python_script(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            first = f.readline(200)
    except OSError:
        return False
    return first.startswith(b"#!") and b"python" in first


def run_program(program: Program) -> int:
    """Run ``program`` in this process as ``python`` would; its exit status."""
    try:
        if program.module is not None:
            sys.argv = ["-m", *program.args]  # runpy puts the module's file in argv[0]
            _set_path0(os.getcwd())
            runpy.run_module(program.module, run_name="__main__", alter_sys=True)
        else:
            assert program.path is not None
            sys.argv = [program.path, *program.args]
            _set_path0(os.path.dirname(os.path.realpath(program.path)))
            runpy.run_path(program.path, run_name="__main__")
    except SystemExit as exc:
        return exit_status(exc.code)
    except KeyboardInterrupt as exc:
        _print_traceback(exc)
        return EXIT_INTERRUPTED
    except BaseException as exc:
        _print_traceback(exc)
        return 1
    return 0


def exit_status(code: Any) -> int:
    """``sys.exit(code)``'s status, as Python computes it (a message is printed, status 1)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    sys.stderr.write(f"{code}\n")
    return 1


def _set_path0(directory: str) -> None:
    """Python puts the script's directory (``-m``: the working directory) first on
    sys.path, unless -P / PYTHONSAFEPATH; for chainsight that entry is its own."""
    if sys.flags.safe_path:
        return
    if sys.path:
        sys.path[0] = directory
    else:
        sys.path.insert(0, directory)


def _print_traceback(exc: BaseException) -> None:
    """The traceback Python would print: from the program's first frame on."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_globals.get("__name__") in (__name__, "runpy"):
        tb = tb.tb_next
    if tb is not None:
        exc = exc.with_traceback(tb)
    sys.stdout.flush()
    sys.excepthook(type(exc), exc, exc.__traceback__)


# ---- the report at exit -------------------------------------------------------------


def absolute_sqlite_url(url: str) -> str:
    """A SQLite URL with a relative path made absolute (the program may chdir)."""
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:
        return url  # the store says what is wrong with it
    database = parsed.database
    if (parsed.get_backend_name() != "sqlite" or not database or database == ":memory:"
            or database.startswith("file:") or os.path.isabs(os.path.expanduser(database))):
        return url
    return parsed.set(database=str(Path(database).expanduser().resolve())).render_as_string(
        hide_password=False)


class RunReport:
    """Where the spans went and a summary of the traces, written at exit."""

    def __init__(self, program: Program, observer: Observer, url: str, *, summary: bool = True) -> None:
        self.program = program
        self.observer = observer
        self.url = url
        self.summary = summary
        self.status: int | None = None
        self.start_ns = time.time_ns()
        self.started = time.monotonic()

    def write(self, out: IO[str] | None = None) -> None:
        out = out if out is not None else sys.stderr
        try:
            sys.stdout.flush()
        except (OSError, ValueError):
            pass
        try:
            self._write(out)
        except Exception as exc:  # never a traceback at exit
            out.write(f"{PROG}: no summary ({type(exc).__name__}: {exc})\n")

    def _write(self, out: IO[str]) -> None:
        from chainsight.framework.zero_code import flush
        from chainsight.storage.engine import display_url

        elapsed = time.monotonic() - self.started
        end_ns = time.time_ns()
        flushed = flush(timeout=float(self.observer.settings.pipeline.get("shutdown_timeout_s", 5.0)))
        stats = self.observer.stats()
        status = "did not finish" if self.status is None else f"exited with status {self.status}"
        shown = display_url(self.url)
        out.write(f"\n{PROG}: {self.program.label} {status} after {fmt_seconds(elapsed)}\n")
        out.write(f"{PROG}: {stats.written:,} span{'s' if stats.written != 1 else ''} stored in {shown}\n")
        waiting = stats.spilled - stats.replayed
        if waiting > 0:
            out.write(f"{PROG}: {waiting:,} spans wait in the spill file (the store did not take them); "
                      f"they are stored when it answers, or by `chainsight db replay --db {shown}`\n")
        if stats.not_stored:
            out.write(f"{PROG}: {stats.not_stored:,} spans were not stored ({stats.dropped:,} dropped, "
                      f"{stats.failed:,} failed, {stats.dead_lettered:,} refused by the store: "
                      "`chainsight deadletter list`)\n")
        elif not flushed and waiting <= 0:
            out.write(f"{PROG}: some spans were still being processed; they are stored before exit\n")
        if self.summary:
            self._summary(out, end_ns)

    def _summary(self, out: IO[str], end_ns: int) -> None:
        from chainsight.storage.engine import StoreNotFound, display_url
        from chainsight.storage.query import Store, TraceFilter

        try:
            store = Store(self.url, create=False)
        except StoreNotFound:
            out.write(f"{PROG}: no traces: nothing was stored in {display_url(self.url)}\n")
            return
        try:
            [total] = store.aggregates(self.start_ns, end_ns + 1)
            models = store.aggregates(self.start_ns, end_ns + 1, group_by="model")
            failed = store.list_traces(TraceFilter(status="error", since_ns=self.start_ns),
                                       limit=SUMMARY_ERRORS).items
            errors = [_first_error(store, t.trace_id) for t in failed]
        finally:
            store.close()
        if not total.count:
            out.write(f"{PROG}: no traces were recorded while the program ran\n")
            return
        out.write("\n")
        print_table(SUMMARY_COLUMNS, [_summary_row("traces", total)], out=out)
        if models and any(m.group for m in models):
            out.write("\n")
            print_table(MODEL_COLUMNS, [_summary_row(m.group or MISSING, m)
                                        for m in models[:SUMMARY_MODELS]], out=out)
        if failed:
            out.write("\n")
            print_table(ERROR_COLUMNS, [[short_id(t.trace_id), t.name, fmt_seconds(t.duration_s), error]
                                        for t, error in zip(failed, errors, strict=True)], out=out)
        db = f" --db {display_url(self.url)}"
        out.write(f"\nsee them: chainsight traces{db} --since {time.strftime('%Y-%m-%dT%H:%M:%S', time.localtime(self.start_ns / 1e9))}"
                  f"   ·   chainsight show TRACE{db}   ·   chainsight tui{db}\n")


SUMMARY_COLUMNS = (
    Column(""), Column("count", "right"), Column("errors", "right"),
    Column("p95 latency", "right"), Column("tokens (in / out)", "right"), Column("cost", "right"),
)
MODEL_COLUMNS = (Column("model", max_width=40, flex=True), *SUMMARY_COLUMNS[1:])
ERROR_COLUMNS = (Column("failed trace"), Column("name", max_width=40, flex=True),
                 Column("duration", "right"), Column("error", max_width=70, flex=True))


def _summary_row(label: str, row: Any) -> list[str]:
    tokens = row.input_tokens + row.output_tokens
    cost = fmt_cost(row.cost_usd)
    if row.unpriced_count:
        cost += f" ({row.unpriced_count:,} unpriced)"
    return [label, fmt_int(row.count), fmt_int(row.error_count), fmt_seconds(row.latency_p95),
            f"{fmt_int(tokens)} ({fmt_int(row.input_tokens)} / {fmt_int(row.output_tokens)})", cost]


def _first_error(store: Any, trace_id: str) -> str:
    """The error of the trace's first failed span (the root's, when it has one)."""
    detail = store.get_trace(trace_id)
    spans = sorted((s for s in (detail.spans if detail else ()) if s.error),
                   key=lambda s: (s.parent_id is not None, s.start_ns))
    if not spans:
        return MISSING
    span = spans[0]
    return clean(f"{span.error_type}: {span.error}" if span.error_type else span.error)
