"""Per-class verdicts about pydantic models, shared by the serialiser and redaction.

Both walk arbitrary objects and take a shortcut for pydantic models (LangChain
messages). The shortcut is only safe for a class whose instances all take the
same branch of the slow walk, which can be judged on the class alone when no
class in its MRO redefines ``__class__`` (then ``isinstance`` equals
``issubclass`` of the type).
"""

from __future__ import annotations

import sys
from typing import Final

MAX_CLASSES: Final = 1024
"""How many classes each verdict cache keeps (``functools.lru_cache``): classes
made at run time (``pydantic.create_model``) come and go."""


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
