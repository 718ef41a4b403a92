"""What an evaluation runs on each item: a LangChain runnable or a Python
callable (sync or async), named ``module:attr`` on the command line."""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from dataclasses import dataclass
from typing import Any

# Exception class names that mean "try again": rate limits, timeouts, dropped
# connections, a server that is briefly down (litellm's, openai's, httpx's).
TRANSIENT_NAMES = frozenset({
    "RateLimitError", "APIConnectionError", "APITimeoutError", "Timeout", "TimeoutException",
    "ServiceUnavailableError", "InternalServerError", "ConnectError", "ReadTimeout",
})
TRANSIENT_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


class TargetError(Exception):
    """A target that cannot be imported or called; the message says which and why."""


@dataclass(frozen=True)
class Target:
    """``kind``: ``"langchain"`` (a Runnable: ``invoke`` with Chainsight's
    callback handler), ``"async"`` (awaited) or ``"sync"`` (run in a thread)."""

    obj: Any
    kind: str
    name: str


def load_target(spec: str) -> Any:
    """Import ``module:attr`` (``attr`` may be dotted); the working directory
    is importable, as it is for ``python -m``."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise TargetError(f"invalid target {spec!r}: use module:attribute, e.g. myapp.chains:qa_chain")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:
        raise TargetError(f"target {spec!r}: cannot import {module_name!r}: "
                          f"{type(exc).__name__}: {exc}") from exc
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise TargetError(f"target {spec!r}: {module_name!r} has no attribute {attr!r}") from None
    return obj


def is_runnable(obj: Any) -> bool:
    if "langchain_core" not in sys.modules:
        return False
    from langchain_core.runnables import Runnable

    return isinstance(obj, Runnable)


def as_target(obj: Any, name: str | None = None) -> Target:
    if isinstance(obj, Target):
        return obj
    if is_runnable(obj):
        return Target(obj, "langchain", name or str(getattr(obj, "name", None) or type(obj).__name__))
    if not callable(obj):
        raise TargetError(f"target {name or obj!r} is neither a LangChain runnable nor callable")
    label = name or getattr(obj, "__qualname__", None) or type(obj).__name__
    call = getattr(obj, "__call__", None)  # noqa: B004  an object with an async __call__
    is_async = inspect.iscoroutinefunction(obj) or inspect.iscoroutinefunction(call)
    return Target(obj, "async" if is_async else "sync", str(label))


def is_transient(error: BaseException) -> bool:
    """Whether retrying may help: a timeout, a dropped connection, a rate
    limit or a 5xx, by type, by class name or by ``status_code``."""
    if isinstance(error, TimeoutError | ConnectionError):
        return True
    if any(c.__name__ in TRANSIENT_NAMES for c in type(error).__mro__):
        return True
    return getattr(error, "status_code", None) in TRANSIENT_STATUS
