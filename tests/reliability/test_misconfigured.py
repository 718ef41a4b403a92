"""Issue "Trust", items 4 and 5: a bad store or configuration is said once, at
start-up, and recording goes on (into the spill file, or with defaults)."""

from __future__ import annotations

import json
import logging
import shutil
import sqlite3
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from reliability_helpers import span_names, wait_for

from chainsight.framework.observer import Observer, get_observer, set_observer
from chainsight.framework.spill import SpillFile
from chainsight.storage.engine import open_engine


def _not_a_database(tmp_path: Path) -> str:
    path = tmp_path / "garbage.db"
    path.write_bytes(b"this is not a SQLite file at all, just text" * 100)
    return f"sqlite:///{path}"


def _newer_schema(tmp_path: Path) -> str:
    open_engine(f"sqlite:///{tmp_path / 'current.db'}").dispose()
    shutil.copy(tmp_path / "current.db", tmp_path / "newer.db")  # a URL this process never opened
    conn = sqlite3.connect(tmp_path / "newer.db")
    conn.execute("UPDATE alembic_version SET version_num = '9999'")
    conn.commit()
    conn.close()
    return f"sqlite:///{tmp_path / 'newer.db'}"


BAD_STORES: dict[str, Callable[[Path], str]] = {
    "unparsable URL": lambda tmp: "this is not a url",
    "unknown database": lambda tmp: "nosuchdb://host/db",
    "missing driver": lambda tmp: "postgresql+psycopg2://u:secret@127.0.0.1:1/db",
    "not a database file": _not_a_database,
    "newer schema": _newer_schema,
}


@pytest.mark.parametrize("case", list(BAD_STORES), ids=list(BAD_STORES))
def test_a_bad_store_is_said_once_and_spans_are_kept(
    case: str, tmp_path: Path, sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = BAD_STORES[case](tmp_path)
    spill = tmp_path / "spill.jsonl"
    with caplog.at_level(logging.WARNING, "chainsight"):
        obs = Observer(url, builtins=(), entry_points=False, spill_path=spill,
                       pipeline={"flush_interval_s": 0.05})
        try:
            assert obs.pipeline.wait_started(10)
            said = [r for r in caplog.records if "cannot store spans" in r.getMessage()]
            assert len(said) == 1, "reported when the observer is built"
            for i in range(3):
                for _ in range(4):
                    obs.end_span(obs.start_span(f"kept-{i}"))
                assert not obs.flush(timeout=10)  # not stored: flush says so
        finally:
            obs.shutdown(timeout=5)
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len([m for m in said if "cannot store spans" in m]) == 1, said
    assert not any("Traceback" in m for m in said)
    assert "secret" not in " ".join(said)  # the URL is masked
    assert len(said[0].splitlines()) == 1
    assert obs.stats().spilled == 12 and obs.stats().failed == 0
    # Fixing the URL and starting again stores them.
    fixed = Observer(sqlite_url, builtins=(), entry_points=False, spill_path=spill)
    try:
        assert wait_for(lambda: len(span_names(sqlite_url)) == 12)
        assert wait_for(lambda: not SpillFile(spill).exists())
    finally:
        fixed.shutdown(timeout=5)


BAD_CONFIG = """\
[storage]
url = "{url}"

[pipeline]
batch_size = "big"
flush_interval_s = 0.05

[plugins.pricng]
x = 1

[plugins.redaction]
email = "yes"
"""


@pytest.fixture
def default_observer() -> Iterator[None]:
    previous = set_observer(None)
    try:
        yield
    finally:
        current = set_observer(previous)
        if current is not None:
            current.shutdown(timeout=5)


def test_an_invalid_configuration_is_said_once_and_capture_goes_on(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str], default_observer: None,
) -> None:
    from langchain_core.language_models.fake_chat_models import FakeListChatModel
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate

    from chainsight.framework.adapters.langchain import CallbackHandler
    from chainsight.framework.cli import main as cli_main

    config = tmp_path / "plugins.toml"
    config.write_text(BAD_CONFIG.format(url=sqlite_url))
    monkeypatch.setenv("CHAINSIGHT_CONFIG", str(config))
    monkeypatch.delenv("CHAINSIGHT_STORAGE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    chain = (ChatPromptTemplate.from_messages([("human", "{q}")])
             | FakeListChatModel(responses=["mail bob@example.com"]) | StrOutputParser())
    with caplog.at_level(logging.WARNING, "chainsight"):
        for i in range(3):
            chain.invoke({"q": f"question {i}"}, config={"callbacks": [CallbackHandler()]})
        assert get_observer().flush(timeout=20)
    assert len(span_names(sqlite_url)) == 3 * 4  # sequence, prompt, model, parser
    said = [r.getMessage() for r in caplog.records if "invalid configuration" in r.getMessage()]
    assert len(said) == 1  # once, not on every callback
    assert cli_main(["config", "check", "--config", str(config)]) != 0
    check = capsys.readouterr().err
    problems = [line.strip() for line in check.splitlines() if "plugins.toml:" in line]
    assert len(problems) == 3
    for line in problems:  # the same words as `chainsight config check`
        assert line in said[0]
    # The invalid redaction table fell back to redaction's defaults: still on.
    import sqlalchemy as sa
    with open_engine(sqlite_url).connect() as conn:
        outputs = " ".join(str(r[0]) for r in conn.execute(sa.text("SELECT outputs FROM spans")))
    assert "bob@example.com" not in outputs and "[redacted:email]" in outputs


def test_db_replay_stores_what_a_bad_url_spilled(tmp_path: Path, sqlite_url: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from chainsight.framework.cli import main as cli_main

    spill = tmp_path / "spill.jsonl"
    obs = Observer("postgresql+psycopg2://u:secret@127.0.0.1:1/db", builtins=(), entry_points=False,
                   spill_path=spill, pipeline={"flush_interval_s": 0.05})
    for i in range(7):
        obs.end_span(obs.start_span(f"kept-{i}"))
    assert not obs.flush(timeout=10)
    obs.shutdown(timeout=5)
    assert cli_main(["db", "replay", "--db", sqlite_url, "--spill", str(spill)]) == 1
    assert "no Chainsight store" in capsys.readouterr().err  # a typo in --db makes no new store
    assert cli_main(["db", "upgrade", "--db", sqlite_url]) == 0
    capsys.readouterr()
    assert cli_main(["db", "replay", "--db", sqlite_url, "--spill", str(spill), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["spans"] == 7 and out["dead_lettered"] == 0
    assert span_names(sqlite_url) == [f"kept-{i}" for i in range(7)]
    assert not SpillFile(spill).exists()
    assert cli_main(["db", "replay", "--db", sqlite_url, "--spill", str(spill)]) == 0
    assert "nothing to replay" in capsys.readouterr().out
