"""A migrated, empty Prefect database kept as SQL text, so the tests' Prefect server starts
without running every schema migration (about 13 of its 17 s on 2 cores).

``tests/assets/prefect_schema/<prefect version>.sql.gz`` is the (gzipped) dump of a database that Prefect
migrated itself; only the installed version's file is used, so a Prefect upgrade falls back
to migrating until the new file is written::

    python -m tests.flows.prefect_schema      # writes the file of the installed version
"""

from __future__ import annotations

import asyncio
import gzip
import sqlite3
import tempfile
from pathlib import Path

import prefect

SCHEMAS = Path(__file__).resolve().parents[1] / "assets" / "prefect_schema"
DB_NAME = "prefect-test.db"  # the file name prefect_test_harness gives its database


def schema_file() -> Path:
    return SCHEMAS / f"{prefect.__version__}.sql.gz"


def seed_database(folder: Path) -> bool:
    """Create ``folder/prefect-test.db`` from the installed version's dump; False without one."""
    if not schema_file().is_file():
        return False
    connection = sqlite3.connect(folder / DB_NAME)
    try:
        connection.executescript(gzip.decompress(schema_file().read_bytes()).decode("utf-8"))
    finally:
        connection.close()
    return True


def write_schema() -> Path:
    """Migrate an empty database with Prefect's own migrations and dump it as SQL."""
    from prefect.server.database import provide_database_interface
    from prefect.settings import PREFECT_SERVER_DATABASE_CONNECTION_URL, temporary_settings

    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / DB_NAME
        with temporary_settings(
            {PREFECT_SERVER_DATABASE_CONNECTION_URL: f"sqlite+aiosqlite:///{db}"}
        ):
            asyncio.run(provide_database_interface().create_db())
        connection = sqlite3.connect(db)
        try:
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            dump = "\n".join(connection.iterdump()) + "\n"
        finally:
            connection.close()
    SCHEMAS.mkdir(parents=True, exist_ok=True)
    out = schema_file()
    out.write_bytes(gzip.compress(dump.encode("utf-8"), mtime=0))
    return out


if __name__ == "__main__":
    print(write_schema())
