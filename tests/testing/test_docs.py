"""The plugin snippets of README.md and docs/PLUGINS.md work as written."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from chainsight.testing import PluginHarness

ROOT = Path(__file__).resolve().parents[2]


def _snippet(document: Path) -> str:
    blocks = re.findall(r"```python\n(# my_plugin\.py\n.*?)```", document.read_text(encoding="utf-8"), re.S)
    assert len(blocks) == 1, f"{document.name}: expected one '# my_plugin.py' example"
    return blocks[0]


@pytest.mark.parametrize("document", ["README.md", "docs/PLUGINS.md"])
def test_the_first_plugin_example(document: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from langchain_core.language_models import FakeListChatModel

    (tmp_path / "my_plugin.py").write_text(_snippet(ROOT / document), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "my_plugin", raising=False)
    with PluginHarness("my_plugin", config={"max_words": 3}, directory=tmp_path / "run") as h:
        FakeListChatModel(responses=["far too many words"]).invoke("hi", config={"callbacks": [h.handler()]})
        with h.span("short", kind="llm") as short:
            short.outputs = "just fine"
        result = h.flush()
    assert result.plugin is not None and result.plugin.hooks == ("check_span", "configure")
    (model,) = [s for s in result.spans if s.kind == "llm" and s.name != "short"]
    assert [(s.value, s.passed) for s in result.scores_for(model)] == [(4.0, False)]
    assert [(s.value, s.passed) for s in result.scores_for(short)] == [(2.0, True)]
