"""Files and folders Chainsight creates are owner-only, whatever the umask.

They hold span content (stores, spill and dead-letter files, exports): 0600
for files, 0700 for folders.
"""

from __future__ import annotations

import os
from pathlib import Path


def make_private_dirs(path: Path) -> None:
    """Create ``path`` and its missing parents as 0700 folders (``mkdir -p``
    would give the parents the umask's mode)."""
    missing: list[Path] = []
    current = path
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:
            continue
        os.chmod(folder, 0o700)  # mkdir's mode is masked by the umask


def open_private(path: Path, flags: int) -> int:
    """``os.open`` that creates a missing file (and folders) owner-only."""
    make_private_dirs(path.parent)
    return os.open(path, flags | os.O_CREAT, 0o600)
