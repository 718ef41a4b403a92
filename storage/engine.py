"""Engines for SQLite and PostgreSQL, migrated to head on open.

``open_engine`` is the one way the rest of Chainsight gets a connection pool.
SQLite runs in WAL mode (readers never block the writer) with a short busy
timeout, so a locked file turns into :class:`StoreUnavailable` quickly and the
pipeline can spill instead of stalling.

Two kinds of failure, so that callers know whether to retry:

* :class:`StoreUnavailable`: transient (a locked file, a server that is down);
  retrying later may work.
* :class:`StoreMisconfigured`: the URL, the file, the schema or the driver is
  wrong (and :class:`StoreNotFound`: a reader found no store there); retrying
  will not help until the user fixes it.

Their messages are one line a user understands, with the URL masked
(:func:`display_url`): every URL Chainsight prints, logs or stores goes
through it.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlalchemy.engine import make_url
from sqlalchemy.pool import StaticPool

from chainsight.framework.private_files import make_private_dirs
from chainsight.framework.store_api import StoreMisconfigured, StoreUnavailable

__all__ = ["StoreMisconfigured", "StoreUnavailable", "open_engine", "upgrade"]
from chainsight.storage.serialize import dumps

if TYPE_CHECKING:
    from alembic.config import Config

DEFAULT_BUSY_TIMEOUT_MS: Final = 2000
MAINTENANCE_BUSY_TIMEOUT_MS: Final = 30_000
"""How long prune and copy wait for SQLite's lock: they run beside busy
writers, which can hold it most of the time, and a short wait costs them
nothing a failure would not."""
DEFAULT_CONNECT_TIMEOUT_S: Final = 5
MIGRATIONS_DIR: Final = Path(__file__).resolve().parent / "migrations"

_lock = threading.Lock()
_migrate_lock = threading.Lock()
_at_head: set[str] = set()
_head_revision: str | None = None


SQLITE_MAGIC: Final = b"SQLite format 3\x00"
MAKE_A_STORE: Final = (
    "record into it (an observer, or `chainsight demo --db URL`), "
    "or create an empty one with `chainsight db upgrade --db URL`"
)
SUPPORTED: Final = "Chainsight stores in SQLite (sqlite:///PATH) or PostgreSQL (postgresql+psycopg://USER@HOST/DATABASE)"


class StoreNotFound(StoreMisconfigured):
    """A reader (``open_engine(url, create=False)``) found no Chainsight store at the URL."""

    def __init__(self, url: str) -> None:
        super().__init__(f"no Chainsight store at {display_url(url)}: {MAKE_A_STORE}")
        self.url = display_url(url)


SQLITE_SUFFIXES: Final = (".db", ".sqlite", ".sqlite3")


def normalize_url(url: str) -> str:
    """Accept ``postgresql://`` and ``postgres://`` as ``postgresql+psycopg://``,
    and the path of a SQLite file (one that exists, or a name ending in .db,
    .sqlite or .sqlite3) as ``sqlite:///`` it. Anything else is left to fail
    as "not a store URL": a mistyped URL must not become a new file."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    if url and "://" not in url:
        path = Path(url).expanduser()
        if path.suffix in SQLITE_SUFFIXES or path.is_file():
            return f"sqlite:///{path.absolute()}"
    return url


_PASSWORD_IN_NETLOC: Final = re.compile(r"(://[^:/@?#]*):[^@/?#]*@")
_PASSWORD_IN_QUERY: Final = re.compile(r"([?&](?:password|pass|pwd)=)[^&#]*", re.IGNORECASE)


def display_url(url: str) -> str:
    """``url`` with its password masked (``***``), for anything printed, logged or stored.

    Works on URLs SQLAlchemy cannot parse too, and masks a ``password=``
    query parameter (which libpq accepts) as well as ``user:password@``.
    """
    text = str(url)
    try:
        text = make_url(text).render_as_string(hide_password=True)
    except Exception:
        text = _PASSWORD_IN_NETLOC.sub(r"\1:***@", text)
    return _PASSWORD_IN_QUERY.sub(r"\1***", text)


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
            raise StoreUnavailable(f"{display_url(url)}: {_first_line(error)}") from error
        raise


