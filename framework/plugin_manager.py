"""Builds a plugin manager: built-ins by dotted path, then entry points one by one.

There is no module-global plugin manager: every observer (and every CLI run)
builds its own, so tests and embedded uses never leak plugins into each other.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pluggy

from framework import hookspecs
from framework.defaults import DEFAULT_PLUGINS

if TYPE_CHECKING:
    from framework.config import Settings

log = logging.getLogger("chainsight.plugins")


class PluginLoadError(Exception):
    """A plugin could not be imported or registered (strict mode only)."""


@dataclass
class PluginInfo:
    """What ``chainsight plugins`` shows for one plugin."""

    name: str
    source: str  # "builtin", "entry point (dist X)", "manual"
    version: str | None = None
    hooks: tuple[str, ...] = ()
    status: str = "active"  # active, degraded, disabled, failed
    error: str | None = None


@dataclass
class PluginSet:
    """A plugin manager and what was learnt while loading it."""

    pm: pluggy.PluginManager
    infos: list[PluginInfo] = field(default_factory=list)
    schemas: dict[str, Mapping[str, Any] | None] = field(default_factory=dict)

    def info(self, name: str) -> PluginInfo | None:
        return next((i for i in self.infos if i.name == name), None)

    def register(self, plugin: object, name: str | None = None, *, source: str = "manual") -> str:
        """Register one more plugin object or module; returns its name."""
        name = name or plugin_name(plugin)
        self.pm.register(plugin, name=name)
        self.schemas[name] = getattr(plugin, "CONFIG_SCHEMA", None)
        self.infos.append(
            PluginInfo(name, source, _version_of(plugin), _hooks_of(self.pm, plugin))
        )
        return name

    def mark_failed(self, name: str, error: str) -> None:
        info = self.info(name)
        if info is not None:
            info.status, info.error = "failed", error
        plugin = self.pm.get_plugin(name)
        if plugin is not None:
            self.pm.unregister(plugin)


def plugin_name(plugin: object) -> str:
    name = getattr(plugin, "name", None) or getattr(plugin, "__name__", None)
    if isinstance(name, str) and name:
        return name.rsplit(".", 1)[-1]
    return type(plugin).__name__


def instantiate(loaded: object) -> object:
    """A module with a ``create_plugin()`` factory gives each plugin manager
    (each observer) its own instance, so its configuration is not shared
    process-wide; any other module or object is registered as it is."""
    factory = getattr(loaded, "create_plugin", None)
    if isinstance(loaded, types.ModuleType) and callable(factory):
        return factory()
    return loaded


def new_plugin_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    return pm


def load_plugins(
    settings: Settings | None = None,
    *,
    strict: bool = False,
    builtins: Iterable[tuple[str, str]] | None = None,
    entry_points: bool = True,
    extra: Iterable[object] = (),
) -> PluginSet:
    """Register built-ins, then ``chainsight.plugins`` entry points, then ``extra``.

    A plugin disabled in the settings (``enabled = false``) is listed as
    disabled and not registered. A plugin that fails to import or register is
    listed as failed with the reason and skipped; in strict mode it raises
    :class:`PluginLoadError` naming it.
    """
    plugins = PluginSet(new_plugin_manager())
    enabled = settings.plugin_enabled if settings is not None else (lambda _name: True)

    for name, dotted in DEFAULT_PLUGINS if builtins is None else builtins:
        if not enabled(name):
            plugins.infos.append(PluginInfo(name, "builtin", status="disabled"))
            continue
        try:
            module = importlib.import_module(dotted)
            plugins.register(instantiate(module), name, source="builtin")
        except Exception as exc:
            _failed(plugins, name, "builtin", f"cannot load {dotted}: {type(exc).__name__}: {exc}", strict)

    if entry_points:
        for ep in importlib.metadata.entry_points(group=hookspecs.ENTRY_POINT_GROUP):
            dist = ep.dist.name if ep.dist is not None else "unknown distribution"
            source = f"entry point ({dist})"
            if not enabled(ep.name):
                plugins.infos.append(PluginInfo(ep.name, source, status="disabled"))
                continue
            if plugins.pm.has_plugin(ep.name):
                _failed(plugins, ep.name, source, "name already taken by another plugin", strict)
                continue
            try:
                plugins.register(instantiate(ep.load()), ep.name, source=source)
            except Exception as exc:
                _failed(
                    plugins, ep.name, source,
                    f"cannot load entry point {ep.value!r}: {type(exc).__name__}: {exc}", strict,
                )

    for plugin in extra:
        try:
            plugins.register(plugin)
        except Exception as exc:
            _failed(plugins, plugin_name(plugin), "manual", f"{type(exc).__name__}: {exc}", strict)
    return plugins


def _failed(plugins: PluginSet, name: str, source: str, error: str, strict: bool) -> None:
    if strict:
        raise PluginLoadError(f"plugin {name!r}: {error}")
    log.error("skipping plugin %r: %s", name, error)
    plugins.infos.append(PluginInfo(name, source, status="failed", error=error))


def _version_of(plugin: object) -> str | None:
    version = getattr(plugin, "__version__", None) or getattr(plugin, "VERSION", None)
    if isinstance(version, str):
        return version
    module = getattr(plugin, "__module__", None) or getattr(plugin, "__name__", "")
    top = str(module).split(".", 1)[0]
    if top in {"plugins", "framework"}:
        try:
            return importlib.metadata.version("chainsight")
        except importlib.metadata.PackageNotFoundError:
            return None
    try:
        return importlib.metadata.version(top)
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return None


def _hooks_of(pm: pluggy.PluginManager, plugin: object) -> tuple[str, ...]:
    callers = pm.get_hookcallers(plugin) or []
    return tuple(sorted(caller.name for caller in callers))
