"""Engine and session factory: SQLite (WAL) by default, any SQLAlchemy URL otherwise."""

import contextlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import event, text
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel, create_engine

from storage import models  # noqa: F401  (registers every table on SQLModel.metadata)


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def _configure_sqlite(engine: Engine) -> None:
    """WAL + busy timeout + BEGIN IMMEDIATE: several writer processes queue instead of failing."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:  # pragma: no cover - exercised via engine use
        dbapi_conn.isolation_level = None  # let SQLAlchemy's "begin" event emit BEGIN
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=60000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:  # pragma: no cover
        conn.exec_driver_sql("BEGIN IMMEDIATE")


_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()
# Any fixed number: serialises table creation across processes sharing one PostgreSQL.
_CREATE_LOCK_ID = 0x61766174


def get_engine(url: str) -> Engine:
    """One engine per URL per process; tables are created on first use.

    Creation is serialised across threads (a lock) and, on PostgreSQL, across processes
    (an advisory lock): two workers starting on a fresh database would otherwise race on
    CREATE TYPE/TABLE. Production databases are migrated with `avatar-flow db upgrade`.
    """
    with _engines_lock:
        if url in _engines:
            return _engines[url]
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 60})
            _configure_sqlite(engine)
            SQLModel.metadata.create_all(engine)
        else:
            engine = create_engine(url, pool_pre_ping=True)
            with engine.begin() as conn:
                if engine.dialect.name == "postgresql":
                    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _CREATE_LOCK_ID})
                SQLModel.metadata.create_all(conn)
        _engines[url] = engine
        return engine


class DatabaseUnavailable(RuntimeError):
    """The job database cannot be reached or opened: one line with its URL (no password)."""


def shown_url(url: str) -> str:
    """The URL as it may be printed: without its password."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL at all: nothing to hide
        return url


def check_database(url: str) -> None:
    """Open the database once (and create its tables): a job checks this before any work, so
    an unreachable server is one clear line at the start, not a failure after speech."""
    from sqlalchemy.exc import SQLAlchemyError

    try:
        with get_engine(url).connect() as conn:
            conn.execute(text("SELECT 1"))
    except (SQLAlchemyError, OSError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        raise DatabaseUnavailable(
            f"cannot open the database {shown_url(url)}: {reason[0] if reason else exc}"
        ) from None


@contextmanager
def session_scope(url: str) -> Iterator[Session]:
    """A transaction: committed on success, rolled back on any error."""
    from sqlalchemy.exc import OperationalError

    with Session(get_engine(url), expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except OperationalError as exc:  # the server went away, a lock timed out, disk full
            with contextlib.suppress(Exception):
                session.rollback()
            reason = (str(exc.orig).strip().splitlines() or [str(exc)])[0]
            raise DatabaseUnavailable(f"the database {shown_url(url)} failed: {reason}") from exc
        except BaseException:
            session.rollback()
            raise
