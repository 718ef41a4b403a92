"""Builds a plugin manager: built-ins by dotted path, then entry points one by one.

There is no module-global plugin manager: every observer (and every CLI run)
builds its own, so tests and embedded uses never leak plugins into each other.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import logging
import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

import pluggy

from chainsight.framework import hookspecs
from chainsight.framework.defaults import DEFAULT_PLUGINS

if TYPE_CHECKING:
    from chainsight.framework.config import Settings

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
    status: str = "active"  # active, refused, degraded, disabled, failed
    error: str | None = None
    problems: tuple[str, ...] = ()  # hook implementations refused at load


class RefusedHook(NamedTuple):
    """A hook implementation the plugin manager did not register."""

    plugin: object
    hook: str
    reason: str


class HostPluginManager(pluggy.PluginManager):
    """pluggy's manager with Chainsight's hookspecs, refusing at registration
    the hook implementations the host would never call.

    * An unknown hook name (``trace_finish``): pluggy would keep it and only
      :meth:`~pluggy.PluginManager.check_pending` would notice. The same test
      is made here, one implementation at a time (check_pending stops at the
      first unknown hook of the whole manager and cannot leave the plugin's
      other hooks in place). ``optionalhook=True`` still opts out.
    * A wrapper (``hookwrapper=True`` / ``wrapper=True``): the host calls
      every hook implementation by implementation (guarded dispatch,
      per-plugin configuration), never through pluggy's call loop, so a
      wrapper would never run.

    Each refusal is kept in :attr:`refused`; :meth:`PluginSet.register`
    turns it into an error (strict) or a warning and a listed problem.
    Overriding ``parse_hookimpl_opts`` is pluggy's documented way to choose
    what is picked up.
    """

    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT_NAME)
        self.add_hookspecs(hookspecs)
        self.refused: list[RefusedHook] = []

    def parse_hookimpl_opts(self, plugin: Any, name: str) -> pluggy.HookimplOpts | None:
        opts = super().parse_hookimpl_opts(plugin, name)
        if opts is None:
            return None
        hook = opts.get("specname") or name
        reason = self._refusal(hook, opts)
        if reason is None:
            return opts
        self.refused.append(RefusedHook(plugin, hook, reason))
        return None

    def _refusal(self, hook: str, opts: pluggy.HookimplOpts) -> str | None:
        caller = getattr(self.hook, hook, None)
        if caller is None or not caller.has_spec():
            if opts.get("optionalhook"):
                return None
            known = [n for n in vars(self.hook) if not n.startswith("_") and getattr(self.hook, n).has_spec()]
            close = difflib.get_close_matches(hook, known, n=1)
            hint = f"did you mean {close[0]!r}?" if close else "not in Chainsight's hookspecs"
            return f"unknown hook {hook!r} ({hint})"
        if opts.get("hookwrapper") or opts.get("wrapper"):
            # The host calls every hook implementation by implementation.
            return f"hook wrapper on {hook!r} (wrappers never run here: use a plain @hookimpl)"
        return None


@dataclass
class PluginSet:
    """A plugin manager and what was learnt while loading it."""

    pm: HostPluginManager
    infos: list[PluginInfo] = field(default_factory=list)
    schemas: dict[str, Mapping[str, Any] | None] = field(default_factory=dict)
    strict: bool = False

    def info(self, name: str) -> PluginInfo | None:
        return next((i for i in self.infos if i.name == name), None)

    def register(self, plugin: object, name: str | None = None, *, source: str = "manual") -> str:
        """Register one more plugin object or module; returns its name.

        Hook implementations the host would never call (an unknown hook
        name, a wrapper) are refused: in strict mode the plugin is not
        registered and :class:`PluginLoadError` names it and the hook;
        otherwise each is logged as a warning and listed as a problem of the
        plugin, and its other hooks are registered. A plugin left with no
        hook at all, though it had some, is listed as ``refused``.
        """
        name = name or plugin_name(plugin)
        seen = len(self.pm.refused)
        self.pm.register(plugin, name=name)
        refused = [r for r in self.pm.refused[seen:] if r.plugin is plugin]
        problems = tuple(f"{r.reason}, not used" for r in refused)
        if refused and self.strict:
            self.pm.unregister(plugin)
            raise PluginLoadError(f"plugin {name!r}: " + "; ".join(r.reason for r in refused))
        for r in refused:
            log.warning("plugin %r: %s: that implementation is not used", name, r.reason)
        hooks = _hooks_of(self.pm, plugin)
        status = "refused" if refused and not hooks else "active"
        self.schemas[name] = getattr(plugin, "CONFIG_SCHEMA", None)
        self.infos.append(PluginInfo(name, source, _version_of(plugin), hooks, status, problems=problems))
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


def new_plugin_manager() -> HostPluginManager:
    return HostPluginManager()


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
    :class:`PluginLoadError` naming it. So does, in strict mode, a plugin
    with a hook implementation the host refuses (see :meth:`PluginSet.register`).
    """
    plugins = PluginSet(new_plugin_manager(), strict=strict)
    enabled = settings.plugin_enabled if settings is not None else (lambda _name: True)

    for name, dotted in DEFAULT_PLUGINS if builtins is None else builtins:
        if not enabled(name):
            plugins.infos.append(PluginInfo(name, "builtin", status="disabled"))
            continue
        try:
            module = importlib.import_module(dotted)
            plugins.register(instantiate(module), name, source="builtin")
        except PluginLoadError:
            raise
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
            except PluginLoadError:
                raise
            except Exception as exc:
                _failed(
                    plugins, ep.name, source,
                    f"cannot load entry point {ep.value!r}: {type(exc).__name__}: {exc}", strict,
                )

    for plugin in extra:
        try:
            plugins.register(plugin)
        except PluginLoadError:
            raise
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
    if top == "chainsight":
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
