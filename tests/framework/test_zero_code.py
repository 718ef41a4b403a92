"""Zero-code tracing in one process: chainsight.instrument() / uninstrument(),
one span per run with explicit handlers too, threads, litellm, the process
context (CHAINSIGHT_USER...) and the after-import hook.

The scripts run under ``chainsight run`` and ``CHAINSIGHT_TRACING=true`` are in
test_zero_code_scripts.py; ``chainsight run`` itself in test_cli_run.py.
"""

from __future__ import annotations

import asyncio
import importlib.resources
import importlib.util
import json
import logging
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("LITELLM_OFFLINE_MODE", "true")
os.environ.setdefault("LITELLM_MODE", "PRODUCTION")
os.environ.setdefault("LANGSMITH_TRACING", "false")

litellm = pytest.importorskip("litellm")

from langchain_core.language_models import FakeListChatModel  # noqa: E402
from langchain_core.output_parsers import StrOutputParser  # noqa: E402
from langchain_core.prompts import ChatPromptTemplate  # noqa: E402
from langchain_core.runnables import RunnableLambda  # noqa: E402

import chainsight  # noqa: E402
from chainsight.framework import zero_code  # noqa: E402
from chainsight.framework.adapters.langchain import (  # noqa: E402
    AsyncCallbackHandler,
    CallbackHandler,
    TracingHandler,
)
from chainsight.framework.adapters.litellm import GlobalLitellmCallback, LitellmCallback  # noqa: E402
from chainsight.framework.model import Span  # noqa: E402
from chainsight.framework.observer import Observer  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "adapters"))
from langchain_helpers import all_traces, tree  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
_LITELLM_LISTS = ("callbacks", "success_callback", "failure_callback", "input_callback",
                  "_async_success_callback", "_async_failure_callback")
MESSAGES = [{"role": "user", "content": "Say hello"}]


def _observer(tmp_path: Path, name: str) -> Observer:
    from chainsight.plugins import token_estimate

    return Observer(f"sqlite:///{tmp_path / name}.db", builtins=(), entry_points=False, strict=True,
                    spill_path=tmp_path / f"{name}.spill.jsonl", plugins=[token_estimate])


