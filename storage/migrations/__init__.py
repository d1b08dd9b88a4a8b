"""Alembic migrations for the avatar-flow records (SQLite and PostgreSQL).

How they coexist with `SQLModel.metadata.create_all` (which `storage.get_engine` runs so the
embedded SQLite default needs no set-up step):

* `upgrade(url)` on an empty database runs every revision.
* On a database that `create_all` made (tables, but no `alembic_version`), `upgrade` first
  compares the live schema with the models: if they match it stamps the head revision (nothing
  to run), otherwise it refuses and names the differences (stamp the matching revision by hand
  with `avatar-flow db stamp REV`, then upgrade).
* Schema changes always ship as a new revision here; a test fails when the models and the head
  revision disagree, so `create_all` and the migrations cannot drift apart.

The Alembic configuration lives in code (no alembic.ini): the URL comes from the caller.
"""

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect

HERE = Path(__file__).resolve().parent


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["url"] = url
    return cfg


def head() -> str:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def current(url: str) -> str | None:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def schema_diff(url: str) -> list:
    """Differences between the live database and the SQLModel models (empty = in step)."""
    from alembic.autogenerate import compare_metadata
    from sqlmodel import SQLModel

    from storage import models  # noqa: F401  (registers the tables)

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(
                conn, opts={"compare_type": True, "render_as_batch": True}
            )
            return [
                d
                for d in compare_metadata(ctx, SQLModel.metadata)
                if not (
                    isinstance(d, tuple)
                    and d[0] == "remove_table"
                    and d[1].name == "alembic_version"
                )
            ]
    finally:
        engine.dispose()


def _has_tables(url: str) -> bool:
    engine = create_engine(url)
    try:
        names = set(inspect(engine).get_table_names()) - {"alembic_version"}
        return bool(names)
    finally:
        engine.dispose()


def upgrade(url: str, revision: str = "head") -> tuple[str | None, str | None]:
    """Bring the database to `revision`; returns (before, after) revisions."""
    before = current(url)
    cfg = alembic_config(url)
    if before is None and _has_tables(url):
        diff = schema_diff(url)
        if diff:
            raise RuntimeError(
                "the database was created without migrations and differs from the "
                f"models ({len(diff)} differences, first: {diff[0]}); stamp the "
                "revision it matches (`avatar-flow db stamp REV`) and upgrade"
            )
        command.stamp(cfg, "head")
    else:
        command.upgrade(cfg, revision)
    return before, current(url)


def stamp(url: str, revision: str = "head") -> None:
    command.stamp(alembic_config(url), revision)
