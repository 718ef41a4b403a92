"""The dependency rules of DESIGN.md, enforced."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from chainsight.framework import hookspecs

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


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def test_packages_import_each_other_only_through_chainsight() -> None:
    """The folders are installed as ``chainsight.*``: an import of a bare
    ``framework``/``plugins``/``storage``/``tui`` would load a second copy (or
    an application's own package of that name)."""
    bare = {"framework", "plugins", "storage", "tui"}
    offenders = [
        f"{p.relative_to(ROOT)}: {name}"
        for p in _python_files("chainsight", "framework", "plugins", "storage", "tui", "tests", "bench",
                               "scripts")
        for name in _imports(p)
        if name.split(".")[0] in bare
    ]
    assert offenders == []


def test_import_chainsight_loads_neither_litellm_nor_textual() -> None:
    code = (
        "import sys, chainsight, chainsight.framework.observer, chainsight.framework.cli\n"
        "import chainsight.framework.config\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'litellm', 'textual', 'langchain_core'})\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "", f"import chainsight pulled in: {out.stdout.strip()}"


def test_framework_never_imports_plugins_by_name() -> None:
    offenders = [
        str(p.relative_to(ROOT))
        for p in _python_files("framework", "storage")
        if any(_within(name, "chainsight.plugins") for name in _imports(p))
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
        if p.name != "tui_command.py" and any(_within(n, "chainsight.tui") for n in _imports(p))
    ]
    assert offenders == []


HOOKS = sorted(name for name in dir(hookspecs) if hasattr(getattr(hookspecs, name), "chainsight_spec"))


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_has_a_test_implementing_it(hook: str) -> None:
    """A meta-test: each hook must be implemented by some test plugin."""
    needle = f"def {hook}("
    for path in (ROOT / "tests").rglob("*.py"):
        if path.name != "test_boundaries.py" and needle in path.read_text(encoding="utf-8"):
            return
    pytest.fail(f"no test implements the {hook!r} hook")


def test_every_hook_is_documented() -> None:
    assert len(HOOKS) >= 16
    for name in HOOKS:
        assert (getattr(hookspecs, name).__doc__ or "").strip(), f"hook {name} is undocumented"


# Extras whose package no module imports, because a library loads it by name.
LOADED_BY_NAME = {"psycopg": "SQLAlchemy's postgresql+psycopg dialect (storage/engine.py)"}


def _requirement_name(requirement: str) -> str:
    name = requirement.split(";")[0].split("[")[0]
    for stop in "<>=!~ ":
        name = name.split(stop)[0]
    return name.strip().lower().replace("_", "-")


def test_every_extra_installs_only_what_code_imports() -> None:
    """An extra installs packages some module of the distribution imports
    (or that SQLAlchemy loads by URL); ``dev`` aside."""
    import importlib.metadata
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    modules: dict[str, set[str]] = {}
    for module, dists in importlib.metadata.packages_distributions().items():
        for dist in dists:
            modules.setdefault(dist.lower().replace("_", "-"), set()).add(module)
    imported = {name.split(".")[0] for p in _python_files("framework", "plugins", "storage", "tui")
                for name in _imports(p)}
    unused = []
    for extra, requirements in extras.items():
        if extra == "dev":
            continue
        for requirement in requirements:
            name = _requirement_name(requirement)
            if name.startswith("chainsight") or name in LOADED_BY_NAME:
                continue
            assert name in modules, f"extra {extra!r}: {name} is not installed in this environment"
            if not modules[name] & imported:
                unused.append(f"{extra}: {name} (modules {sorted(modules[name])})")
    assert unused == [], "extras install packages no code imports"
    assert "postgresql+psycopg://" in (ROOT / "storage" / "engine.py").read_text()


def test_required_dependencies_are_imported_without_a_fallback() -> None:
    """A required dependency is imported plainly: no ``except ImportError``
    around it that keeps a second code path alive."""
    import importlib.metadata
    import tomllib

    required = {_requirement_name(r) for r in
                tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]}
    dists = importlib.metadata.packages_distributions()
    offenders = []
    for path in _python_files("framework", "plugins", "storage", "tui"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Try):
                continue
            caught = {ast.unparse(h.type) for h in node.handlers if h.type is not None}
            if not caught & {"ImportError", "ModuleNotFoundError"}:
                continue
            for stmt in node.body:
                names = ([a.name for a in stmt.names] if isinstance(stmt, ast.Import) else
                         [stmt.module] if isinstance(stmt, ast.ImportFrom) and stmt.module else [])
                for name in names:
                    owners = {d.lower().replace("_", "-") for d in dists.get(name.split(".")[0], [])}
                    if owners & required:
                        offenders.append(f"{path.relative_to(ROOT)}:{stmt.lineno}: {name}")
    assert offenders == []
