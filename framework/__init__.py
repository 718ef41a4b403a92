"""The core's public API, re-exported by the top-level ``chainsight`` package.

Heavy integrations (LangChain, litellm) are imported lazily on first attribute
access, so ``import chainsight.framework`` never loads litellm or Textual.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chainsight.framework.hookspecs import hookimpl
from chainsight.framework.model import Alert, EvalCase, Sample, Score, Span, Trace

if TYPE_CHECKING:
    from chainsight.framework.adapters.langchain import AsyncCallbackHandler, CallbackHandler
    from chainsight.framework.adapters.litellm import LitellmCallback
    from chainsight.framework.observer import Observer
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
    "set_observer",
    "uninstrument",
]

_LAZY = {
    "CallbackHandler": "chainsight.framework.adapters.langchain",
    "AsyncCallbackHandler": "chainsight.framework.adapters.langchain",
    "LitellmCallback": "chainsight.framework.adapters.litellm",
    "Observer": "chainsight.framework.observer",
    "evaluate": "chainsight.framework.eval.runner",
    "get_observer": "chainsight.framework.observer",
    "set_observer": "chainsight.framework.observer",
    "instrument": "chainsight.framework.zero_code",
    "uninstrument": "chainsight.framework.zero_code",
}


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value
