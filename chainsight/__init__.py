"""Chainsight: local-first observability and evaluation for LLM chains and agents.

The public API. The distribution installs this one top-level package; its
parts live in ``chainsight.framework``, ``chainsight.plugins``,
``chainsight.storage`` and ``chainsight.tui`` (the repository's ``framework/``,
``plugins/``, ``storage/`` and ``tui/`` folders, mapped by pyproject.toml).
Heavy integrations (LangChain, litellm) are imported lazily on first attribute
access, so ``import chainsight`` never loads litellm or Textual.

With ``CHAINSIGHT_TRACING=true`` in the environment, importing it switches
zero-code tracing on (:func:`instrument`; LangChain and litellm are
instrumented when the application imports them). ``%load_ext chainsight``
loads the IPython extension (:func:`load_ipython_extension`).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from chainsight.framework.hookspecs import hookimpl
from chainsight.framework.model import Alert, EvalCase, Sample, Score, Span, Trace

if TYPE_CHECKING:
    from chainsight.framework.adapters.langchain import AsyncCallbackHandler, CallbackHandler
    from chainsight.framework.adapters.litellm import LitellmCallback
    from chainsight.framework.observer import Observer, get_observer, set_observer
    from chainsight.framework.zero_code import instrument, uninstrument

__all__ = [
    "Alert",
    "AsyncCallbackHandler",
    "CallbackHandler",
    "EvalCase",
    "LitellmCallback",
    "Observer",
    "Sample",
    "Score",
    "Span",
    "Trace",
    "evaluate",
    "get_observer",
    "hookimpl",
    "instrument",
    "load_ipython_extension",
    "set_observer",
    "uninstrument",
]


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext chainsight``: tracing on for the kernel, and the ``%chainsight`` magic."""
    from chainsight.framework.notebook import load_extension

    load_extension(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext chainsight``: tracing off (the magic stays until the kernel restarts)."""
    from chainsight.framework.notebook import unload_extension

    unload_extension(ipython)


if os.environ.get("CHAINSIGHT_TRACING"):
    from chainsight.framework.zero_code import instrument_from_environment

    instrument_from_environment()


def __getattr__(name: str) -> Any:
    """The lazy names, resolved through ``chainsight.framework`` (which imports
    their module on first use)."""
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import chainsight.framework

    value = getattr(chainsight.framework, name)
    globals()[name] = value
    return value
