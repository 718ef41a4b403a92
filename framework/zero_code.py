"""Zero-code tracing: every LangChain run and litellm call of the process
recorded, with no handler passed anywhere.

Switched on by ``chainsight.instrument()``, by ``CHAINSIGHT_TRACING=true`` in
any process that imports ``chainsight``, by ``chainsight run`` and by
``%load_ext chainsight``; off again with ``chainsight.uninstrument()``.

* LangChain: :func:`chainsight.framework.adapters.langchain.enable_global_tracing`
  registers a handler with LangChain's ``register_configure_hook``, keyed on
  the environment variable ``CHAINSIGHT_TRACING``, which :func:`instrument`
  sets (to ``true``) and :func:`uninstrument` removes. An environment
  variable, not a context variable, because it is seen by every thread,
  including threads started before ``instrument()``. Child processes inherit
  it: one that imports ``chainsight`` traces too. Switch off with
  :func:`uninstrument`, not by editing the variable: once the hook is
  registered LangChain reads it at every run and takes any value but ``""``,
  ``0``, ``false`` and ``False`` for on (:func:`parse_switch`, used before
  anything is registered, also knows ``no`` and ``off``).
* litellm: a :class:`~chainsight.framework.adapters.litellm.GlobalLitellmCallback`
  is added to litellm's callback lists.
* Neither library is imported here (``import litellm`` alone takes seconds).
  One already imported is instrumented at once; otherwise a finder on
  ``sys.meta_path`` (:class:`_AfterImport`) waits for its first import and
  instruments it right after its ``__init__`` has run. The finder wraps only
  that module's loader, hands the module its real loader before executing
  it, and leaves ``sys.meta_path`` once nothing is awaited.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import logging
import os
import sys
import threading
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chainsight.framework.adapters.litellm import GlobalLitellmCallback
    from chainsight.framework.observer import Observer

__all__ = ["TRACING_ENV", "flush", "instrument", "instrument_from_environment", "is_instrumented",
           "parse_switch", "tracing_observer", "uninstrument"]

log = logging.getLogger("chainsight")

TRACING_ENV = "CHAINSIGHT_TRACING"
_ON = frozenset({"1", "true", "yes", "on"})
_OFF = frozenset({"", "0", "false", "no", "off"})

_lock = threading.Lock()
_instrumented = False
_observer: Observer | None = None
_litellm_callback: GlobalLitellmCallback | None = None


def parse_switch(value: str | None) -> bool | None:
    """``CHAINSIGHT_TRACING``'s value as on (True) or off (False); None when it is neither."""
    text = (value or "").strip().lower()
    if text in _ON:
        return True
    if text in _OFF:
        return False
    return None


def instrument(observer: Observer | None = None) -> None:
    """Record every LangChain run and every litellm call of this process.

    Spans go to ``observer`` (default: the process observer, ``get_observer()``).
    An explicit ``CallbackHandler`` or ``LitellmCallback`` still works, and a
    run it records is not recorded twice. Calling it again switches to the
    new observer. Sets ``CHAINSIGHT_TRACING=true`` in ``os.environ``.
    """
    global _instrumented, _observer
    with _lock:
        previous = _take_litellm_callback()
        _observer = observer
        _instrumented = True
        os.environ[TRACING_ENV] = "true"
    if previous is not None:
        _remove_litellm_callback(previous)
    _after_import.when_imported("langchain_core", _instrument_langchain)
    _after_import.when_imported("litellm", _instrument_litellm)


def uninstrument() -> None:
    """Undo :func:`instrument`: LangChain runs started from now on and litellm
    calls are no longer recorded (unless passed a handler explicitly), and
    ``CHAINSIGHT_TRACING`` is removed from ``os.environ``."""
    global _instrumented, _observer
    with _lock:
        _instrumented = False
        _observer = None
        os.environ.pop(TRACING_ENV, None)
        callback = _take_litellm_callback()
    _after_import.cancel("langchain_core")
    _after_import.cancel("litellm")
    if callback is not None:
        _remove_litellm_callback(callback)


def is_instrumented() -> bool:
    return _instrumented


def tracing_observer() -> Observer:
    """The observer zero-code tracing records into."""
    if _observer is not None:
        return _observer
    from chainsight.framework.observer import get_observer

    return get_observer()


def flush(timeout: float = 5.0) -> bool:
    """Wait until the litellm calls made so far have delivered their events
    (sync calls; async ones need their event loop: ``await callback.aflush()``)
    and everything recorded is processed. False on timeout or loss, as
    ``Observer.flush``."""
    import time

    deadline = time.monotonic() + max(0.0, timeout)
    callback = _litellm_callback
    ok = callback.wait_pending(timeout) if callback is not None else True
    return tracing_observer().flush(max(0.0, deadline - time.monotonic())) and ok


