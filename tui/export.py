"""Writing a trace to a JSON file: where it goes and who may read it.

Exports hold prompts and model output, so they go to the user's data folder
(not whatever folder the TUI was started in) as owner-only files.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict
from pathlib import Path
from typing import Any, Final

import platformdirs

_UNSAFE_NAME: Final = re.compile(r"[^A-Za-z0-9_.-]")


def default_dir() -> Path:
    """``exports`` in the user data folder (``~/.local/share/chainsight/exports`` on Linux)."""
    return platformdirs.user_data_path("chainsight") / "exports"


def trace_json(detail: Any) -> str:
    """A trace with its spans and scores as one JSON document."""
    doc = {
        "trace": asdict(detail.trace),
        "spans": [span.to_dict() for span in detail.spans],
        "scores": [asdict(score) for score in detail.scores],
    }
    return json.dumps(doc, indent=2, ensure_ascii=False, default=str)


def export_path(folder: Path, trace_id: str) -> Path:
    """The absolute file a trace is exported to; the id cannot leave ``folder``."""
    name = _UNSAFE_NAME.sub("_", trace_id).lstrip(".") or "trace"
    return folder.expanduser().absolute() / f"trace-{name}.json"


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by the owner only (0600, folders it creates 0700)."""
    missing = [p for p in (path.parent, *path.parent.parents) if not p.exists()]
    for folder in reversed(missing):
        folder.mkdir(mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        os.fchmod(fd, 0o600)  # a file from an earlier export may be wider
        out.write(text)
