"""Chainsight: local-first observability and evaluation for LLM chains and agents.

The public API lives here. Heavy integrations (LangChain, litellm) are imported
lazily on first attribute access, so ``import framework`` never loads litellm or
Textual.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from framework.hookspecs import hookimpl
from framework.model import Alert, Sample, Score, Span, Trace

if TYPE_CHECKING:
    from framework.adapters.langchain import AsyncCallbackHandler, CallbackHandler
    from framework.adapters.litellm import LitellmCallback
    from framework.observer import Observer

__all__ = [
    "Alert",
    "AsyncCallbackHandler",
    "CallbackHandler",
    "LitellmCallback",
    "Observer",
    "Sample",
    "Score",
    "Span",
    "Trace",
    "get_observer",
    "hookimpl",
    "set_observer",
]

_LAZY = {
    "CallbackHandler": "framework.adapters.langchain",
    "AsyncCallbackHandler": "framework.adapters.langchain",
    "LitellmCallback": "framework.adapters.litellm",
    "Observer": "framework.observer",
    "get_observer": "framework.observer",
    "set_observer": "framework.observer",
}


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'framework' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value
