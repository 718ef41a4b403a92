"""Fault injection: each fault of issue 10 ("Trust"), reproduced, and what became of its spans.

Every scenario runs in a fresh interpreter (this file, run with ``--child``),
in a folder of its own, against a real store: a new SQLite file, and with
``--postgres URL`` a new schema on that server as well. After the child
exits, this process counts where each span it produced ended up:

  stored        rows in the store's ``spans`` table
  spilled       spans in the spill file, waiting to be stored at the next start
  dead-lettered rows the store refused, kept in the dead-letter file (and
                damaged spill records, kept there as raw text)
  lost          produced - stored - spilled - dead-lettered: kept nowhere

Spans are told apart by id, so a span that is both in the store and in the
spill file (a write that landed after the exit rescue had spilled its batch)
counts once, as stored. Where anything was left spilled, a second child
starts an observer on the same spill file (with a good URL where the fault
was a bad one) and the notes say how many of those spans it stored.

For the exit faults it also times the exit: from the moment the child has
recorded everything (or gets SIGTERM) to the moment the process is gone,
against the exit deadline (``[pipeline] shutdown_timeout_s``, 2 s here).
The notes quote what the child said on stderr.

    .venv/bin/python bench/faults.py [--postgres URL] [--only TEXT] [--json] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

DEADLINE = 2.0  # [pipeline] shutdown_timeout_s of every scenario but SIGTERM's
SPILL = "chainsight.spill.jsonl"  # beside the scenario's plugins.toml: the default place
DEAD = "chainsight.deadletter.jsonl"
SECRET = "sk-test-0123456789abcdef0123456789abcdef"
OFFLINE_ENV = {  # see FIELD_NOTES: no network, no .env, no LangSmith
    "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_OFFLINE_MODE": "true",
    "LITELLM_MODE": "PRODUCTION", "HF_HUB_OFFLINE": "1", "LANGSMITH_TRACING": "false",
}


# =============================================================================
# Child side: the scenarios. Each runs in its own interpreter, in ctx.dir.
# =============================================================================


@dataclass
class Ctx:
    dir: Path
    url: str

    @property
    def spill(self) -> Path:
        return self.dir / SPILL


def report(**facts: Any) -> None:
    """Facts for the parent (at least ``produced``), one JSON line on stdout."""
    print("RESULT " + json.dumps(facts, default=str), flush=True)


def recorded() -> None:
    """Everything is recorded: the parent starts the exit clock now."""
    print("recorded", flush=True)


def wait_for(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())


def observer(ctx: Ctx, *, url: str | None = None, builtins: Any = (), plugins: Any = (),
             **pipeline: Any) -> Any:
    from chainsight.framework.observer import Observer

    return Observer(url or ctx.url, builtins=builtins, entry_points=False, plugins=plugins,
                    spill_path=ctx.spill, pipeline={"shutdown_timeout_s": DEADLINE, **pipeline})


def stats_of(obs: Any) -> dict[str, int]:
    s = obs.stats()
    return {"written": s.written, "spilled": s.spilled, "dropped": s.dropped, "failed": s.failed,
            "dead_lettered": s.dead_lettered, "lost": s.lost}


def record(obs: Any, names: list[str]) -> None:
    for name in names:
        obs.end_span(obs.start_span(name))


def stored_spans(url: str) -> dict[str, str]:
    """span_id -> name of every span in the store."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return {r[0]: r[1] for r in conn.execute(sa.text("SELECT span_id, name FROM spans"))}
    finally:
        engine.dispose()


