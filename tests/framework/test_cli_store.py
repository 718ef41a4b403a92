"""The store as a new user meets it through the CLI: no store where a reader
looks (nothing created), a wrong URL, file, schema or driver (one line, exit 1),
and never a password on screen."""

from __future__ import annotations

import logging
import sqlite3
import sys
from pathlib import Path

import pytest

from chainsight.framework.cli import main
from chainsight.storage import engine
from chainsight.storage.engine import (
    StoreMisconfigured,
    StoreNotFound,
    StoreUnavailable,
    display_url,
    open_engine,
    upgrade,
)

SECRET = "s3cret-pw"


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CHAINSIGHT_CONFIG", raising=False)
    monkeypatch.delenv("CHAINSIGHT_STORAGE_URL", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("chainsight: error: ") and "Traceback" not in err
    return lines[0]


# ---- item 3: URLs are masked ------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"postgresql+psycopg://cs:{SECRET}@db.example:5432/chainsight",
         "postgresql+psycopg://cs:***@db.example:5432/chainsight"),
        (f"postgres://cs:{SECRET}@db.example/chainsight",
         "postgres://cs:***@db.example/chainsight"),
        (f"postgresql+psycopg://cs@db.example/chainsight?password={SECRET}&sslmode=require",
         "postgresql+psycopg://cs@db.example/chainsight?password=***&sslmode=require"),
        (f"not a url://cs:{SECRET}@host/x", "not a url://cs:***@host/x"),
        ("sqlite:///runs/chainsight.db", "sqlite:///runs/chainsight.db"),
    ],
)
def test_display_url_masks_every_password(url: str, shown: str) -> None:
    assert display_url(url) == shown


