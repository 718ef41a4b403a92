"""Issue "Trust", item 9: what Chainsight creates for a store is owner-only,
whatever the umask: the database and its -wal/-shm files, the spill and
dead-letter files, and the folders made for them."""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from reliability_helpers import wait_for

from chainsight.framework.observer import Observer
from chainsight.framework.spill import RecordFile, SpillFile


@pytest.fixture
def open_umask() -> Iterator[None]:
    previous = os.umask(0o022)  # the usual default: files 0644, folders 0755
    try:
        yield
    finally:
        os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_store_and_its_folders_are_owner_only(tmp_path: Path, open_umask: None) -> None:
    db = tmp_path / "new" / "nested" / "runs.db"
    obs = Observer(f"sqlite:///{db}", builtins=(), entry_points=False,
                   spill_path=tmp_path / "spill" / "here" / "spill.jsonl")
    try:
        for i in range(10):
            obs.end_span(obs.start_span(f"s{i}"))
        assert obs.flush(timeout=10)
        wal, shm = Path(f"{db}-wal"), Path(f"{db}-shm")
        assert wait_for(lambda: wal.exists() and shm.exists())
        for path in (db, wal, shm):
            assert _mode(path) == 0o600, path
        for folder in (db.parent, db.parent.parent):
            assert _mode(folder) == 0o700, folder
    finally:
        obs.shutdown(timeout=5)


def test_spill_and_dead_letter_files_are_owner_only(tmp_path: Path, open_umask: None) -> None:
    spill = SpillFile(tmp_path / "a" / "b" / "spill.jsonl")
    spill.append([{"spans": []}])
    letters = RecordFile(tmp_path / "c" / "deadletter.jsonl")
    letters.append([{"error": "x"}])
    for path in (spill.path, letters.path):
        assert _mode(path) == 0o600
    for folder in (tmp_path / "a", tmp_path / "a" / "b", tmp_path / "c"):
        assert _mode(folder) == 0o700


def test_an_existing_folder_keeps_its_mode(tmp_path: Path, open_umask: None) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    SpillFile(shared / "spill.jsonl").append([{"spans": []}])
    assert _mode(shared) == 0o755  # not ours to change
    assert _mode(shared / "spill.jsonl") == 0o600
