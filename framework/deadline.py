"""Calling code that may hang (a plugin's shutdown, an exporter's flush)
without letting it hold up the process's exit.

A Python thread cannot be interrupted, so the call runs on a daemon thread of
its own and the caller waits at most ``timeout`` seconds; a call that
overruns is left to finish (or to die with the process) and reported.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("chainsight")


def run_within(function: Callable[[], Any], timeout: float, name: str) -> bool:
    """Run ``function()``; True if it returned (or raised) within ``timeout``."""
    thread = threading.Thread(target=_said(function, name), name=name, daemon=True)
    thread.start()
    thread.join(max(0.0, timeout))
    return not thread.is_alive()


def _said(function: Callable[[], Any], name: str) -> Callable[[], None]:
    def run() -> None:
        try:
            function()
        except Exception:
            # The callers guard their own calls; what still gets here (a
            # plugin's exception in strict mode) is said, never dropped.
            log.exception("chainsight: a call on thread %r raised", name)

    return run