@pytest.fixture(autouse=True)
def clean_process(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No switch, no process context from outside; litellm's lists and the switch restored."""
    for name in ("CHAINSIGHT_TRACING", "CHAINSIGHT_USER", "CHAINSIGHT_SESSION", "CHAINSIGHT_TAGS"):
        monkeypatch.delenv(name, raising=False)
    saved = {name: list(getattr(litellm, name)) for name in _LITELLM_LISTS}
    suppress, litellm.suppress_debug_info = litellm.suppress_debug_info, True
    try:
        yield
    finally:
        zero_code.uninstrument()
        for name, value in saved.items():
            setattr(litellm, name, value)
        litellm.suppress_debug_info = suppress


@pytest.fixture
def obs(tmp_path: Path) -> Iterator[Observer]:
    observer = _observer(tmp_path, "global")
    yield observer
    observer.shutdown(timeout=10)


@pytest.fixture
def explicit_obs(tmp_path: Path) -> Iterator[Observer]:
    observer = _observer(tmp_path, "explicit")
    yield observer
    observer.shutdown(timeout=10)


def build_chain(responses: list[str] | None = None) -> Any:
    prompt = ChatPromptTemplate.from_messages([("system", "Be brief."), ("human", "{q}")])
    return prompt | FakeListChatModel(responses=responses or ["Paris."]) | StrOutputParser()


def trees(observer: Observer) -> list[Any]:
    return sorted((tree(spans) for spans in all_traces(observer).values()), key=repr)


def span_ids(observer: Observer) -> list[str]:
    return [s.span_id for spans in all_traces(observer).values() for s in spans]


# ---- LangChain ---------------------------------------------------------------------


def test_instrument_traces_every_run_as_the_explicit_handler_does(
        obs: Observer, explicit_obs: Observer) -> None:
    build_chain().invoke({"q": "Capital of France?"}, config={"callbacks": [CallbackHandler(explicit_obs)]})

    chainsight.instrument(obs)
    assert os.environ["CHAINSIGHT_TRACING"] == "true"
    assert build_chain().invoke({"q": "Capital of France?"}) == "Paris."

    assert trees(obs) == trees(explicit_obs) == [
        ("RunnableSequence", "chain", [("ChatPromptTemplate", "prompt", []),
                                       ("FakeListChatModel", "llm", []),
                                       ("StrOutputParser", "parser", [])]),
    ]
    [spans] = all_traces(obs).values()
    [llm] = [s for s in spans if s.kind == "llm"]
    assert llm.outputs is not None and llm.output_tokens  # recorded like any span, and estimated


def test_uninstrument_stops_tracing(obs: Observer) -> None:
    chainsight.instrument(obs)
    build_chain().invoke({"q": "one"})
    chainsight.uninstrument()
    assert "CHAINSIGHT_TRACING" not in os.environ
    build_chain().invoke({"q": "two"})
    assert len(all_traces(obs)) == 1
    chainsight.instrument(obs)  # and on again
    build_chain().invoke({"q": "three"})
    assert len(all_traces(obs)) == 2


def test_threads_started_before_instrument_are_traced_too(obs: Observer) -> None:
    """The switch is an environment variable, not a context variable: a thread
    that already runs (a server's worker) sees it."""
    go, done = threading.Event(), threading.Event()

    def worker() -> None:
        go.wait(10)
        build_chain().invoke({"q": "from a worker thread"})
        done.set()

    thread = threading.Thread(target=worker)
    thread.start()
    chainsight.instrument(obs)
    go.set()
    assert done.wait(30)
    thread.join()
    assert len(all_traces(obs)) == 1


async def test_async_runs_are_traced(obs: Observer) -> None:
    chainsight.instrument(obs)
    results = await asyncio.gather(*(build_chain([f"answer {i}"]).ainvoke({"q": str(i)}) for i in range(5)))
    assert results == [f"answer {i}" for i in range(5)]
    traces = all_traces(obs)
    assert len(traces) == 5
    assert {len(spans) for spans in traces.values()} == {4}


# ---- one span per run ------------------------------------------------------------------


def test_explicit_handler_at_the_root_records_the_run_alone(obs: Observer, explicit_obs: Observer) -> None:
    chainsight.instrument(obs)
    handler = CallbackHandler(explicit_obs)
    build_chain().invoke({"q": "x"}, config={"callbacks": [handler]})
    assert all_traces(obs) == {}
    assert [tree(s)[0] for s in all_traces(explicit_obs).values()] == ["RunnableSequence"]
    assert len(span_ids(explicit_obs)) == 4
    assert handler.open_runs == 0


async def test_explicit_async_handler_at_the_root_records_the_run_alone(
        obs: Observer, explicit_obs: Observer) -> None:
    chainsight.instrument(obs)
    await build_chain().ainvoke({"q": "x"}, config={"callbacks": [AsyncCallbackHandler(explicit_obs)]})
    assert all_traces(obs) == {}
    assert len(span_ids(explicit_obs)) == 4


def test_explicit_handler_into_the_same_observer_gives_one_span_per_run(obs: Observer) -> None:
    chainsight.instrument(obs)
    build_chain().invoke({"q": "x"}, config={"callbacks": [CallbackHandler(obs)]})
    build_chain().invoke({"q": "y"})
    ids = span_ids(obs)
    assert len(ids) == len(set(ids)) == 8
    assert len(all_traces(obs)) == 2
    assert obs.stats().queued == 8  # recorded once each (the store would hide a second copy)


def test_explicit_handler_on_a_nested_call_takes_that_run_and_its_children(
        obs: Observer, explicit_obs: Observer) -> None:
    """LangChain calls the inherited global handler first here: its span of the
    nested run is dropped when the explicit handler claims the run."""
    chainsight.instrument(obs)
    inner = build_chain(["inner answer"])
    outer = RunnableLambda(lambda q: q.upper()) | RunnableLambda(
        lambda q: inner.invoke({"q": q}, config={"callbacks": [CallbackHandler(explicit_obs)]}))
    assert outer.invoke("question") == "inner answer"

    [global_spans] = all_traces(obs).values()
    [explicit_spans] = all_traces(explicit_obs).values()
    assert tree(explicit_spans)[0] == "RunnableSequence" and len(explicit_spans) == 4
    assert not {s.span_id for s in global_spans} & {s.span_id for s in explicit_spans}
    # the global trace keeps the outer runs
    assert [s.name for s in global_spans] == ["RunnableSequence", "RunnableLambda", "RunnableLambda"]


def test_tracing_handler_is_added_once_per_run_tree(obs: Observer) -> None:
    seen: list[list[str]] = []

    def spy(x: str, config: Any) -> str:
        seen.append([type(h).__name__ for h in config["callbacks"].handlers])
        return x

    chainsight.instrument(obs)
    (RunnableLambda(lambda x: x) | RunnableLambda(spy)).invoke("x")
    assert seen == [["TracingHandler"]]
    assert TracingHandler.__mro__[1] is CallbackHandler


# ---- litellm ---------------------------------------------------------------------------


def _in_lists(callback: object) -> list[str]:
    return [name for name in _LITELLM_LISTS if callback in getattr(litellm, name)]


def test_litellm_calls_are_traced_and_uninstrument_removes_the_callback(obs: Observer) -> None:
    chainsight.instrument(obs)
    callback = zero_code._litellm_callback
    assert isinstance(callback, GlobalLitellmCallback)
    assert _in_lists(callback) == list(_LITELLM_LISTS)
    litellm.callbacks = []  # an application resetting litellm.callbacks does not switch it off
    litellm.completion(model="gpt-4o", messages=MESSAGES, mock_response="Hello!")
    assert zero_code.flush(10)
    [spans] = all_traces(obs).values()
    assert [(s.name, s.model, s.input_tokens, s.output_tokens) for s in spans] == [
        ("litellm.completion", "gpt-4o", 10, 20)]

    chainsight.uninstrument()
    assert _in_lists(callback) == []
    litellm.completion(model="gpt-4o", messages=MESSAGES, mock_response="Hello!")
    assert obs.flush(10)
    assert len(all_traces(obs)) == 1


def test_explicit_litellm_callback_and_switch_give_one_span(obs: Observer, explicit_obs: Observer) -> None:
    chainsight.instrument(obs)
    explicit = LitellmCallback(explicit_obs)
    litellm.callbacks = [explicit]
    litellm.completion(model="gpt-4o", messages=MESSAGES, mock_response="Hello!")
    assert explicit.flush(10)
    assert zero_code.flush(10)
    assert all_traces(obs) == {}
    [spans] = all_traces(explicit_obs).values()
    assert [s.name for s in spans] == ["litellm.completion"]


def test_litellm_call_inside_a_traced_chain_nests_under_its_run(obs: Observer) -> None:
    chainsight.instrument(obs)

    def call(q: str) -> str:
        response = litellm.completion(model="gpt-4o", messages=[{"role": "user", "content": q}],
                                      mock_response="Hi")
        return str(response.choices[0].message.content)

    (RunnableLambda(lambda q: q) | RunnableLambda(call)).invoke("hello")
    assert zero_code.flush(10)
    [spans] = all_traces(obs).values()
    assert tree(spans) == ("RunnableSequence", "chain", [
        ("RunnableLambda", "chain", []),
        ("call", "chain", [("litellm.completion", "llm", [])]),
    ])


# ---- per-process context ---------------------------------------------------------------


def test_process_context_applies_to_every_trace(obs: Observer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHAINSIGHT_USER", "u1")
    monkeypatch.setenv("CHAINSIGHT_SESSION", "s1")
    monkeypatch.setenv("CHAINSIGHT_TAGS", "batch, nightly,,batch")
    chainsight.instrument(obs)
    build_chain().invoke({"q": "a"}, config={"run_name": "plain"})
    build_chain().invoke({"q": "b"}, config={"run_name": "own-user", "metadata": {"user_id": "u2"},
                                             "tags": ["mine"]})
    litellm.completion(model="gpt-4o", messages=MESSAGES, mock_response="Hello!",
                       metadata={"tags": ["from-litellm"]})
    with obs.span("manual"):
        pass
    assert zero_code.flush(10)

    roots: dict[str, Span] = {s[0].name: s[0] for s in all_traces(obs).values()}
    assert set(roots) == {"plain", "own-user", "litellm.completion", "manual"}
    assert {name: (r.user_id, r.session_id) for name, r in roots.items()} == {
        "plain": ("u1", "s1"), "own-user": ("u2", "s1"),
        "litellm.completion": ("u1", "s1"), "manual": ("u1", "s1")}
    assert list(roots["plain"].tags) == ["batch", "nightly"]
    assert list(roots["own-user"].tags) == ["batch", "nightly", "mine"]
    assert list(roots["litellm.completion"].tags) == ["batch", "nightly", "from-litellm"]
    assert list(roots["manual"].tags) == ["batch", "nightly"]


def test_a_handlers_own_user_wins_over_the_process_one(explicit_obs: Observer,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHAINSIGHT_USER", "u1")
    build_chain().invoke({"q": "a"}, config={"callbacks": [CallbackHandler(explicit_obs, user_id="me")]})
    [spans] = all_traces(explicit_obs).values()
    assert {s.user_id for s in spans} == {"me"}


# ---- the switch and the after-import hook -------------------------------------------------


@pytest.mark.parametrize(("value", "on"), [("true", True), ("1", True), ("YES", True), (" on ", True),
                                           ("false", False), ("0", False), ("off", False), ("", False),
                                           ("maybe", None)])
def test_parse_switch(value: str, on: bool | None) -> None:
    assert zero_code.parse_switch(value) is on


def test_a_value_that_is_neither_on_nor_off_is_said_and_leaves_tracing_off(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("CHAINSIGHT_TRACING", "maybe")
    with caplog.at_level(logging.WARNING, logger="chainsight"):
        assert zero_code.instrument_from_environment() is False
    assert not zero_code.is_instrumented()
    assert "CHAINSIGHT_TRACING='maybe' is neither true nor false" in caplog.text


def test_after_import_hook_runs_after_the_module_and_leaves_it_its_own_loader(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"zc_probe_{uuid.uuid4().hex[:8]}"
    package = tmp_path / name
    package.mkdir()
    (package / "__init__.py").write_text("import importlib.resources\n"
                                         "DATA = importlib.resources.files(__name__).joinpath('data.txt').read_text()\n")
    (package / "data.txt").write_text("payload")
    monkeypatch.syspath_prepend(str(tmp_path))
    hook = zero_code._AfterImport()
    seen: list[Any] = []
    hook.when_imported(name, lambda module: seen.append((module.__name__, module.DATA)))
    hook.when_imported("never_imported_" + name, lambda module: seen.append("wrong"))
    assert sys.meta_path[0] is hook
    try:
        found = importlib.util.find_spec(name)  # found, not imported: the loader still answers
        assert found is not None and found.loader is not None
        assert found.loader.get_filename(name) == str(package / "__init__.py")
        assert found.loader.is_package(name) and name not in sys.modules and seen == []
        module = __import__(name)
        assert seen == [(name, "payload")]
        assert type(module.__loader__).__name__ == "SourceFileLoader"
        assert module.__spec__.loader is module.__loader__
        assert importlib.resources.files(module).joinpath("data.txt").read_text() == "payload"
        assert hook in sys.meta_path  # still waiting for the other name
        hook.cancel("never_imported_" + name)
        assert hook not in sys.meta_path
        hook.when_imported(name, lambda module: seen.append("now"))  # already imported: at once
        assert seen[-1] == "now" and hook not in sys.meta_path
    finally:
        if hook in sys.meta_path:
            sys.meta_path.remove(hook)
        sys.modules.pop(name, None)


def test_a_failing_instrumentation_never_breaks_the_import(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    name = f"zc_probe_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    def broken(module: Any) -> None:
        raise RuntimeError("no such API")

    hook = zero_code._AfterImport()
    hook.when_imported(name, broken)
    try:
        with caplog.at_level(logging.WARNING, logger="chainsight"):
            assert __import__(name).VALUE == 1
        assert f"could not instrument {name} (RuntimeError: no such API)" in caplog.text
    finally:
        hook.cancel(name)
        sys.modules.pop(name, None)


LAZY = """
import json, sys
import chainsight
from chainsight.framework import zero_code
report = {"after_import": sorted(m for m in sys.modules if m.split(".")[0] in ("litellm", "langchain_core", "textual")),
          "finder": any(isinstance(f, zero_code._AfterImport) for f in sys.meta_path)}
import litellm
report["litellm_callback"] = [type(c).__name__ for c in litellm.callbacks]
report["litellm_loader"] = type(litellm.__loader__).__name__
from langchain_core.language_models import FakeListChatModel
report["finder_after"] = any(isinstance(f, zero_code._AfterImport) for f in sys.meta_path)
from langchain_core.runnables import RunnableLambda
handlers = []
(RunnableLambda(lambda x: x) | RunnableLambda(lambda x, config: handlers.extend(type(h).__name__ for h in config["callbacks"].handlers))).invoke(1)
report["handlers"] = handlers
print(json.dumps(report))
"""


def test_the_switch_at_import_instruments_each_library_when_it_is_imported(tmp_path: Path) -> None:
    env = {**os.environ, "CHAINSIGHT_TRACING": "true", "PYTHONPATH": str(REPO),
           "CHAINSIGHT_STORAGE_URL": f"sqlite:///{tmp_path / 'lazy.db'}", "LANGSMITH_TRACING": "false"}
    proc = subprocess.run([sys.executable, "-c", LAZY], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report == {
        "after_import": [],  # import chainsight loads neither litellm nor langchain_core (nor Textual)
        "finder": True,
        "litellm_callback": ["GlobalLitellmCallback"],
        "litellm_loader": "SourceFileLoader",
        "finder_after": False,  # both instrumented: the finder left sys.meta_path
        "handlers": ["TracingHandler"],
    }
