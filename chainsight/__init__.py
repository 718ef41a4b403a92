"""Chainsight: local-first observability and evaluation for LLM chains and agents.

The public API. The distribution installs this one top-level package; its
parts live in ``chainsight.framework``, ``chainsight.plugins``,
``chainsight.storage`` and ``chainsight.tui`` (the repository's ``framework/``,
``plugins/``, ``storage/`` and ``tui/`` folders, mapped by pyproject.toml).
Heavy integrations (LangChain, litellm) are imported lazily on first attribute
access, so ``import chainsight`` never loads litellm or Textual.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chainsight.framework.hookspecs import hookimpl
from chainsight.framework.model import Alert, Sample, Score, Span, Trace

if TYPE_CHECKING:
    from chainsight.framework.adapters.langchain import AsyncCallbackHandler, CallbackHandler
    from chainsight.framework.adapters.litellm import LitellmCallback
    from chainsight.framework.observer import Observer, get_observer, set_observer

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
    "evaluate",
    "get_observer",
    "hookimpl",
    "set_observer",
]


def __getattr__(name: str) -> Any:
    """The lazy names, resolved through ``chainsight.framework`` (which imports
    their module on first use)."""
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import chainsight.framework

    value = getattr(chainsight.framework, name)
    globals()[name] = value
    return value
