"""Per-class verdicts about pydantic models, shared by the serialiser and redaction.

Both walk arbitrary objects and take a shortcut for pydantic models (LangChain
messages). The shortcut is only safe for a class whose instances all take the
same branch of the slow walk, which can be judged on the class alone when no
class in its MRO redefines ``__class__`` (then ``isinstance`` equals
``issubclass`` of the type).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Final, Generic, TypeVar

T = TypeVar("T")
MAX_CLASSES: Final = 1024


def plain_pydantic_class(cls: type, excluded: tuple[type, ...]) -> bool:
    """``cls`` is a pydantic model class that is none of ``excluded`` (the
    types an earlier branch of the caller's walk handles), judged on the class
    alone. Never imports pydantic: without it loaded there are no models."""
    base = getattr(sys.modules.get("pydantic"), "BaseModel", None)
    return (
        isinstance(base, type)
        and issubclass(cls, base)
        and not issubclass(cls, excluded)
        and not any("__class__" in vars(k) for k in cls.__mro__[:-1])
    )


class ClassMemo(Generic[T]):
    """``verdict(cls)`` computed once per class. Bounded: classes made at run
    time (``pydantic.create_model``) come and go."""

    def __init__(self, verdict: Callable[[type], T]) -> None:
        self._verdict = verdict
        self._known: dict[type, T] = {}

    def __len__(self) -> int:
        return len(self._known)

    def __call__(self, cls: type) -> T:
        try:
            return self._known[cls]
        except KeyError:
            if len(self._known) >= MAX_CLASSES:
                self._known.clear()
            value = self._known[cls] = self._verdict(cls)
            return value
