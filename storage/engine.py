"""Engines for SQLite and PostgreSQL, migrated to head on open.

``open_engine`` is the one way the rest of Chainsight gets a connection pool.
SQLite runs in WAL mode (readers never block the writer) with a short busy
timeout, so a locked file turns into :class:`StoreUnavailable` quickly and the
pipeline can spill instead of stalling.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlalchemy.engine import make_url
from sqlalchemy.pool import StaticPool

from framework.private_files import make_private_dirs
from framework.store_api import StoreMisconfigured, StoreUnavailable

__all__ = ["StoreMisconfigured", "StoreUnavailable", "open_engine", "upgrade"]
from storage.serialize import dumps

if TYPE_CHECKING:
    from alembic.config import Config

DEFAULT_BUSY_TIMEOUT_MS: Final = 2000
DEFAULT_CONNECT_TIMEOUT_S: Final = 5
MIGRATIONS_DIR: Final = Path(__file__).resolve().parent / "migrations"

_lock = threading.Lock()
_migrate_lock = threading.Lock()
_at_head: set[str] = set()
_head_revision: str | None = None


def normalize_url(url: str) -> str:
    """Accept ``postgresql://`` and ``postgres://`` as ``postgresql+psycopg://``."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def is_unavailable(error: BaseException) -> bool:
    """Whether a database error means "not reachable / locked" rather than a bug."""
    if isinstance(error, exc.DBAPIError) and error.connection_invalidated:
        return True
    if isinstance(error, exc.OperationalError | exc.InterfaceError):
        text = str(error.orig if error.orig is not None else error).lower()
        # SQLite reports bugs as OperationalError too ("no such table", syntax).
        return not ("no such " in text or "syntax error" in text or "has no column" in text)
    return isinstance(error, exc.DisconnectionError | exc.TimeoutError)


@contextmanager
def translate_errors(url: str) -> Iterator[None]:
    """Re-raise connection and lock errors as :class:`StoreUnavailable`."""
    try:
        yield
    except exc.SQLAlchemyError as error:
        if is_unavailable(error):
            raise StoreUnavailable(f"{_safe_url(url)}: {_first_line(error)}") from error
        raise


def _first_line(error: BaseException) -> str:
    orig = getattr(error, "orig", None) or error
    return str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__


def _safe_url(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<store>"


def _create_private(path: Path) -> None:
    """Create a new SQLite file (and its folders) owner-only before SQLite
    does: SQLite honours the umask, and gives its -wal and -shm files the
    database file's mode."""
    if path.exists():
        return
    make_private_dirs(path.parent)
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        pass


def _sqlite_pragmas(busy_timeout_ms: int) -> Any:
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.execute("PRAGMA foreign_keys = OFF")
            cursor.execute("PRAGMA cache_size = -65536")  # 64 MiB: random-key index inserts
            # Checkpoints are what fsync in WAL mode: fewer, larger ones write
            # ~20% more spans/s; the WAL file is truncated back to 64 MiB.
            cursor.execute("PRAGMA wal_autocheckpoint = 10000")
            cursor.execute("PRAGMA journal_size_limit = 67108864")
        finally:
            cursor.close()

    return on_connect


def create(url: str, *, busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS) -> sa.Engine:
    """An engine with Chainsight's settings, not migrated (see :func:`open_engine`)."""
    url = normalize_url(url)
    parsed = make_url(url)
    # Errors must not echo row values (span content) into logs or dead letters.
    kwargs: dict[str, Any] = {"json_serializer": dumps, "hide_parameters": True}
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        in_memory = not database or database == ":memory:" or database.startswith("file::memory")
        connect_args: dict[str, Any] = {"timeout": busy_timeout_ms / 1000}
        if in_memory:
            kwargs["poolclass"] = StaticPool
            connect_args["check_same_thread"] = False
        else:
            assert database is not None
            _create_private(Path(database).expanduser())
        kwargs["connect_args"] = connect_args
        engine = sa.create_engine(url, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas(busy_timeout_ms))
        return engine
    if "connect_timeout" not in parsed.query:
        kwargs["connect_args"] = {"connect_timeout": DEFAULT_CONNECT_TIMEOUT_S}
    return sa.create_engine(url, pool_pre_ping=True, **kwargs)


# The newest migration. Checked against alembic's own view by a test; it lets an
# up-to-date store open without importing alembic (a good part of TUI start-up).
SCHEMA_HEAD: Final = "0002"


def alembic_config() -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def head_revision() -> str:
    global _head_revision
    if _head_revision is None:
        from alembic.script import ScriptDirectory

        head = ScriptDirectory.from_config(alembic_config()).get_current_head()
        if head is None:  # pragma: no cover - the package ships its migrations
            raise RuntimeError("no alembic migrations found")
        _head_revision = head
    return _head_revision


def current_revision(conn: sa.Connection) -> str | None:
    if not sa.inspect(conn).has_table("alembic_version"):
        return None
    return conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()


def _migrate(engine: sa.Engine) -> str:
    with engine.connect() as conn:
        if current_revision(conn) == SCHEMA_HEAD:
            return SCHEMA_HEAD
    from alembic import command

    head = head_revision()
    config = alembic_config()
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Serialise concurrent first opens; released at commit.
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7461029384)")
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
    return head


def _ensure_migrated(engine: sa.Engine, url: str) -> str:
    with translate_errors(url):
        try:
            head = _migrate(engine)
        except exc.OperationalError as error:
            # Another process may have migrated the same SQLite file meanwhile.
            if "already exists" not in str(error):
                raise
            head = _migrate(engine)
    if engine.url.get_backend_name() != "sqlite" or engine.pool.__class__ is not StaticPool:
        with _lock:
            _at_head.add(url)  # an in-memory database is new on every engine
    return head


def upgrade(url: str) -> str:
    """Apply every migration (``chainsight db upgrade``); returns the head revision."""
    url = normalize_url(url)
    engine = create(url)
    try:
        return _ensure_migrated(engine, url)
    finally:
        engine.dispose()


def open_engine(url: str, *, busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS) -> sa.Engine:
    """An engine for ``url`` whose database is migrated to head.

    Raises :class:`StoreUnavailable` when the store cannot be reached. The
    migration check runs once per URL per process.
    """
    url = normalize_url(url)
    engine = create(url, busy_timeout_ms=busy_timeout_ms)
    with _lock:
        done = url in _at_head
    if not done:
        # pysqlite commits each DDL statement on its own, so two threads
        # migrating one new file would see each other's half-made schema.
        with _migrate_lock:
            try:
                with _lock:
                    done = url in _at_head
                if not done:
                    _ensure_migrated(engine, url)
            except BaseException:
                engine.dispose()
                raise
    return engine
