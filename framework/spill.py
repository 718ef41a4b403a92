"""A local spill file for batches the store could not take.

Each line is one prepared batch (the writer's row format, already JSON). Lines
are replayed in order once the store answers again; a line is removed only
after its transaction committed. Replaying is idempotent on the store side
(rows are keyed), so a crash between commit and removal cannot duplicate.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

Rows = dict[str, list[dict[str, Any]]]


class SpillFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def exists(self) -> bool:
        try:
            return self.path.stat().st_size > 0
        except OSError:
            return False

    def append(self, rows: Rows) -> None:
        line = json.dumps(rows, separators=(",", ":"), default=str)
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(line + "\n")
                fh.flush()
                os.fsync(fh.fileno())

    def replay(self, write: Callable[[Rows], None]) -> int:
        """Write every spilled batch in order; return how many were replayed.

        Stops at the first batch that raises and keeps it and the rest; the
        exception propagates so the caller can tell the store is still down.
        """
        with self._lock:
            try:
                lines = self.path.read_text(encoding="utf-8").splitlines()
            except FileNotFoundError:
                return 0
            done = 0
            try:
                for line in lines:
                    if line.strip():
                        write(json.loads(line))
                    done += 1
            finally:
                self._keep(lines[done:])
            return done

    def _keep(self, lines: list[str]) -> None:
        if not lines:
            self.path.unlink(missing_ok=True)
            return
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        os.replace(tmp, self.path)
