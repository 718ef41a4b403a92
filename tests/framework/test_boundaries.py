"""The dependency rules of DESIGN.md, enforced."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from framework import hookspecs

ROOT = Path(__file__).resolve().parents[2]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _python_files(*packages: str) -> list[Path]:
    return [p for pkg in packages for p in (ROOT / pkg).rglob("*.py")]


def test_import_framework_loads_neither_litellm_nor_textual() -> None:
    code = (
        "import sys, framework, framework.observer, framework.cli, framework.config\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'litellm', 'textual', 'langchain_core'})\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "", f"import framework pulled in: {out.stdout.strip()}"


def test_framework_never_imports_plugins_by_name() -> None:
    offenders = [
        str(p.relative_to(ROOT))
        for p in _python_files("framework", "storage")
        if any(name == "plugins" or name.startswith("plugins.") for name in _imports(p))
    ]
    assert offenders == []


def test_only_tui_imports_textual() -> None:
    offenders = [
        str(p.relative_to(ROOT))
        for p in _python_files("framework", "storage", "plugins")
        if any(name.split(".")[0] == "textual" for name in _imports(p))
    ]
    assert offenders == []


def test_nothing_imports_tui_but_its_command_plugin() -> None:
    offenders = [
        str(p.relative_to(ROOT))
        for p in _python_files("framework", "storage", "plugins")
        if p.name != "tui_command.py" and any(n == "tui" or n.startswith("tui.") for n in _imports(p))
    ]
    assert offenders == []


HOOKS = sorted(hookspecs.PIPELINE_HOOKS + hookspecs.STARTUP_HOOKS)


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_has_a_test_implementing_it(hook: str) -> None:
    """A meta-test: each hook must be implemented by some test plugin."""
    needle = f"def {hook}("
    for path in (ROOT / "tests").rglob("*.py"):
        if path.name != "test_boundaries.py" and needle in path.read_text(encoding="utf-8"):
            return
    pytest.fail(f"no test implements the {hook!r} hook")


def test_hookspec_lists_are_complete() -> None:
    declared = {
        name for name in dir(hookspecs)
        if hasattr(getattr(hookspecs, name), "chainsight_spec")
    }
    assert declared == set(HOOKS)
    for name in declared:
        assert (getattr(hookspecs, name).__doc__ or "").strip(), f"hook {name} is undocumented"
