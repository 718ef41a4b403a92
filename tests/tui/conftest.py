"""Fixtures for the TUI tests: seeded stores (built once) and helpers."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from tui_seed import NOW_NS, build_hostile_store, build_store


def _copy_db(src: Path, dst: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        if Path(f"{src}{suffix}").exists():
            shutil.copyfile(f"{src}{suffix}", f"{dst}{suffix}")


@pytest.fixture(scope="session")
def seeded_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tui") / "seeded.db"
    build_store(f"sqlite:///{path}")
    return path


@pytest.fixture
def store_url(seeded_db: Path) -> str:
    """The seeded store, shared: tests that only read use this one."""
    return f"sqlite:///{seeded_db}"


@pytest.fixture
def fresh_url(seeded_db: Path, tmp_path: Path) -> str:
    """A private copy of the seeded store, for tests that write (feedback, live tail)."""
    path = tmp_path / "copy.db"
    _copy_db(seeded_db, path)
    return f"sqlite:///{path}"


@pytest.fixture
def hostile(tmp_path: Path) -> tuple[str, str]:
    """(url, trace id) of a store whose untrusted fields hold markup and escapes."""
    url = f"sqlite:///{tmp_path / 'hostile.db'}"
    return url, build_hostile_store(url)


@pytest.fixture
def now_ns() -> int:
    return NOW_NS


@pytest.fixture(autouse=True)
def _no_user_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    # The feedback Observer must not pick up a plugins.toml from the machine,
    # and exports must not land in the user's data folder.
    monkeypatch.delenv("CHAINSIGHT_CONFIG", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    monkeypatch.chdir(tmp_path)
    yield
