"""Every built-in check keeps its settings per observer: two observers in one
process, configured differently, judge the same trace differently."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from chainsight.framework.config import apply_defaults
from chainsight.framework.defaults import DEFAULT_PLUGINS
from chainsight.framework.model import Score, Span
from chainsight.framework.observer import Observer
from chainsight.framework.plugin_manager import PluginSet, load_plugins
from tests.plugins.cases.store import score_rows

CHECKS = ("length", "refusal", "toxicity", "pii", "json_schema", "groundedness")

ANSWER = ("Computer says no. Paris is the capital of France and has about two million people. "
          "Write to jane.doe@example.com, you idiot.")
DOCUMENTS = "Paris is the capital of France. About two million people live in Paris."

# What the second observer changes; the first runs with the defaults.
STRICTER = """
[plugins.length]
max_chars = 20
[plugins.refusal]
extra_patterns = ["computer says no"]
[plugins.toxicity]
threshold = 0.99
[plugins.pii]
kinds = ["phone"]
[plugins.json_schema.schemas]
root = { type = "object" }
[plugins.groundedness]
threshold = 0.4
"""


def _observer(tmp_path: Path, name: str, config: str) -> tuple[Observer, str]:
    path = tmp_path / f"{name}.toml"
    path.write_text(config)
    url = f"sqlite:///{tmp_path / name}.db"
    builtins = [(n, dotted) for n, dotted in DEFAULT_PLUGINS if n in CHECKS]
    obs = Observer(url, config_path=path, builtins=builtins, entry_points=False, strict=True,
                   spill_path=tmp_path / f"{name}.spill")
    return obs, url


def _record(obs: Observer, url: str) -> dict[str, dict[str, Any]]:
    with obs.span("root") as root:
        with obs.span("search", kind="retriever") as retriever:
            retriever.outputs = [{"page_content": DOCUMENTS}]
        root.outputs = ANSWER
    assert obs.flush(10)
    return {r["name"]: r for r in score_rows(url) if r["source"] == "check"}


def test_two_observers_check_with_their_own_settings(tmp_path: Path) -> None:
    # Both are built (and configured) before either records anything: with
    # settings in module globals, the second configuration won for both.
    default, default_url = _observer(tmp_path, "default", "")
    stricter, stricter_url = _observer(tmp_path, "stricter", STRICTER)
    try:
        a = _record(default, default_url)
        b = _record(stricter, stricter_url)
    finally:
        default.shutdown(5)
        stricter.shutdown(5)

    assert (a["length"]["label"], b["length"]["label"]) == ("ok", "too_long")
    assert (a["refusal"]["passed"], b["refusal"]["passed"]) == (True, False)
    assert "threshold 0.50" in a["toxicity"]["comment"] and "threshold 0.99" in b["toxicity"]["comment"]
    assert (a["pii"]["label"], b["pii"]["label"]) == ("email", "clean")
    assert "json_schema" not in a and b["json_schema"]["label"] == "not_json"
    assert a["groundedness"]["value"] == b["groundedness"]["value"] == 0.5
    assert (a["groundedness"]["passed"], b["groundedness"]["passed"]) == (False, True)


def _configure(plugins: PluginSet, name: str, config: dict[str, Any]) -> None:
    config = apply_defaults(plugins.schemas[name], dict(config))
    plugins.pm.hook.configure(observer=None, config=config)


def _judge(plugins: PluginSet) -> dict[str, tuple[Any, ...]]:
    root = Span("root")
    retriever = Span("search", "retriever", trace_id=root.trace_id, parent_id=root.span_id)
    retriever.outputs, root.outputs = [{"page_content": DOCUMENTS}], ANSWER
    retriever.end_ns = root.end_ns = root.start_ns + 1
    scores: list[Score] = []
    for found in plugins.pm.hook.check_span(span=root):
        scores += found
    for found in plugins.pm.hook.trace_finished(root=root, spans=(root, retriever)):
        scores += found
    return {s.name: (s.value, s.label, s.passed, s.comment) for s in scores}


@pytest.mark.parametrize("name", CHECKS)
def test_configuring_a_second_observer_leaves_the_first_alone(name: str) -> None:
    """Observers built at the same time (each starts on its own worker thread)
    may configure their plugins in any interleaving."""
    dotted = dict(DEFAULT_PLUGINS)[name]
    alone = load_plugins(None, builtins=[(name, dotted)], entry_points=False, strict=True)
    _configure(alone, name, {})
    expected = _judge(alone)

    first = load_plugins(None, builtins=[(name, dotted)], entry_points=False, strict=True)
    second = load_plugins(None, builtins=[(name, dotted)], entry_points=False, strict=True)
    _configure(first, name, {})
    _configure(second, name, tomllib.loads(STRICTER)["plugins"][name])
    a, b = _judge(first), _judge(second)
    assert a == expected
    assert name in b and a != b


@pytest.mark.parametrize("name", CHECKS)
def test_each_check_plugin_is_one_instance_per_observer(name: str) -> None:
    dotted = dict(DEFAULT_PLUGINS)[name]
    first = load_plugins(None, builtins=[(name, dotted)], entry_points=False, strict=True)
    second = load_plugins(None, builtins=[(name, dotted)], entry_points=False, strict=True)
    a, b = first.pm.get_plugin(name), second.pm.get_plugin(name)
    assert a is not None and b is not None and a is not b
    assert first.schemas[name] is not None  # the instance carries the module's CONFIG_SCHEMA


@pytest.mark.parametrize(("name", "dotted"), DEFAULT_PLUGINS)
def test_builtins_keep_no_state_in_module_globals(name: str, dotted: str) -> None:
    """A built-in with configuration is a ``create_plugin()`` factory (one
    instance per observer), and no built-in assigns module globals."""
    import ast
    import importlib
    import inspect

    module = importlib.import_module(dotted)
    if hasattr(module, "CONFIG_SCHEMA") or hasattr(module, "configure"):
        assert callable(getattr(module, "create_plugin", None)), f"{dotted} has configuration but no create_plugin"
        assert not hasattr(module, "configure"), f"{dotted}: configure belongs on the instance"
    tree = ast.parse(inspect.getsource(module))
    assert not [n for n in ast.walk(tree) if isinstance(n, ast.Global)], f"{dotted} assigns a module global"
