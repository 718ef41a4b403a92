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
    documented = sorted([
        "configure", "register_commands", "setup_problems",  # startup
        "process_span", "price_span", "check_span", "process_score", "trace_finished", "spans_finished",
        "samples_collected", "alert_changed", "feedback_recorded", "shutdown",  # pipeline
        "collect_samples",  # sampler
        "evaluate",  # evaluation runs
    ])
    assert documented == HOOKS
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


# ---- import cycles ------------------------------------------------------------
# Edges (importer, imported) allowed to close a cycle, each with its reason.
# Any other cycle among the chainsight.* modules fails the test below.
ALLOWED_CYCLE_EDGES: dict[tuple[str, str], str] = {
    # Type-only (under TYPE_CHECKING): the ``configure`` hookspec annotates its
    # ``observer`` argument; observer -> plugin_manager -> hookspecs at run time.
    ("chainsight.framework.hookspecs", "chainsight.framework.observer"):
        "type annotation of the configure hook's observer argument",
}


def _module_name(path: Path) -> str:
    parts = ["chainsight", *path.relative_to(ROOT).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _import_graph() -> dict[str, set[str]]:
    """Module -> the chainsight.* modules it imports anywhere in its text
    (module level, function-local and type-only imports alike)."""
    files = {_module_name(p): p for p in _python_files("framework", "plugins", "storage", "tui")}
    files["chainsight"] = ROOT / "chainsight" / "__init__.py"
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                wanted = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = package[: len(package) - (node.level - 1)]
                    base = ".".join([*parent, base] if base else parent)
                # ``from pkg import mod`` imports the module pkg.mod.
                wanted = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            else:
                continue
            for target in wanted:
                while target and target not in files:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    targets.add(target)
        graph[name] = targets
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = stack[stack.index(node):]
            del stack[stack.index(node):]
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles() -> None:
    graph = _import_graph()
    assert "chainsight.tui.screens.trace_detail" in graph["chainsight.tui.app"]  # the graph is real
    for (importer, imported), reason in ALLOWED_CYCLE_EDGES.items():
        assert imported in graph[importer], f"allow-listed edge {importer} -> {imported} is gone: " \
            f"remove it from ALLOWED_CYCLE_EDGES ({reason})"
        graph[importer].discard(imported)
    cycles = _cycles(graph)
    assert not cycles, "import cycles among chainsight modules (tests/framework/test_boundaries.py): " + \
        "; ".join(" <-> ".join(c) for c in cycles)
