"""Shared pieces of the fault-injection tests: reading a store back, waiting,
running a script in a fresh interpreter."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from chainsight.storage.engine import open_engine

REPO = Path(__file__).resolve().parents[2]


def span_rows(url: str, where: str = "1=1") -> list[dict[str, Any]]:
    engine = open_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(sa.text(f"SELECT * FROM spans WHERE {where}")).mappings().all()
    return [dict(r) for r in rows]


def trace_rows(url: str, where: str = "1=1") -> list[dict[str, Any]]:
    engine = open_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(sa.text(f"SELECT * FROM traces WHERE {where}")).mappings().all()
    return [dict(r) for r in rows]


def span_names(url: str) -> list[str]:
    return sorted(r["name"] for r in span_rows(url))


def wait_for(predicate: Callable[[], bool], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())


def poison(url: str) -> None:
    """Make a SQLite store refuse, for its own reasons, any span named 'poison'."""
    conn = sqlite3.connect(url.removeprefix("sqlite:///"))
    conn.execute("CREATE TRIGGER poison BEFORE INSERT ON spans WHEN NEW.name = 'poison' "
                 "BEGIN SELECT RAISE(ABORT, 'this store refuses poison'); END")
    conn.commit()
    conn.close()


def run_script(source: str, *, env: dict[str, str] | None = None, timeout: float = 60.0,
               cwd: Path | None = None) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run ``source`` in a fresh interpreter; the result and its wall time."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(source)], env=full_env,
                          capture_output=True, text=True, timeout=timeout, cwd=cwd or REPO)
    return proc, time.monotonic() - start