def _first_line(error: BaseException) -> str:
    orig = getattr(error, "orig", None) or error
    return str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__


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
            # Takes effect only in a new, empty file (before the first table):
            # retention gives freed pages back in steps (storage/retention.py).
            cursor.execute("PRAGMA auto_vacuum = INCREMENTAL")
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


def create(url: str, *, busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
           make_dirs: bool = True) -> sa.Engine:
    """An engine with Chainsight's settings, not migrated (see :func:`open_engine`).

    ``make_dirs``: create the folders of a SQLite file. Raises
    :class:`StoreMisconfigured` for a URL that cannot be parsed, a database
    Chainsight does not support, a driver that is not installed, or a folder
    that cannot be made.
    """
    url = normalize_url(url)
    try:
        parsed = make_url(url)
    except exc.ArgumentError:
        raise StoreMisconfigured(
            f"not a store URL: {display_url(url)!r} "
            "(use sqlite:///PATH or postgresql+psycopg://USER@HOST/DATABASE)"
        ) from None
    # Errors must not echo row values (span content) into logs or dead letters.
    kwargs: dict[str, Any] = {"json_serializer": dumps, "hide_parameters": True}
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        in_memory = not database or database == ":memory:" or database.startswith("file::memory")
        connect_args: dict[str, Any] = {"timeout": busy_timeout_ms / 1000}
        if in_memory:
            kwargs["poolclass"] = StaticPool
            connect_args["check_same_thread"] = False
        elif make_dirs:
            assert database is not None
            path = Path(database).expanduser()
            try:
                _create_private(path)
            except OSError as error:
                raise StoreMisconfigured(
                    f"cannot make the store file {str(path)!r} for "
                    f"{display_url(url)}: {error.strerror or error}"
                ) from None
        kwargs["connect_args"] = connect_args
        engine = _create_engine(url, parsed, kwargs)
        event.listen(engine, "connect", _sqlite_pragmas(busy_timeout_ms))
        return engine
    if "connect_timeout" not in parsed.query:
        kwargs["connect_args"] = {"connect_timeout": DEFAULT_CONNECT_TIMEOUT_S}
    return _create_engine(url, parsed, {"pool_pre_ping": True, **kwargs})


def _create_engine(url: str, parsed: sa.URL, kwargs: dict[str, Any]) -> sa.Engine:
    """``sa.create_engine``, with a missing driver or dialect as :class:`StoreMisconfigured`."""
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise StoreMisconfigured(f"unsupported store URL {display_url(url)}: {SUPPORTED}")
    try:
        return sa.create_engine(url, **kwargs)
    except exc.NoSuchModuleError:
        raise StoreMisconfigured(f"unsupported store URL {display_url(url)}: {SUPPORTED}") from None
    except ImportError as error:
        if backend == "postgresql" and parsed.get_driver_name() == "psycopg":
            raise StoreMisconfigured(
                "PostgreSQL needs the psycopg driver: pip install 'chainsight[postgres]' "
                f"(for {display_url(url)})"
            ) from None
        raise StoreMisconfigured(
            f"the database driver for {display_url(url)} is not installed "
            f"({error.name or error})"
        ) from None


def _sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL (None for in-memory databases and other backends)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database
    if not database or database == ":memory:" or database.startswith("file::memory"):
        return None
    return Path(database).expanduser()


def _check_sqlite_file(url: str, path: Path, *, must_exist: bool) -> None:
    """StoreNotFound for a missing file (when it must exist), StoreMisconfigured
    for something there that is not a SQLite database."""
    if not path.exists():
        if must_exist:
            raise StoreNotFound(url)
        return
    if path.is_dir():
        raise StoreMisconfigured(f"{display_url(url)}: {str(path)!r} is a folder, not a SQLite file")
    try:
        with open(path, "rb") as fh:
            head = fh.read(len(SQLITE_MAGIC))
    except OSError as error:
        raise StoreMisconfigured(
            f"cannot read the store {display_url(url)}: {error.strerror or error}"
        ) from None
    if head and head != SQLITE_MAGIC[: len(head)]:
        raise StoreMisconfigured(f"{display_url(url)}: {str(path)!r} is not a SQLite database")


# The newest migration. Checked against alembic's own view by a test; it lets an
# up-to-date store open without importing alembic (a good part of TUI start-up).
SCHEMA_HEAD: Final = "0008"


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


