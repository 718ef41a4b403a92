"""Issue 17, must show: an unmodified application (zero_code_app/app.py: a
LangChain chain, sync and async, a LangGraph agent, a failing chain and a
litellm call, none of which mention Chainsight) is traced under
``chainsight run`` and under ``CHAINSIGHT_TRACING=true`` exactly as with
Chainsight's handlers passed explicitly (zero_code_app/explicit.py); and the
explicit handlers plus the switch still give one span per run.

Each run is a real process with its own SQLite store and the default
configuration (all built-in plugins); the four are started together.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("langgraph")
pytest.importorskip("litellm")

from chainsight.storage.query import Store, TraceFilter

APP = Path(__file__).resolve().parent / "zero_code_app"
REPO = Path(__file__).resolve().parents[2]
CHAINSIGHT = Path(sys.executable).parent / "chainsight"
OFFLINE = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_OFFLINE_MODE": "true",
           "LITELLM_MODE": "PRODUCTION", "HF_HUB_OFFLINE": "1", "LANGSMITH_TRACING": "false"}
# A host process that imports chainsight (as a notebook kernel, a worker or a
# server of the application would) and runs the unmodified script; at its end
# it waits for the pipeline, as explicit.py does (a program this short may
# exit before the observer, started by its first span while the program
# imports LangGraph and litellm, has read the configured exit deadline).
HOST = ("import sys, runpy, chainsight\n"
        "sys.argv = sys.argv[1:]; sys.path.insert(0, {app!r})\n"
        "try:\n    runpy.run_path(sys.argv[0], run_name='__main__')\n"
        "finally:\n    chainsight.get_observer().flush(120)\n")


def _env(tmp_path: Path, name: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("CHAINSIGHT_") or k == "CHAINSIGHT_TEST_POSTGRES_URL"}
    env.update(OFFLINE, XDG_CONFIG_HOME=str(tmp_path / "xdg"), PYTHONPATH=str(REPO),
               CHAINSIGHT_STORAGE_URL=_url(tmp_path, name), **extra)
    return env


def _url(tmp_path: Path, name: str) -> str:
    return f"sqlite:///{tmp_path / name}.db"


def _start(cmd: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(cmd, env=env, cwd=cwd, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def _tree(span: Any, children: dict[str | None, list[Any]]) -> Any:
    kids = sorted(children.get(span.span_id, []), key=lambda k: (k.start_ns, k.span_id))
    return (span.name, span.kind, span.status, tuple(_tree(k, children) for k in kids))


def _traces(url: str) -> list[Any]:
    """Every stored trace as (tree, its LLM calls, status, span count), sorted:
    what must be equal between the ways of tracing."""
    store = Store(url, create=False)
    try:
        out = []
        for t in store.list_traces(TraceFilter(), limit=1000).items:
            detail = store.get_trace(t.trace_id)
            assert detail is not None
            children: dict[str | None, list[Any]] = {}
            for s in detail.spans:
                children.setdefault(s.parent_id, []).append(s)
            [root] = children[None]
            assert {s.trace_id for s in detail.spans} == {t.trace_id}
            llm = sorted((s.name, s.model, s.input_tokens, s.output_tokens, s.status)
                         for s in detail.spans if s.kind == "llm")
            out.append((_tree(root, children), tuple(llm), t.status, t.span_count))
        return sorted(out, key=repr)
    finally:
        store.close()


def _written(url: str) -> int:
    """How many spans the process's pipeline wrote (its counters, stored at exit)."""
    store = Store(url, create=False)
    try:
        return store.pipeline_totals()["written"]
    finally:
        store.close()


def test_unmodified_app_is_traced_like_explicit_handlers(tmp_path: Path) -> None:
    # Four processes on a small machine: the exit deadline (spans still in the
    # pipeline then go to the spill file, not the store) must not depend on its load.
    (tmp_path / "plugins.toml").write_text("[pipeline]\nshutdown_timeout_s = 120\n")
    script = str(APP / "app.py")
    runs = {
        "explicit": _start([sys.executable, str(APP / "explicit.py")], _env(tmp_path, "explicit"), tmp_path),
        "run": _start([str(CHAINSIGHT), "run", "--db", _url(tmp_path, "run"), "--", "python", script, "3"],
                      _env(tmp_path, "other"), tmp_path),
        "switch": _start([sys.executable, "-c", HOST.format(app=str(APP)), script],
                         _env(tmp_path, "switch", CHAINSIGHT_TRACING="true"), tmp_path),
        "explicit+switch": _start([sys.executable, str(APP / "explicit.py")],
                                  _env(tmp_path, "explicit+switch", CHAINSIGHT_TRACING="true"), tmp_path),
    }
    results = {name: (proc.wait(timeout=300), *proc.communicate()) for name, proc in runs.items()}
    for name, (code, out, err) in results.items():
        assert "Traceback" not in err, f"{name}: {err}"
        assert code == (3 if name == "run" else 0), f"{name} exited {code}: {err}"
        assert "It is sunny in Paris." in out and "Hello from litellm." in out, f"{name}: {out}"
    assert "argv: ['3']" in results["run"][1]

    baseline = _traces(_url(tmp_path, "explicit"))
    names = sorted(tree[0][0] for tree in baseline)
    assert names == ["LangGraph", "RunnableSequence", "RunnableSequence", "RunnableSequence",
                     "litellm.completion"], names
    graph = next(tree for tree in baseline if tree[0][0] == "LangGraph")
    assert [node[0] for node in graph[0][3]] == ["agent", "tools", "agent"], graph  # nested in the graph
    assert ("litellm.completion", "gpt-4o-mini", 10, 20, "ok") in next(
        tree[1] for tree in baseline if tree[0][0] == "litellm.completion")
    written = _written(_url(tmp_path, "explicit"))
    assert written == sum(t[3] for t in baseline)
    for name in ("run", "switch", "explicit+switch"):
        assert _traces(_url(tmp_path, name)) == baseline, f"{name} differs from explicit handlers: {results[name][2]}"
        # each span recorded once (a second copy under the same span id would be hidden by the store)
        assert _written(_url(tmp_path, name)) == written, name

    # chainsight run: where the spans went, then the summary, on stderr
    err = results["run"][2]
    spans = sum(t[3] for t in baseline)
    assert f"python {script} exited with status 3 after" in err
    assert f"chainsight: {spans} spans stored in {_url(tmp_path, 'run')}" in err
    summary = err[err.index("COUNT"):].splitlines()
    assert summary[1].split()[:3] == ["traces", "5", "1"], summary  # 5 traces, 1 failed
    assert any(line.startswith("gpt-4o-mini ") for line in summary), summary
    assert "ValueError: the lookup service is down" in err
    assert "chainsight traces --db" in err
