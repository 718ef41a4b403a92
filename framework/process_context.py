"""Per-process run context from the environment: ``CHAINSIGHT_USER``,
``CHAINSIGHT_SESSION`` and ``CHAINSIGHT_TAGS`` (comma-separated).

They apply to every trace the process records without code changes: the
LangChain handlers use them as their defaults, and the observer gives them to
root spans (litellm calls, ``observer.span()``). Anything more specific wins:
a handler's own ``user_id=``, LangChain's ``metadata={"user_id": ...}``,
litellm's ``user`` / ``metadata``. Read at each use, so a change of the
environment applies to the next trace.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

USER_ENV = "CHAINSIGHT_USER"
SESSION_ENV = "CHAINSIGHT_SESSION"
TAGS_ENV = "CHAINSIGHT_TAGS"


@dataclass(frozen=True)
class ProcessContext:
    user_id: str | None = None
    session_id: str | None = None
    tags: tuple[str, ...] = ()


def process_context() -> ProcessContext:
    """The context the environment gives this process now (empty values are unset)."""
    tags = os.environ.get(TAGS_ENV, "")
    return ProcessContext(
        user_id=os.environ.get(USER_ENV) or None,
        session_id=os.environ.get(SESSION_ENV) or None,
        tags=tuple(dict.fromkeys(t.strip() for t in tags.split(",") if t.strip())),
    )