def _known_revision(revision: str) -> bool:
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    try:
        return ScriptDirectory.from_config(alembic_config()).get_revision(revision) is not None
    except CommandError:
        return False


def _migrate(engine: sa.Engine, url: str, create: bool) -> str:
    with engine.connect() as conn:
        current = current_revision(conn)
    if current == SCHEMA_HEAD:
        return SCHEMA_HEAD
    if current is None and not create:
        raise StoreNotFound(url)
    if current is not None and not _known_revision(current):
        raise StoreMisconfigured(
            f"the store at {display_url(url)} has schema revision {current!r}, newer than "
            f"this Chainsight knows (up to {SCHEMA_HEAD!r}): upgrade Chainsight to read it"
        )
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


def _misconfigured(url: str, error: exc.SQLAlchemyError) -> StoreMisconfigured | None:
    """The errors of a first connection that no retry will cure."""
    text = _first_line(error)
    lowered = text.lower()
    if isinstance(error, exc.DatabaseError) and "file is not a database" in lowered:
        return StoreMisconfigured(f"{display_url(url)}: the file is not a SQLite database")
    if re.search(r'database "[^"]*" does not exist', text):
        return StoreMisconfigured(
            f"no database at {display_url(url)}: {text} (create it, e.g. with createdb)"
        )
    if "password authentication failed" in lowered or "no password supplied" in lowered:
        return StoreMisconfigured(f"cannot log in to {display_url(url)}: {text}")
    return None


def _ensure_migrated(engine: sa.Engine, url: str, create: bool = True) -> str:
    try:
        with translate_errors(url):
            try:
                head = _migrate(engine, url, create)
            except exc.OperationalError as error:
                # Another process may have migrated the same SQLite file meanwhile.
                if "already exists" not in str(error):
                    raise
                head = _migrate(engine, url, create)
    except (exc.SQLAlchemyError, StoreUnavailable) as error:
        cause = error.__cause__ if isinstance(error, StoreUnavailable) else error
        if isinstance(cause, exc.SQLAlchemyError):
            misconfigured = _misconfigured(url, cause)
            if misconfigured is not None:
                raise misconfigured from None
        raise
    if engine.url.get_backend_name() != "sqlite" or engine.pool.__class__ is not StaticPool:
        with _lock:
            _at_head.add(url)  # an in-memory database is new on every engine
    return head


def upgrade(url: str) -> str:
    """Apply every migration (``chainsight db upgrade``); returns the head revision.

    Creates the store (and a SQLite file's folders) when there is none.
    """
    url = normalize_url(url)
    engine = create(url)
    try:
        path = _sqlite_file(url)
        if path is not None:
            _check_sqlite_file(url, path, must_exist=False)
        return _ensure_migrated(engine, url)
    finally:
        engine.dispose()


def open_engine(url: str, *, busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
                create: bool = True) -> sa.Engine:
    """An engine for ``url`` whose database is migrated to head.

    ``create=False`` is for readers: a store that does not exist (no SQLite
    file, or a database without Chainsight's tables) raises
    :class:`StoreNotFound` and nothing is created on disk. Writers keep the
    default and get a new store (and its folders) when there is none.

    Raises :class:`StoreMisconfigured` when the URL, the file, the schema or
    the driver is wrong and :class:`StoreUnavailable` when the store cannot
    be reached right now. The migration check runs once per URL per process.
    """
    url = normalize_url(url)
    try:
        path = _sqlite_file(url)
    except exc.ArgumentError:
        path = None  # create() below reports the URL
    if path is not None:
        _check_sqlite_file(url, path, must_exist=not create)
    engine = _new_engine(url, busy_timeout_ms=busy_timeout_ms, make_dirs=create)
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
                    _ensure_migrated(engine, url, create)
            except BaseException:
                engine.dispose()
                raise
    return engine


_new_engine = create  # ``create`` is also open_engine's keyword


def _new_locks_in_child() -> None:
    """A child forked while another thread held one of these would wait forever."""
    global _lock, _migrate_lock
    _lock, _migrate_lock = threading.Lock(), threading.Lock()


os.register_at_fork(after_in_child=_new_locks_in_child)
