"""The example package of docs/PLUGINS.md, installed, passes its own tests
(with chainsight.testing's harness) and is what ``chainsight`` loads."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "chainsight-wordcount"
CHAINSIGHT = Path(sys.executable).parent / "chainsight"


def _run(*cmd: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120) -> str:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=env or os.environ.copy())
    assert proc.returncode == 0, f"{' '.join(cmd)} (in {cwd}) failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A copy of the example (a build leaves files beside the sources), installed
    with pip into a folder of its own; the environment that puts it on sys.path."""
    base = tmp_path_factory.mktemp("example")
    copy = base / "chainsight-wordcount"
    shutil.copytree(EXAMPLE, copy, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__",
                                                                  ".pytest_cache"))
    site = base / "site"
    _run(sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index", "-q",
         "--target", str(site), str(copy), cwd=base,
         env={**os.environ, "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))}
    return copy, env


def test_the_example_passes_its_own_tests_installed(example: tuple[Path, dict[str, str]]) -> None:
    copy, env = example
    where = _run(sys.executable, "-c", "import chainsight_wordcount.plugin as p; print(p.__file__)",
                 cwd=copy, env=env)
    assert "site" in Path(where.strip()).parts, f"imported from {where}, not the installed copy"
    # (without the snapshot plugins: the example's tests have no snapshots)
    out = _run(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:textual-snapshot",
               "-p", "no:syrupy", "tests", cwd=copy, env=env, timeout=180)
    summary = out.strip().splitlines()[-1]
    passed = re.search(r"(\d+) passed", summary)
    assert passed and int(passed.group(1)) >= 9, out
    assert not re.search(r"failed|error|skipped|xfail", summary), out


def test_chainsight_loads_it_by_its_entry_point(example: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    _, env = example
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    listed = json.loads(_run(str(CHAINSIGHT), "plugins", "--json", "--db", url, cwd=tmp_path, env=env))
    (entry,) = [e for e in listed if e["name"] == "wordcount"]
    assert entry["source"] == "entry point (chainsight-wordcount)"
    assert entry["version"] == "0.1.0" and entry["status"] == "active" and entry["problems"] == []
    assert entry["hooks"] == ["check_span", "configure", "register_commands", "shutdown", "spans_finished"]

    # A user's process: plugins.toml configures it, an observer loads it with the built-ins.
    config = tmp_path / "plugins.toml"
    config.write_text(f'[storage]\nurl = "{url}"\n\n[plugins.wordcount]\nmax_words = 3\n'
                      f'export_path = "{tmp_path / "spans.jsonl"}"\n')
    record = (
        "from chainsight import Observer\n"
        f"with Observer(config_path={str(config)!r}, strict=True) as obs:\n"
        "    with obs.span('answer', kind='llm') as span:\n"
        "        span.outputs = 'far too many words here'\n"
        "    assert obs.flush(10)\n"
    )
    _run(sys.executable, "-c", record, cwd=tmp_path, env=env)
    scores = json.loads(_run(str(CHAINSIGHT), "wordcount", "--json", "--config", str(config),
                             cwd=tmp_path, env=env))
    assert [(s["words"], s["label"], s["passed"]) for s in scores] == [(5, "too_long", False)]
    (line,) = (tmp_path / "spans.jsonl").read_text().splitlines()
    assert json.loads(line)["name"] == "answer"