def test_an_unreachable_postgres_store_is_one_masked_line(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    pytest.importorskip("psycopg")
    url = f"postgresql+psycopg://cs:{SECRET}@127.0.0.1:1/chainsight?connect_timeout=2"
    with caplog.at_level(logging.DEBUG):
        code, out, err = run(capsys, "traces", "--db", url)
    assert code == 1
    line = one_error_line(err)
    assert "postgresql+psycopg://cs:***@127.0.0.1:1/chainsight" in line
    assert SECRET not in out + err + caplog.text
    with pytest.raises(StoreUnavailable) as info:
        open_engine(url)
    assert SECRET not in str(info.value)


# ---- item 7: readers never create a store -----------------------------------------

READERS = [
    ["traces"],
    ["show", "abc123"],
    ["cost"],
    ["pricing", "unpriced"],
    ["reprice", "--all", "--dry-run"],
    ["feedback", "abc123", "--up"],
    ["tui"],
]


@pytest.mark.parametrize("argv", READERS, ids=lambda argv: argv[0])
def test_read_only_commands_on_no_store_exit_1_and_create_nothing(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "nope" / "x.db"
    url = f"sqlite:///{path}"
    code, _out, err = run(capsys, *argv, "--db", url)
    assert code == 1
    line = one_error_line(err)
    assert line.startswith(f"chainsight: error: no Chainsight store at {url}: ")
    assert "chainsight db upgrade --db URL" in line  # says how one is made
    assert not path.exists() and not path.parent.exists()


def test_traces_in_an_empty_folder_leaves_no_database_behind(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "traces")  # the default store, ./chainsight.db
    assert code == 1
    assert "no Chainsight store at sqlite:///chainsight.db" in err
    assert list(tmp_path.iterdir()) == []


def test_a_missing_postgres_store_is_not_found_and_not_created(
    postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """An empty database (a fresh schema here) has no Chainsight store until one is made."""
    import sqlalchemy as sa

    code, _, err = run(capsys, "traces", "--db", postgres_url)
    assert code == 1 and "no Chainsight store at " in one_error_line(err)
    probe = sa.create_engine(postgres_url)
    with probe.connect() as conn:
        assert not sa.inspect(conn).get_table_names()
    probe.dispose()
    assert run(capsys, "db", "upgrade", "--db", postgres_url)[0] == 0
    assert run(capsys, "traces", "--db", postgres_url)[0] == 0


def test_writers_still_create_the_store_and_its_folders(tmp_path: Path) -> None:
    path = tmp_path / "new" / "dir" / "x.db"
    with pytest.raises(StoreNotFound):
        open_engine(f"sqlite:///{path}", create=False)
    assert not path.parent.exists()
    open_engine(f"sqlite:///{path}").dispose()
    assert path.exists()
    open_engine(f"sqlite:///{path}", create=False).dispose()  # now there is one


# ---- item 8: a wrong URL, file, schema or driver -------------------------------------


def test_a_missing_psycopg_names_the_extra(monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if not installed
    url = f"postgresql://cs:{SECRET}@db.example/chainsight"
    code, _, err = run(capsys, "traces", "--db", url)
    assert code == 1
    assert one_error_line(err) == (
        "chainsight: error: PostgreSQL needs the psycopg driver: pip install 'chainsight[postgres]' "
        "(for postgresql+psycopg://cs:***@db.example/chainsight)")
    with pytest.raises(StoreMisconfigured):
        open_engine(url)  # a writer gets the same


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("host=h dbname=x", "not a store URL: 'host=h dbname=x' (use sqlite:///PATH or "),
        ("no-such-folder/no.db", "no Chainsight store at sqlite:///"),  # a path: a SQLite file
        ("nosuchdb://h/x", "unsupported store URL nosuchdb://h/x: Chainsight stores in SQLite"),
        (f"mysql://u:{SECRET}@h/x", "unsupported store URL mysql://u:***@h/x: Chainsight stores in "),
        ("postgresql+asyncpg://u@h/x", "the database driver for postgresql+asyncpg://u@h/x is not "),
    ],
)
def test_an_unusable_url_is_one_line(url: str, message: str,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "traces", "--db", url)
    assert code == 1
    assert one_error_line(err).startswith(f"chainsight: error: {message}")
    assert SECRET not in err


def test_a_file_that_is_not_sqlite_is_refused_and_left_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "notes.db"
    path.write_text("these are my notes, not a database\n" * 20)
    before = path.read_bytes()
    url = f"sqlite:///{path}"
    for argv in (["traces"], ["db", "upgrade"]):
        code, _, err = run(capsys, *argv, "--db", url)
        assert code == 1
        assert one_error_line(err) == f"chainsight: error: {url}: {str(path)!r} is not a SQLite database"
    with pytest.raises(StoreMisconfigured):
        open_engine(url)  # the observer's writer too
    assert path.read_bytes() == before


def test_a_store_from_a_newer_chainsight_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(engine, "_at_head", set())  # forget this process's migration checks
    path = tmp_path / "future.db"
    url = f"sqlite:///{path}"
    upgrade(url)
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0999'")
    monkeypatch.setattr(engine, "_at_head", set())
    code, _, err = run(capsys, "traces", "--db", url)
    assert code == 1
    assert one_error_line(err) == (
        f"chainsight: error: the store at {url} has schema revision '0999', newer than this "
        f"Chainsight knows (up to {engine.SCHEMA_HEAD!r}): upgrade Chainsight to read it")
    with pytest.raises(StoreMisconfigured):
        open_engine(url)
    with sqlite3.connect(path) as conn:  # untouched
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [("0999",)]


def test_a_missing_postgres_database_is_misconfigured(postgres_url: str) -> None:
    import sqlalchemy as sa

    url = sa.engine.make_url(postgres_url).set(database="no_such_db_chainsight")
    with pytest.raises(StoreMisconfigured, match=r"no database at .*no_such_db_chainsight"):
        open_engine(url.render_as_string(hide_password=False))


# ---- the TUI command --------------------------------------------------------------------


def test_tui_refuses_json(sqlite_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    upgrade(sqlite_url)
    code, out, err = run(capsys, "tui", "--json", "--db", sqlite_url)
    assert code == 2 and out == ""
    assert one_error_line(err).startswith(
        "chainsight: error: `chainsight tui` is interactive and has no --json output")
