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


def _module_imports(source: str, module: str, *, is_package: bool = False) -> set[str]:
    """Every module name ``source`` (the text of ``module``) imports, anywhere:
    module level, inside functions, under ``TYPE_CHECKING``. Relative imports
    are made absolute, and ``from a import b`` counts as importing ``a`` and
    ``a.b`` (``from chainsight import storage`` imports the package)."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package[: len(package) - (node.level - 1)]
                base = ".".join([*parent, base] if base else parent)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def _package_imports(path: Path) -> set[str]:
    return _module_imports(path.read_text(encoding="utf-8"), _module_name(path),
                           is_package=path.name == "__init__.py")


# The framework's readers: the CLI, the IPython extension and the public API for plugin commands. They
# open the store and may import storage; the rest of ``framework`` is the core.
READERS = ("cli.py", "cli_*.py", "commands.py", "notebook.py", "eval/**/*.py")


def _core_files() -> list[Path]:
    readers = {p for pattern in READERS for p in (ROOT / "framework").glob(pattern)}
    assert (ROOT / "framework" / "cli.py") in readers
    return [ROOT / "chainsight" / "__init__.py",
            *(p for p in _python_files("framework") if p not in readers)]


def test_the_import_reader_sees_every_kind_of_import() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from chainsight.storage.writer import StoreWriter\n"
        "def f():\n    import chainsight.tui.app\n    from chainsight import plugins\n"
        "    from ..storage import query\n"
    )
    names = _module_imports(source, "chainsight.framework.x")
    assert {"chainsight.storage.writer", "chainsight.tui.app", "chainsight.plugins",
            "chainsight.storage.query"} <= names


def test_core_imports_neither_storage_nor_plugins_nor_tui() -> None:
    """The core (model, hookspecs, observer, pipeline, dispatch, spill,
    adapters...) gets its store through ``framework/store_api.py`` and its
    plugins by dotted path (``framework/defaults.py``), never by import."""
    core = _core_files()
    assert ROOT / "framework" / "observer.py" in core and ROOT / "framework" / "adapters" / "langchain.py" in core
    above = ("chainsight.storage", "chainsight.plugins", "chainsight.tui")
    offenders = [
        f"{p.relative_to(ROOT)}: {name}"
        for p in core
        for name in sorted(_package_imports(p))
        if any(_within(name, layer) for layer in above)
    ]
    assert offenders == [], "core modules import layers above them"


def test_storage_imports_only_the_core() -> None:
    """Storage sits on the core: never the CLI, plugins or the TUI above it."""
    readers = {_module_name(p) for pattern in READERS for p in (ROOT / "framework").glob(pattern)}
    offenders = [
        f"{p.relative_to(ROOT)}: {name}"
        for p in _python_files("storage")
        for name in sorted(_package_imports(p))
        if name in readers or _within(name, "chainsight.plugins") or _within(name, "chainsight.tui")
    ]
    assert offenders == []


def _cli_internal(name: str) -> bool:
    return _within(name, "chainsight.framework.cli") or name.startswith("chainsight.framework.cli_")


def test_plugins_use_the_public_command_api_not_cli_internals() -> None:
    """Plugins get command errors, time parsing, the store and output helpers
    from ``chainsight.framework.commands``, never from ``framework.cli*``."""
    assert _cli_internal("chainsight.framework.cli_render") and _cli_internal("chainsight.framework.cli")
    assert not _cli_internal("chainsight.framework.commands")
    offenders = [
        f"{p.relative_to(ROOT)}: {name}"
        for p in _python_files("plugins")
        for name in sorted(_package_imports(p))
        if _cli_internal(name)
    ]
    assert offenders == [], "plugins import framework.cli internals; use chainsight.framework.commands"
    users = [p.name for p in _python_files("plugins")
             if "chainsight.framework.commands" in _package_imports(p)]
    assert {"pricing.py", "feedback.py", "gpu.py", "tui_command.py"} <= set(users)


def test_only_tui_imports_textual() -> None:
    offenders = [
        f"{p.relative_to(ROOT)}: {name}"
        for p in [ROOT / "chainsight" / "__init__.py", *_python_files("framework", "storage", "plugins")]
        for name in sorted(_package_imports(p))
        if name.split(".")[0] == "textual"
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
    expected = [
        "configure", "register_commands", "setup_problems",  # startup
        "process_span", "price_span", "check_span", "process_score", "trace_finished", "spans_finished",
        "samples_collected", "alert_changed", "feedback_recorded", "shutdown",  # pipeline
        "collect_samples",  # sampler
        "evaluate",  # evaluation runs
    ]
    assert sorted(expected) == HOOKS
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
    (or that SQLAlchemy loads by URL); ``dev`` and the benchmarks' extras
    (``bench-*``, for the scripts in bench/, not installed by ``make venv``)
    aside."""
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
        if extra == "dev" or extra.startswith("bench-"):
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
