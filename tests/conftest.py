"""Shared fixtures: a fresh SQLite file and a fresh PostgreSQL schema per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

POSTGRES_ENV = "CHAINSIGHT_TEST_POSTGRES_URL"

# chainsight.testing's fixture (tests/testing) and pytester, to run it as a plugin author would.
pytest_plugins = ["pytester", "chainsight.testing"]


@pytest.hookimpl(trylast=True)  # after the other plugins' summaries: the last line of the run
def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say so, at the end, when the PostgreSQL tests were skipped (no server given)."""
    skipped = [
        report for report in terminalreporter.stats.get("skipped", [])
        if POSTGRES_ENV in str(getattr(report, "longrepr", ""))
    ]
    promtool = [report for report in terminalreporter.stats.get("skipped", [])
                if "promtool not found" in str(getattr(report, "longrepr", ""))]
    if promtool:
        terminalreporter.write_line(
            f"{len(promtool)} Prometheus rule test{'s' if len(promtool) != 1 else ''} skipped: "
            "promtool not found (apt-get install prometheus, or run .ci/run)",
            yellow=True, bold=True,
        )
    if skipped:
        terminalreporter.write_line(
            f"{len(skipped)} PostgreSQL test{'s' if len(skipped) != 1 else ''} skipped: "
            f"set {POSTGRES_ENV}="
            "postgresql+psycopg://USER:PASSWORD@HOST/DB to run them against a server, "
            "or run .ci/run (starts a private PostgreSQL and runs make test)",
            yellow=True, bold=True,
        )


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """``sqlite:///`` URL of a database file that does not exist yet."""
    return f"sqlite:///{tmp_path / 'chainsight.db'}"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """URL of an empty PostgreSQL schema (dropped afterwards).

    Skips when CHAINSIGHT_TEST_POSTGRES_URL is unset, except under CI=true,
    where it fails: CI must really run the PostgreSQL tests.
    """
    base = os.environ.get(POSTGRES_ENV)
    if not base:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"{POSTGRES_ENV} is not set but CI=true: PostgreSQL tests must run")
        pytest.skip(f"set {POSTGRES_ENV} to run PostgreSQL tests")
    import sqlalchemy as sa

    from chainsight.storage.engine import normalize_url

    base = normalize_url(base)
    schema_name = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema_name}")
    url = (
        sa.engine.make_url(base)
        .update_query_dict({"options": f"-csearch_path={schema_name}"})
        .render_as_string(hide_password=False)
    )
    try:
        yield url
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema_name} CASCADE")
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest) -> str:
    """Both backends, for behaviour that must be identical."""
    name = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    url: str = request.getfixturevalue(name)
    return url


@pytest.fixture
def litellm_call(tmp_path: Path) -> Callable[..., tuple[str, str]]:
    """``record(name, model=..., capture_content=...)``: (store URL, trace id)
    of a new SQLite store in ``tmp_path`` holding one litellm call to
    ``model`` ("hi", answered "hello" by ``mock_response``: no network),
    recorded by a strict Observer."""
    import litellm

    from chainsight.framework.adapters.litellm import LitellmCallback
    from chainsight.framework.observer import Observer
    from chainsight.storage.query import Store

    def record(name: str, *, model: str = "gpt-4o-mini", capture_content: bool = True) -> tuple[str, str]:
        url = f"sqlite:///{tmp_path / name}"
        obs = Observer(url, strict=True, entry_points=False, spill_path=tmp_path / "spill")
        try:
            callback = LitellmCallback(obs, capture_content=capture_content)
            litellm.completion(model=model, messages=[{"role": "user", "content": "hi"}],
                               mock_response="hello", callbacks=[callback])
            assert callback.flush(10)
        finally:
            obs.shutdown()
        with Store(url) as store:
            (trace,) = store.list_traces().items
        return url, trace.trace_id

    return record
