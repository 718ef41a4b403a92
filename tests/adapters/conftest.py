"""Fixtures for the LangChain adapter tests: a strict observer on a real SQLite
file (no built-in plugins but the token estimate) and a shared handler.
Read-back helpers are in langchain_helpers.py."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("LANGSMITH_TRACING", "false")

from chainsight.framework.adapters.langchain import CallbackHandler
from chainsight.framework.observer import Observer


@pytest.fixture
def lc_db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'lc.db'}"


@pytest.fixture
def lc_observer(lc_db_url: str, tmp_path: Path) -> Iterator[Observer]:
    from chainsight.plugins import token_estimate

    obs = Observer(
        lc_db_url, builtins=(), entry_points=False, strict=True,
        spill_path=tmp_path / "spill.jsonl", plugins=[token_estimate],
    )
    yield obs
    obs.shutdown(timeout=10)


@pytest.fixture
def handler(lc_observer: Observer) -> CallbackHandler:
    return CallbackHandler(lc_observer)
