"""Alembic on SQLite: the initial revision is the models' schema; create_all databases are adopted."""

import subprocess
import sys

from scale_support import REPO, clean_env

from storage import get_engine, sqlite_url
from storage.migrations import current, head, schema_diff, upgrade


def test_upgrade_on_an_empty_database_builds_the_models_schema(tmp_path):
    url = sqlite_url(tmp_path / "m.db")
    assert upgrade(url) == (None, head())
    diff = schema_diff(url)
    assert diff == [], (
        "the models changed without a migration: run "
        "`avatar-flow db revision -m '...'` and commit the new file"
    )


def test_a_create_all_database_is_stamped_not_rebuilt(tmp_path):
    url = sqlite_url(tmp_path / "c.db")
    get_engine(url)  # create_all, as every embedded run does
    assert current(url) is None
    assert upgrade(url) == (None, head())


def test_db_upgrade_command(tmp_path):
    url = sqlite_url(tmp_path / "cli.db")
    proc = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "db", "upgrade", "--url", url],
        cwd=REPO,
        env=clean_env(AVATAR_FLOW_HOME=str(tmp_path / "h")),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"empty -> {head()}" in proc.stdout
    assert current(url) == head()