def instrument_from_environment() -> bool:
    """``import chainsight`` calls this: instrument when ``CHAINSIGHT_TRACING``
    is on. A value that is neither on nor off is said once and leaves tracing off."""
    value = os.environ.get(TRACING_ENV)
    wanted = parse_switch(value)
    if wanted is None:
        log.warning("chainsight: %s=%r is neither true nor false (1/0, yes/no, on/off are "
                    "understood too); tracing stays off", TRACING_ENV, value)
        return False
    if wanted:
        instrument()
    return wanted


# ---- the libraries ---------------------------------------------------------------


def _instrument_langchain(_module: ModuleType) -> None:
    from chainsight.framework.adapters.langchain import enable_global_tracing

    enable_global_tracing(_observer)


def _instrument_litellm(_module: ModuleType) -> None:
    global _litellm_callback
    from chainsight.framework.adapters.litellm import add_global_callback

    with _lock:
        if not _instrumented or _litellm_callback is not None:
            return
        _litellm_callback = callback = add_global_callback(_observer)
    log.debug("chainsight: litellm instrumented (%r)", callback)


def _take_litellm_callback() -> GlobalLitellmCallback | None:
    global _litellm_callback
    callback, _litellm_callback = _litellm_callback, None
    return callback


def _remove_litellm_callback(callback: GlobalLitellmCallback) -> None:
    from chainsight.framework.adapters.litellm import remove_global_callback

    remove_global_callback(callback)


# ---- after-import hooks ----------------------------------------------------------


class _AfterImport(importlib.abc.MetaPathFinder):
    """Calls a function with a top-level module right after its first import.

    While something is awaited it sits first on ``sys.meta_path``. For an
    awaited name it asks the other finders for the spec, as the import system
    would, and wraps the spec's loader in :class:`_NotifyingLoader`; every
    other import passes through untouched (one dict lookup).
    """

    def __init__(self) -> None:
        self._awaited: dict[str, Callable[[ModuleType], None]] = {}
        self._lock = threading.Lock()

    def when_imported(self, name: str, function: Callable[[ModuleType], None]) -> None:
        """Call ``function(module)`` now if ``name`` is imported, else right after its import."""
        module = sys.modules.get(name)
        if module is not None:
            self.cancel(name)
            _call(name, function, module)
            return
        with self._lock:
            self._awaited[name] = function
            if self not in sys.meta_path:
                sys.meta_path.insert(0, self)

    def cancel(self, name: str) -> None:
        with self._lock:
            self._awaited.pop(name, None)
            self._leave_if_idle()

    def _leave_if_idle(self) -> None:
        if not self._awaited and self in sys.meta_path:
            sys.meta_path.remove(self)

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self._awaited:
            return None
        for finder in list(sys.meta_path):
            if finder is self:
                continue
            find = getattr(finder, "find_spec", None)
            spec = find(fullname, path, target) if find is not None else None
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        if loader is not None and hasattr(loader, "exec_module"):
            spec.loader = _NotifyingLoader(loader, lambda module: self._imported(fullname, module))
        return spec

    def _imported(self, name: str, module: ModuleType) -> None:
        with self._lock:
            function = self._awaited.pop(name, None)
            self._leave_if_idle()
        if function is not None:
            _call(name, function, module)


class _NotifyingLoader(importlib.abc.Loader):
    """The real loader, followed by a notification once the module has run."""

    def __init__(self, loader: Any, notify: Callable[[ModuleType], None]) -> None:
        self.loader = loader
        self.notify = notify

    def __getattr__(self, name: str) -> Any:
        # Code that only finds the spec (importlib.util.find_spec) and asks its
        # loader (get_filename, is_package...) gets the real loader's answers.
        loader = self.__dict__.get("loader")
        if loader is None:  # not initialised yet (copy, pickle)
            raise AttributeError(name)
        return getattr(loader, name)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        module: ModuleType | None = self.loader.create_module(spec)
        return module

    def exec_module(self, module: ModuleType) -> None:
        # The module never sees this wrapper: its __loader__ and __spec__.loader
        # are the real loader (importlib.resources, linecache... use them).
        module.__loader__ = self.loader
        if module.__spec__ is not None:
            module.__spec__.loader = self.loader
        self.loader.exec_module(module)
        self.notify(module)


def _call(name: str, function: Callable[[ModuleType], None], module: ModuleType) -> None:
    """Never let instrumenting break the application's import."""
    try:
        function(module)
    except Exception as exc:
        log.warning("chainsight: could not instrument %s (%s: %s); its calls are not traced",
                    name, type(exc).__name__, exc, exc_info=log.isEnabledFor(logging.DEBUG))


_after_import = _AfterImport()