@contextmanager
def sqlite_locked(url: str) -> Iterator[None]:
    """Another process's exclusive transaction: every write waits, then times out."""
    locker = sqlite3.connect(url.removeprefix("sqlite:///"), timeout=0.1, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        locker.execute("ROLLBACK")
        locker.close()


# ---- 1. the spill file -----------------------------------------------------


def spill_bad_record(ctx: Ctx) -> None:
    obs = observer(ctx, flush_interval_s=0.05)
    obs.pipeline.wait_started(30)
    names = [f"s{i:03d}" for i in range(230)]
    with sqlite_locked(ctx.url):
        record(obs, [*names[:100], "bad\udcffname", *names[100:]])
        flushed_locked = obs.flush(timeout=3)
        wait_for(lambda: obs.stats().spilled == 231, 15)
    drained = wait_for(lambda: not obs.pipeline.spill.exists(), 15)
    flushed = obs.flush(timeout=10)
    record(obs, ["after"])
    flushed_after = obs.flush(timeout=10)
    obs.shutdown(timeout=5)
    report(produced=232, flush_while_locked=flushed_locked, spill_drained=drained,
           flush_after_unlock=flushed, flush_after_more=flushed_after, stats=stats_of(obs))


def spill_refused_row(ctx: Ctx) -> None:
    obs = observer(ctx, flush_interval_s=0.05)
    obs.pipeline.wait_started(30)
    conn = sqlite3.connect(ctx.url.removeprefix("sqlite:///"))
    conn.execute("CREATE TRIGGER poison BEFORE INSERT ON spans WHEN NEW.name = 'poison' "
                 "BEGIN SELECT RAISE(ABORT, 'this store refuses poison'); END")
    conn.commit()
    conn.close()
    with sqlite_locked(ctx.url):
        record(obs, [*(f"a{i}" for i in range(50)), "poison", *(f"b{i}" for i in range(49))])
        wait_for(lambda: obs.stats().spilled == 100, 15)
        record(obs, [f"c{i}" for i in range(100)])
        wait_for(lambda: obs.stats().spilled == 200, 15)
    drained = wait_for(lambda: not obs.pipeline.spill.exists(), 15)
    record(obs, ["after"])
    flushed_after = obs.flush(timeout=10)
    obs.shutdown(timeout=5)
    report(produced=201, spill_drained=drained, flush_after_more=flushed_after, stats=stats_of(obs))


def spill_torn_tail(ctx: Ctx) -> None:
    """A spill file left by a process killed while appending: two whole
    batches and half of a third. A new process starts on it and records."""
    from chainsight.framework.model import Span
    from chainsight.framework.spill import frame
    from chainsight.storage.writer import StoreWriter, WriteBatch

    def batch(prefix: str, count: int) -> bytes:
        spans = []
        for i in range(count):
            span = Span(f"{prefix}-{i}")
            span.end_ns = span.start_ns + 1000
            spans.append(span)
        return frame(StoreWriter(ctx.url).prepare(WriteBatch(spans=spans)))

    torn = batch("torn", 1)
    ctx.spill.write_bytes(batch("one", 50) + batch("two", 50) + torn[: len(torn) // 2])
    obs = observer(ctx, flush_interval_s=0.05)
    drained = wait_for(lambda: not obs.pipeline.spill.exists(), 15)
    record(obs, [f"new-{i}" for i in range(100)])
    flushed = obs.flush(timeout=10)
    obs.shutdown(timeout=5)
    report(produced=201, spill_drained=drained, flush_after_more=flushed, stats=stats_of(obs))


# ---- 2. one bad span among 100 neighbours, in one batch --------------------

NEIGHBOURS = 100
BAD_VALUES: dict[str, dict[str, Any]] = {  # kind -> the span's fields
    "surrogate in name": {"name": "bad\udcffname"},
    "surrogate in user id": {"user_id": "user\udcff"},
    "surrogate in tag": {"tags": ["ok", "tag\udcff"]},
    "surrogate in error": {"status": "error", "error": "boom \udcff here"},
    "name None": {"name": None},
    "user id object()": {"user_id": object()},
    'token count "12"': {"model": "m", "input_tokens": "12"},
    "token count 2**70": {"model": "m", "output_tokens": 2**70},
    "NUL in text": {"name": "nul\x00name", "error": "a\x00b", "session_id": "s\x00"},
    'cost "free"': {"model": "m", "cost_usd": "free"},
}


def bad_neighbour(ctx: Ctx, kind: str) -> None:
    obs = observer(ctx, batch_size=NEIGHBOURS + 1, flush_interval_s=30.0)
    record(obs, [f"neighbour-{i}" for i in range(NEIGHBOURS // 2)])
    span = obs.start_span("the-bad-one")
    for key, value in BAD_VALUES[kind].items():
        setattr(span, key, value)
    obs.end_span(span)
    record(obs, [f"neighbour-{i}" for i in range(NEIGHBOURS // 2, NEIGHBOURS)])
    flushed = obs.flush(timeout=20)
    obs.shutdown(timeout=5)
    report(produced=NEIGHBOURS + 1, flush=flushed, bad_span_id=span.span_id, stats=stats_of(obs))


# ---- 3. fork and multiprocessing -------------------------------------------

CHILD_SPANS = 4000


def fork_child(ctx: Ctx) -> None:
    obs = observer(ctx)
    with obs.span("parent-before"):
        pass
    obs.flush(20)
    pid = os.fork()
    if pid == 0:
        for i in range(CHILD_SPANS):
            with obs.span(f"child-{i}"):
                pass
        ok = obs.flush(30)
        os._exit(0 if ok else 3)
    _, status = os.waitpid(pid, 0)
    with obs.span("parent-after"):
        pass
    flushed = obs.flush(20)
    obs.shutdown(timeout=5)
    report(produced=CHILD_SPANS + 2, child_flush=os.waitstatus_to_exitcode(status) == 0,
           parent_flush=flushed)


MP_CHILDREN, MP_SPANS = 3, 50


def mp_work(n: int) -> int:
    """A multiprocessing child: its own default observer, no flush()."""
    from chainsight.framework.observer import get_observer

    obs = get_observer()
    for i in range(MP_SPANS):
        with obs.span(f"child-{n}-{i}"):
            pass
    return n


def multiprocessing_children(ctx: Ctx, method: str, how: str) -> None:
    import multiprocessing as mp

    from chainsight.framework.observer import get_observer

    obs = get_observer()  # the parent has one too (a fork child inherits it)
    with obs.span("parent"):
        pass
    mpctx = mp.get_context(method)
    if how == "Process":
        procs = [mpctx.Process(target=mp_work, args=(n,)) for n in range(MP_CHILDREN)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        exits = [p.exitcode for p in procs]
    else:
        with mpctx.Pool(2) as pool:
            exits = [0 if r == n else r for n, r in enumerate(pool.map(mp_work, range(MP_CHILDREN)))]
            pool.close()
            pool.join()
    flushed = obs.flush(20)
    report(produced=MP_CHILDREN * MP_SPANS + 1, child_exits=exits, parent_flush=flushed)


# ---- 4. a bad store --------------------------------------------------------


def bad_store_url(ctx: Ctx, case: str) -> str:
    if case == "bad URL":
        return "this is not a url"
    if case == "missing driver":
        return "postgresql+psycopg2://u:secret@127.0.0.1:1/db"
    if case == "not-a-database file":
        path = ctx.dir / "garbage.db"
        path.write_bytes(b"this is not a SQLite file at all, just text" * 100)
        return f"sqlite:///{path}"
    # newer schema: a current store whose alembic version is from the future,
    # made with sqlite3 alone so that no engine of this process knows the file
    from chainsight.storage.engine import open_engine

    open_engine(f"sqlite:///{ctx.dir / 'current.db'}").dispose()
    shutil.copy(ctx.dir / "current.db", ctx.dir / "newer.db")
    (ctx.dir / "current.db").unlink()
    conn = sqlite3.connect(ctx.dir / "newer.db")
    conn.execute("UPDATE alembic_version SET version_num = '9999'")
    conn.commit()
    conn.close()
    return f"sqlite:///{ctx.dir / 'newer.db'}"


def bad_store(ctx: Ctx, case: str) -> None:
    url = bad_store_url(ctx, case)
    report(bad_url=url)
    obs = observer(ctx, url=url, flush_interval_s=0.05)
    obs.pipeline.wait_started(10)
    flushes = []
    for i in range(3):
        record(obs, [f"kept-{i}-{j}" for j in range(4)])
        flushes.append(obs.flush(timeout=10))
    obs.shutdown(timeout=5)
    report(produced=12, flushes=flushes, stats=stats_of(obs))


def next_start(ctx: Ctx) -> None:
    """The URL fixed: a new process on the same spill file stores what waits there."""
    obs = observer(ctx)
    drained = wait_for(lambda: not obs.pipeline.spill.exists(), 15)
    obs.shutdown(timeout=5)
    report(spill_drained=drained)


# ---- 5. an invalid plugins.toml during LangChain capture --------------------

BAD_CONFIG = """\
[storage]
url = "{url}"

[pipeline]
batch_size = "big"
flush_interval_s = 0.05
shutdown_timeout_s = {deadline}

[plugins.pricng]
x = 1

[plugins.redaction]
email = "yes"
"""
CHAIN_RUNS = 25


def invalid_config(ctx: Ctx) -> None:
    from langchain_core.language_models.fake_chat_models import FakeListChatModel
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate

    from chainsight.framework import CallbackHandler, get_observer

    (ctx.dir / "plugins.toml").write_text(BAD_CONFIG.format(url=ctx.url, deadline=DEADLINE))
    chain = (ChatPromptTemplate.from_messages([("human", "{q}")])
             | FakeListChatModel(responses=["mail bob@example.com"]) | StrOutputParser())
    for i in range(CHAIN_RUNS):
        chain.invoke({"q": f"question {i}"}, config={"callbacks": [CallbackHandler()]})
    obs = get_observer()
    flushed = obs.flush(timeout=20)
    obs.shutdown(timeout=5)
    report(produced=CHAIN_RUNS * 4, flush=flushed, stats=stats_of(obs))  # sequence, prompt, model, parser


# ---- 6. queue overflow -----------------------------------------------------


class SlowCheck:
    name = "slow_check"

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def check_span(self, span: Any) -> None:
        time.sleep(self.seconds)


class HangingCheck:
    name = "hanging_check"

    def check_span(self, span: Any) -> None:
        if span.name == "hang":
            time.sleep(120)


class HangingExporter:
    name = "hanging_exporter"

    def export(self, spans: Any) -> None:
        time.sleep(120)

    def shutdown(self, timeout: float) -> None:
        time.sleep(120)


def plugin(check: Any = None, exporter: Any = None, hang_on_shutdown: bool = False) -> Any:
    from chainsight.framework import hookimpl

    class Plugin:
        name = getattr(check or exporter, "name", "test_plugin")

        @hookimpl
        def check_span(self, span: Any) -> Any:
            return check.check_span(span) if check else None

        @hookimpl
        def spans_finished(self, spans: Any) -> None:
            if exporter:
                exporter.export(spans)

        @hookimpl
        def shutdown(self, timeout: float) -> None:
            if exporter:
                exporter.shutdown(timeout)
            if hang_on_shutdown:
                time.sleep(120)

    return Plugin()


OVERFLOW_SPANS = 3000


def queue_overflow(ctx: Ctx) -> None:
    obs = observer(ctx, plugins=[plugin(check=SlowCheck(0.001))], queue_size=100, batch_size=50)
    obs.pipeline.wait_started(30)
    record(obs, [f"s{i}" for i in range(OVERFLOW_SPANS)])
    flushed = obs.flush(timeout=30)
    obs.shutdown(timeout=5)
    report(produced=OVERFLOW_SPANS, flush=flushed, stats=stats_of(obs))


# ---- 7. redaction raising on every span ------------------------------------


def redaction_raises(ctx: Ctx) -> None:
    from langchain_core.messages import AIMessage

    from chainsight.plugins.redaction import Redactor

    def broken(self: Any, span: Any) -> Any:
        raise RuntimeError("redactor broken")

    Redactor.redact_span = broken  # type: ignore[method-assign]
    obs = observer(ctx, builtins=None)  # every built-in plugin, redaction first
    spans = 50
    for i in range(spans):
        if i == 7:  # an error message quoting the secret
            try:
                with obs.span("step", kind="llm", inputs={"q": SECRET}):
                    raise ValueError(f"provider rejected {SECRET}")
            except ValueError:
                pass
            continue
        with obs.span("step", kind="llm", inputs={"q": f"use {SECRET}"}, metadata={"key": SECRET},
                      attributes={"auth": SECRET, "retries": i}) as span:
            span.outputs = AIMessage(content=SECRET, extra_field=SECRET)
    flushed = obs.flush(10)
    health = {h.name: h for h in obs.dispatcher.snapshot()}["redaction"]
    obs.shutdown(timeout=5)
    report(produced=spans, flush=flushed, failures=health.failures, degraded=health.degraded)


# ---- 10. exit (every built-in plugin loaded, redaction among them) ---------


def record_content(obs: Any, names: list[str]) -> None:
    for name in names:
        with obs.span(name, inputs={"q": "mail alice@example.com"}):
            pass


def hung_check(ctx: Ctx) -> None:
    obs = observer(ctx, builtins=None, plugins=[plugin(check=HangingCheck())], batch_size=10)
    obs.pipeline.wait_started(30)
    record_content(obs, ["hang"] + [f"s{i}" for i in range(99)])
    report(produced=100)
    recorded()


def hung_exporter(ctx: Ctx) -> None:
    obs = observer(ctx, builtins=None, plugins=[plugin(exporter=HangingExporter())], batch_size=10)
    obs.pipeline.wait_started(30)
    record_content(obs, [f"s{i}" for i in range(100)])
    report(produced=100)
    recorded()


def hung_shutdown_hook(ctx: Ctx) -> None:
    obs = observer(ctx, builtins=None, plugins=[plugin(hang_on_shutdown=True)])
    record_content(obs, [f"s{i}" for i in range(20)])
    report(produced=20)
    recorded()


def silent_postgres(ctx: Ctx) -> None:
    obs = observer(ctx, builtins=None, plugins=[plugin()])  # ctx.url: accepts, never answers
    record_content(obs, [f"s{i}" for i in range(50)])
    report(produced=50)
    recorded()


BACKLOG_SPANS = 5000


def backlog_at_exit(ctx: Ctx) -> None:
    obs = observer(ctx, builtins=None, plugins=[plugin(check=SlowCheck(0.002))], check_budget_ms=100)
    obs.pipeline.wait_started(30)
    record_content(obs, [f"s{i}" for i in range(BACKLOG_SPANS)])
    report(produced=BACKLOG_SPANS)
    recorded()


SIGTERM_THREADS = 4


def sigterm_while_recording(ctx: Ctx) -> None:
    """get_observer() installs its SIGTERM handler; ours, wrapped around it,
    notes how many spans each thread had ended when the signal came."""
    from chainsight.framework import get_observer

    obs = get_observer()
    obs.pipeline.wait_started(30)
    ended = [0] * SIGTERM_THREADS
    installed = signal.getsignal(signal.SIGTERM)
    assert callable(installed), "get_observer() installs a SIGTERM handler"

    def on_sigterm(signum: int, frame: Any) -> None:
        (ctx.dir / "ended.json").write_text(json.dumps(ended))
        installed(signum, frame)

    signal.signal(signal.SIGTERM, on_sigterm)

    def busy(t: int) -> None:
        i = 0
        while True:
            with obs.span(f"busy-{t}-{i}"):
                time.sleep(0.0005)
            i += 1
            ended[t] = i

    for t in range(SIGTERM_THREADS):
        threading.Thread(target=busy, args=(t,), daemon=True).start()
    time.sleep(0.5)
    recorded()
    time.sleep(60)


# ---- 11. the first traced call ---------------------------------------------


def first_call(ctx: Ctx) -> None:
    from langchain_core.prompts import PromptTemplate

    prompt = PromptTemplate.from_template("hello {name}")
    prompt.invoke({"name": "warm-up without a callback"})
    t0 = time.perf_counter()
    from chainsight.framework import CallbackHandler, get_observer

    imported = time.perf_counter()
    handler = CallbackHandler()
    obs = get_observer()
    built = time.perf_counter()
    prompt.invoke({"name": "x"}, config={"callbacks": [handler]})
    first = time.perf_counter()
    flushed = obs.flush(30)
    import sqlalchemy as sa

    engine = sa.create_engine(ctx.url)
    with engine.connect() as conn:
        latency = conn.execute(sa.text("SELECT (end_ns - start_ns) / 1e6 FROM spans")).scalar()
    engine.dispose()
    obs.shutdown(timeout=5)
    report(produced=1, flush=flushed, import_ms=(imported - t0) * 1000,
           build_ms=(built - imported) * 1000, first_call_ms=(first - built) * 1000,
           stored_latency_ms=latency)


# =============================================================================
# Parent side: the table.
# =============================================================================


@dataclass
class Scenario:
    name: str  # the row's short name
    item: str  # the item number
    run: Callable[[Ctx], None]
    backends: tuple[str, ...] = ("sqlite", "postgres")
    exit_deadline: float | None = None  # an exit fault: time the exit against this
    sigterm: bool = False  # send SIGTERM when the child says "recorded"
    note: Callable[[Result], str] = lambda r: ""
    counts: Callable[[str], bool] = lambda name: True  # which span names are the fault's own
    bad_store: bool = False  # the next start uses a good URL


@dataclass
class Result:
    scenario: Scenario
    backend: str
    dir: Path
    url: str
    facts: dict[str, Any] = field(default_factory=dict)
    stderr: str = ""
    returncode: int | None = None
    exit_s: float | None = None
    stored: int = 0
    spilled: int = 0
    dead: int = 0
    store_error: str = ""
    stored_ids: set[str] = field(default_factory=set)
    doubled: int = 0  # spans both in the spill file and in the store
    extra: list[str] = field(default_factory=list)
    notes: str = ""

    @property
    def produced(self) -> int:
        return int(self.facts.get("produced", 0))

    @property
    def lost(self) -> int:
        return self.produced - self.stored - self.spilled - self.dead

    def said(self, text: str) -> int:
        return self.stderr.count(text)


def yes(flag: Any) -> str:
    return "yes" if flag else "no"


def flush_word(flag: Any) -> str:
    return "True" if flag else "False"


# ---- notes: what else each row shows ---------------------------------------


def note_spill(r: Result) -> str:
    f = r.facts
    parts = [f"spill drained: {yes(f.get('spill_drained'))}",
             f"flush() after more spans: {flush_word(f.get('flush_after_more'))}"]
    if "flush_while_locked" in f:
        parts.insert(0, f"flush() while locked: {flush_word(f['flush_while_locked'])}")
    if r.scenario.run is spill_bad_record:
        bad = stored_value(r, "name", "name LIKE 'bad%'")
        parts.append(f"stored as {bad}")
    if r.said("damaged record"):
        parts.append("torn record reported and kept raw in dead-letter")
    if r.dead and not r.said("damaged record"):
        parts[-1] += " (it reports the dead letter)"
    return "; ".join(parts)


def stored_value(r: Result, column: str, where: str) -> str:
    import sqlalchemy as sa

    try:
        engine = sa.create_engine(r.url)
        with engine.connect() as conn:
            values = [row[0] for row in conn.execute(sa.text(f"SELECT {column} FROM spans WHERE {where}"))]
        engine.dispose()
    except Exception as exc:
        return f"? ({type(exc).__name__})"
    return ", ".join(ascii(v) for v in values) if values else "(no row)"


NEIGHBOUR_COLUMNS = {
    "surrogate in name": "name", "surrogate in user id": "user_id", "surrogate in tag": "tags",
    "surrogate in error": "error", "name None": "name", "user id object()": "user_id",
    'token count "12"': "input_tokens", "token count 2**70": "output_tokens",
    "NUL in text": "name, error, session_id", 'cost "free"': "cost_usd",
}


def note_neighbour(r: Result) -> str:
    kind = r.scenario.name.removeprefix("bad neighbour: ")
    columns = NEIGHBOUR_COLUMNS[kind]
    where = f"span_id = '{r.facts.get('bad_span_id')}'"
    parts = [f"flush(): {flush_word(r.facts.get('flush'))}"]
    import sqlalchemy as sa

    try:
        engine = sa.create_engine(r.url)
        with engine.connect() as conn:
            row = conn.execute(sa.text(f"SELECT {columns}, attributes FROM spans WHERE {where}")).first()
        engine.dispose()
    except Exception as exc:
        return f"{parts[0]}; bad row unreadable ({type(exc).__name__})"
    if row is None:
        return f"{parts[0]}; bad row not stored"
    *values, attributes = row
    shown = ", ".join(f"{c.strip()}={v!a}" for c, v in zip(columns.split(","), values, strict=True))
    if isinstance(attributes, str):  # SQLite's JSON is text; PostgreSQL's comes decoded
        attributes = json.loads(attributes)
    invalid = sorted((attributes or {}).get("chainsight.invalid", {}))
    parts.append(f"bad row stored: {shown}")
    if invalid:
        parts.append(f"problem recorded on span ({', '.join(invalid)})")
    return "; ".join(parts)


def note_fork(r: Result) -> str:
    return (f"flush() in child: {flush_word(r.facts.get('child_flush'))}, "
            f"in parent: {flush_word(r.facts.get('parent_flush'))}")


def note_mp(r: Result) -> str:
    return (f"children's exit codes {r.facts.get('child_exits')}, no flush() in them; "
            f"parent flush(): {flush_word(r.facts.get('parent_flush'))}")


def note_bad_store(r: Result) -> str:
    said = [line for line in r.stderr.splitlines() if "cannot store spans" in line]
    parts = [f"said {len(said)}x",
             f"flush(): {', '.join(flush_word(f) for f in r.facts.get('flushes', []))}",
             f"traceback: {yes('Traceback' in r.stderr)}"]
    if "secret" in r.facts.get("bad_url", ""):
        parts.append(f"password shown: {yes('secret' in r.stderr)}")
    return "; ".join(parts)


def after_next_start(r: Result) -> None:
    """Start again (with the URL fixed, where it was bad) on the same spill
    file: what waited there is stored."""
    if not r.spilled:
        return
    fixed = r.backend == "silent socket" or r.scenario.bad_store
    url = f"sqlite:///{r.dir / 'fixed.db'}" if fixed else r.url
    child = run_child("next start", r.dir, url, timeout=60).facts
    try:
        now = {i for i, name in stored_spans(url).items() if r.scenario.counts(name)}
        stored = len(now - r.stored_ids)
    except Exception as exc:
        r.extra.append(f"next start: store unreadable ({type(exc).__name__})")
        return
    r.extra.append(f"next start{' with a good URL' if fixed else ''} stored {stored}/{r.spilled}"
                   + ("" if child.get("spill_drained") else ", spill not drained"))


def note_config(r: Result) -> str:
    said = r.said("invalid configuration")
    leaked = stored_value(r, "count(*)", "CAST(outputs AS TEXT) LIKE '%bob@example.com%'")
    return (f"'invalid configuration' said {said}x; flush(): {flush_word(r.facts.get('flush'))}; "
            f"redaction (defaults) still masks e-mail: {yes(leaked == '0')}")


def note_overflow(r: Result) -> str:
    said = [line for line in r.stderr.splitlines() if "queue is full" in line]
    dropped = r.facts.get("stats", {}).get("dropped")
    first = said[0].split("chainsight: ", 1)[-1][:70] if said else ""
    at_exit = [shorten(line, r.dir) for line in exit_lines(r)]
    return (f"dropped counter {dropped} (= lost: {yes(dropped == r.lost)}); logged {len(said)}x"
            + (f": \"{first}...\"" if first else "") + f"; flush(): {flush_word(r.facts.get('flush'))}"
            + (f"; at exit: \"{' / '.join(at_exit)}\"" if at_exit else ""))


def raw_files_hold(folder: Path, text: str) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.is_file() and text.encode() in p.read_bytes())


def note_redaction(r: Result) -> str:
    found = raw_files_hold(r.dir, SECRET)
    if r.backend == "postgres":
        import sqlalchemy as sa

        engine = sa.create_engine(r.url)
        with engine.connect() as conn:
            for table in ("spans", "traces", "scores"):
                text = " ".join(row[0] for row in conn.execute(sa.text(f"SELECT t::text FROM {table} t")))
                if SECRET in text:
                    found.append(f"table {table}")
        engine.dispose()
    where = "store, -wal, -shm, spill, dead-letter" if r.backend == "sqlite" else "tables, spill, dead-letter"
    return (f"secret found in raw files: {yes(found)}{' ' + str(found) if found else ''} ({where}); "
            f"redaction failures {r.facts.get('failures')}, degraded: {yes(r.facts.get('degraded'))}")


def exit_lines(r: Result) -> list[str]:
    return [line.split("chainsight: ", 1)[-1] for line in r.stderr.splitlines()
            if any(w in line for w in ("exit deadline", "not stored", "put in", "spans stored"))]


def note_exit(r: Result) -> str:
    lines = exit_lines(r)
    if not lines:
        return "nothing said at exit"
    said = "said: \"" + " / ".join(shorten(line, r.dir) for line in lines) + "\""
    if r.spilled:
        spill = (r.dir / SPILL).read_bytes()
        said += f"; e-mail in the spill file: {yes(b'alice@example.com' in spill)}"
    return said


def shorten(line: str, folder: Path) -> str:
    line = line.replace(f"{folder}/", "")
    return line if len(line) <= 230 else line[:227] + "..."


def note_silent_pg(r: Result) -> str:
    return note_exit(r) + f"; password shown: {yes('pw@' in r.stderr or ':pw' in r.stderr)}"


def note_sigterm(r: Result) -> str:
    late = r.facts.get("late", 0)
    return (f"exit status {r.returncode}; produced = spans ended before SIGTERM ({late} ended "
            f"after it and were stored too); " + note_exit(r))


def note_first_call(r: Result) -> str:
    f = r.facts
    return (f"import {f.get('import_ms', 0):.0f} ms, build handler+observer {f.get('build_ms', 0):.1f} ms, "
            f"first call {f.get('first_call_ms', 0):.1f} ms on the caller, "
            f"first span's stored latency {f.get('stored_latency_ms') or 0:.1f} ms")


def sigterm_produced(r: Result) -> None:
    """Produced: the spans each thread had ended when SIGTERM came (names
    busy-T-I with I < ended[T]); the ones after it are the late ones."""
    try:
        ended = json.loads((r.dir / "ended.json").read_text())
    except (OSError, ValueError):
        ended = []
    r.facts["produced"] = sum(ended)
    r.facts["ended"] = ended


def sigterm_counts(ended: list[int]) -> Callable[[str], bool]:
    def counts(name: str) -> bool:
        parts = name.split("-")
        return len(parts) == 3 and int(parts[1]) < len(ended) and int(parts[2]) < ended[int(parts[1])]

    return counts


def scenarios() -> list[Scenario]:
    rows = [
        Scenario("bad record in spill (surrogate name, store locked)", "1", spill_bad_record,
                 ("sqlite",), note=note_spill),
        Scenario("torn spill tail", "1", spill_torn_tail, ("sqlite",), note=note_spill),
        Scenario("row the store refuses (trigger), in spill", "1/2", spill_refused_row, ("sqlite",),
                 note=note_spill),
    ]
    for kind in BAD_VALUES:
        rows.append(Scenario(f"bad neighbour: {kind}", "2",
                             lambda ctx, kind=kind: bad_neighbour(ctx, kind), note=note_neighbour))
    rows.append(Scenario(f"fork child ({CHILD_SPANS:,} spans)", "3", fork_child, note=note_fork))
    for how in ("Process", "Pool"):
        for method in ("fork", "spawn"):
            rows.append(Scenario(f"multiprocessing {method} {how}", "3",
                                 lambda ctx, m=method, h=how: multiprocessing_children(ctx, m, h),
                                 note=note_mp))
    for case in ("bad URL", "not-a-database file", "newer schema", "missing driver"):
        rows.append(Scenario(case, "4", lambda ctx, c=case: bad_store(ctx, c), ("sqlite",),
                             note=note_bad_store, bad_store=True))
    rows += [
        Scenario("invalid plugins.toml during LangChain capture", "5", invalid_config, note=note_config),
        Scenario("queue overflow (queue_size 100)", "6", queue_overflow, note=note_overflow),
        Scenario("redaction raising on every span", "7", redaction_raises, note=note_redaction),
        Scenario("hung check", "10", hung_check, exit_deadline=DEADLINE, note=note_exit),
        Scenario("hung exporter", "10", hung_exporter, exit_deadline=DEADLINE, note=note_exit),
        Scenario("hung shutdown hook", "10", hung_shutdown_hook, exit_deadline=DEADLINE, note=note_exit),
        Scenario("never-answering PostgreSQL", "10", silent_postgres, ("silent socket",),
                 exit_deadline=DEADLINE, note=note_silent_pg),
        Scenario(f"backlog at exit ({BACKLOG_SPANS:,} spans, 2 ms check)", "10", backlog_at_exit,
                 exit_deadline=DEADLINE, note=note_exit),
        Scenario(f"SIGTERM while {SIGTERM_THREADS} threads record", "10", sigterm_while_recording,
                 exit_deadline=5.0, sigterm=True, note=note_sigterm),
        Scenario("first-call latency", "11", first_call, note=note_first_call),
    ]
    return rows


CHILD_RUNS: dict[str, Callable[[Ctx], None]] = {"next start": next_start}


def child_table() -> dict[str, Callable[[Ctx], None]]:
    return {**{s.name: s.run for s in scenarios()}, **CHILD_RUNS}


# ---- running one child -----------------------------------------------------


def child_env(folder: Path) -> dict[str, str]:
    env = {**os.environ, **OFFLINE_ENV, "PYTHONUNBUFFERED": "1",
           "CHAINSIGHT_CONFIG": str(folder / "plugins.toml")}
    env.pop("CHAINSIGHT_STORAGE_URL", None)
    return env


@dataclass
class ChildRun:
    facts: dict[str, Any]
    returncode: int
    exit_s: float | None  # from "recorded" (or SIGTERM) to the process's end
    stderr: str


def run_child(name: str, folder: Path, url: str, *, timeout: float, sigterm: bool = False) -> ChildRun:
    """Run one scenario in a fresh interpreter, in ``folder``."""
    err_path = folder / f"{len(list(folder.glob('*.stderr')))}.stderr"
    with err_path.open("w") as err:
        proc = subprocess.Popen([sys.executable, __file__, "--child", name, "--dir", str(folder),
                                 "--url", url], cwd=folder, env=child_env(folder), text=True,
                                stdout=subprocess.PIPE, stderr=err)
        assert proc.stdout is not None
        facts: dict[str, Any] = {}
        started: float | None = None
        killer = threading.Timer(timeout, proc.kill)  # a scenario that hangs is cut off
        killer.start()
        try:
            for line in proc.stdout:
                if line.startswith("RESULT "):
                    facts.update(json.loads(line[7:]))
                elif line.strip() == "recorded":
                    if sigterm:
                        proc.send_signal(signal.SIGTERM)
                    started = time.monotonic()
            proc.wait()
        finally:
            killer.cancel()
    exit_s = None if started is None else time.monotonic() - started
    return ChildRun(facts, proc.returncode, exit_s, err_path.read_text(errors="replace"))


def count_where(r: Result) -> None:
    """Stored, spilled and dead-lettered spans of the scenario, each span
    counted once, by id: a batch can be both spilled at exit and stored (a
    write that lands after the exit rescue took it); it counts as stored."""
    from chainsight.framework.spill import RecordFile, SpillFile

    counts = r.scenario.counts
    if r.backend != "silent socket":  # a server that never answers stores nothing
        try:
            r.stored_ids = {i for i, name in stored_spans(r.url).items() if counts(name)}
        except Exception as exc:  # a store that cannot be read holds nothing
            r.store_error = f"{type(exc).__name__}"
    spilled = {str(row.get("span_id")) for rec in SpillFile(r.dir / SPILL).read() if isinstance(rec, dict)
               for row in rec.get("spans") or () if counts(str(row.get("name")))}
    dead: set[str] = set()
    damaged = 0
    for letter in RecordFile(r.dir / DEAD).read():
        if not isinstance(letter, dict) or letter.get("table") is None:
            damaged += 1  # a damaged spill record, kept as raw text (here: one span each)
        elif letter.get("table") == "spans" and counts(str(letter["row"].get("name"))):
            dead.add(str(letter["row"].get("span_id")))
    r.stored = len(r.stored_ids)
    r.spilled = len(spilled - r.stored_ids)
    r.doubled = len(spilled & r.stored_ids)
    r.dead = len(dead - r.stored_ids - spilled) + damaged


def nothing() -> None:
    return None


def run_scenario(scenario: Scenario, backend: str, root: Path, postgres: str | None,
                 silent_port: int | None) -> Result:
    folder = root / f"{len(list(root.iterdir())):02d}"
    folder.mkdir(mode=0o700)
    cleanup = nothing
    if backend == "sqlite":
        url = f"sqlite:///{folder / 'store.db'}"
    elif backend == "postgres":
        assert postgres is not None
        url, cleanup = postgres_schema(postgres)
    else:
        url = f"postgresql+psycopg://u:pw@127.0.0.1:{silent_port}/db"
    deadline = f"shutdown_timeout_s = {DEADLINE}\n" if not scenario.sigterm else ""
    (folder / "plugins.toml").write_text(f'[storage]\nurl = "{url}"\n\n[pipeline]\n{deadline}')
    try:
        child = run_child(scenario.name, folder, url, timeout=90, sigterm=scenario.sigterm)
        r = Result(scenario, backend, folder, url, child.facts, child.stderr, child.returncode,
                   child.exit_s)
        if scenario.sigterm:
            sigterm_produced(r)
            ended = r.facts["ended"]
            r.scenario = Scenario(**{**scenario.__dict__, "counts": sigterm_counts(ended)})
            r.facts["late"] = stored_late(r, ended)
        count_where(r)
        try:
            note = scenario.note(r)
        except Exception as exc:
            note = f"(note failed: {type(exc).__name__}: {exc})"
        if r.doubled:
            r.extra.append(f"{r.doubled} spans in the spill file are stored already (counted once)")
        after_next_start(r)
        r.notes = "; ".join(n for n in (note, *r.extra) if n)
        return r
    finally:
        cleanup()


def stored_late(r: Result, ended: list[int]) -> int:
    try:
        names = stored_spans(r.url).values()
    except Exception:
        return 0
    counts = sigterm_counts(ended)
    return sum(1 for n in names if n.startswith("busy-") and not counts(n))


def postgres_schema(base: str) -> tuple[str, Callable[[], None]]:
    import sqlalchemy as sa

    from chainsight.storage.engine import normalize_url

    base = normalize_url(base)
    schema = f"faults_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    url = (sa.engine.make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
           .render_as_string(hide_password=False))

    def drop() -> None:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        admin.dispose()

    return url, drop


@contextmanager
def silent_server() -> Iterator[int]:
    """A local socket that accepts connections and never answers."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(server.getsockname()[1])
    finally:
        stop.set()
        thread.join(2)
        for conn in held:
            conn.close()
        server.close()


# ---- the table -------------------------------------------------------------


def row_of(r: Result) -> dict[str, Any]:
    exit_s = None
    if r.scenario.exit_deadline is not None and r.exit_s is not None:
        exit_s = round(r.exit_s, 2)
    return {
        "fault": r.scenario.name, "item": r.scenario.item, "store": r.backend,
        "produced": r.produced, "stored": r.stored, "spilled": r.spilled, "dead_lettered": r.dead,
        "lost": r.lost, "exit_s": exit_s, "deadline_s": r.scenario.exit_deadline,
        "returncode": r.returncode, "notes": r.notes,
        **({"store_error": r.store_error} if r.store_error and r.backend == "sqlite" else {}),
    }


def markdown(rows: list[dict[str, Any]]) -> str:
    head = ("| # | fault | store | produced | stored | spilled | dead-lettered | lost | exit s / deadline | notes |\n"
            "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    lines = [head]
    for row in rows:
        exit_cell = "" if row["deadline_s"] is None else (
            f"{row['exit_s']:.2f} / {row['deadline_s']:g}" if row["exit_s"] is not None else f"? / {row['deadline_s']:g}")
        lost = f"**{row['lost']}**" if row["lost"] else "0"
        notes = str(row["notes"]).replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {row['item']} | {row['fault']} | {row['store']} | {row['produced']:,} | "
                     f"{row['stored']:,} | {row['spilled']:,} | {row['dead_lettered']:,} | {lost} | "
                     f"{exit_cell} | {notes} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", metavar="URL", help="also run each fault on this PostgreSQL server")
    parser.add_argument("--only", metavar="TEXT", help="only the faults whose name contains TEXT")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    parser.add_argument("--keep", metavar="DIR", help="keep each scenario's folder (store, spill, stderr) in DIR")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--dir", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_table()[args.child](Ctx(Path(args.dir), args.url))
        return 0

    started = time.monotonic()
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="chainsight-faults-") as tmp, silent_server() as port:
        root = Path(args.keep or tmp)
        root.mkdir(parents=True, exist_ok=True)
        for scenario in scenarios():
            if args.only and args.only.lower() not in scenario.name.lower():
                continue
            for backend in scenario.backends:
                if backend == "postgres" and not args.postgres:
                    continue
                t0 = time.monotonic()
                result = run_scenario(scenario, backend, root, args.postgres, port)
                results.append(row_of(result))
                print(f"  {time.monotonic() - t0:5.1f} s  {scenario.name} [{backend}]", file=sys.stderr)
    total = time.monotonic() - started
    if args.json:
        print(json.dumps({"seconds": round(total, 1), "deadline_s": DEADLINE, "faults": results}, indent=2))
    else:
        print(textwrap.dedent(f"""\
            Faults of issue 10, each in a fresh process ({total:.0f} s in all). lost = produced -
            stored - spilled - dead-lettered; spilled spans are stored at the next start.
            """))
        print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
