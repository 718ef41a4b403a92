"""``%load_ext chainsight`` and ``%chainsight`` in IPython's own test shell
(``IPython.testing.globalipapp``), in a process of its own: the test shell
changes builtins and display hooks for the whole process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("IPython")
pytest.importorskip("litellm")

REPO = Path(__file__).resolve().parents[2]
OFFLINE = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_OFFLINE_MODE": "true",
           "LITELLM_MODE": "PRODUCTION", "HF_HUB_OFFLINE": "1", "LANGSMITH_TRACING": "false"}

SESSION = r'''
import json, os
from IPython.testing import globalipapp
from IPython.utils.capture import capture_output

globalipapp.start_ipython()
ip = globalipapp.get_ipython()
out = {}

def cell(name, code):
    with capture_output() as cap:
        result = ip.run_cell(code)
    assert result.success, (name, result.error_in_exec or result.error_before_exec, cap.stderr)
    out[name] = cap.stdout

cell("before", "%load_ext chainsight\n%chainsight")
out["switch"] = os.environ.get("CHAINSIGHT_TRACING")
cell("chain", """
from langchain_core.language_models import FakeListChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
chain = (ChatPromptTemplate.from_messages([("human", "{q}")])
         | FakeListChatModel(responses=["[bold red]x[/] \x1b[31mred <b>html</b> [@click=app.quit]"])
         | StrOutputParser())
answer = chain.invoke({"q": "hello [link=http://x]there[/link]"}, config={"run_name": "Ask [b]bold[/b]"})
""")
cell("show", "%chainsight")
import chainsight
trace_id = chainsight.get_observer().last_trace_id
cell("by_id", "%chainsight " + trace_id[-10:])
cell("unknown", "%chainsight zzzzzz")
cell("litellm", """
import litellm
litellm.suppress_debug_info = True
litellm.completion(model="gpt-4o", messages=[{"role": "user", "content": "hi"}], mock_response="Hello!")
""")
cell("show_litellm", "%chainsight")
cell("unload", "%unload_ext chainsight")
out["switch_after"] = os.environ.get("CHAINSIGHT_TRACING")
print(json.dumps(out))
'''


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("notebook")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHAINSIGHT_")}
    env.update(OFFLINE, PYTHONPATH=str(REPO), XDG_CONFIG_HOME=str(tmp / "xdg"), IPYTHONDIR=str(tmp / "ipython"),
               CHAINSIGHT_STORAGE_URL=f"sqlite:///{tmp / 'kernel.db'}")
    proc = subprocess.run([sys.executable, "-c", SESSION], capture_output=True, text=True, env=env, cwd=tmp,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result: dict[str, str] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def test_loading_the_extension_switches_tracing_on_and_unloading_off(session: dict[str, str]) -> None:
    assert session["switch"] == "true"
    assert session["switch_after"] is None


def test_before_any_trace_it_says_so(session: dict[str, str]) -> None:
    assert session["before"].startswith("no trace recorded in this kernel yet")


def test_the_last_trace_is_shown_as_a_tree(session: dict[str, str]) -> None:
    lines = session["show"].splitlines()
    assert lines[0].startswith("trace ") and lines[0].endswith("Ask [b]bold[/b]  [ok]")
    names = [line.split("  ")[0] for line in lines[lines.index(next(x for x in lines if x.startswith("SPAN"))) + 1:]
             if line and not line.startswith(("input:", "output:"))]
    assert names == ["Ask [b]bold[/b]", "├─ ChatPromptTemplate", "├─ FakeListChatModel",
                     "└─ StrOutputParser"]
    assert "input:  {'q': 'hello [link=http://x]there[/link]'}" in lines


def test_untrusted_text_is_plain_and_escaped(session: dict[str, str]) -> None:
    shown = session["show"]
    assert "output: [bold red]x[/]  [31mred <b>html</b> [@click=app.quit]" in shown
    assert "\x1b" not in shown


def test_a_trace_by_its_short_id_and_an_unknown_one(session: dict[str, str]) -> None:
    assert session["by_id"] == session["show"]
    assert session["unknown"].startswith("no trace matches 'zzzzzz' in sqlite:///")


def test_litellm_calls_in_the_kernel_are_traced(session: dict[str, str]) -> None:
    first = session["show_litellm"].splitlines()[0]
    assert first.startswith("trace ") and "litellm.completion" in first
    assert "gpt-4o" in session["show_litellm"]
