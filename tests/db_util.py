"""Database URLs for tests: SQLite always; PostgreSQL when SAFESET_TEST_POSTGRES_URL is set.

Each PostgreSQL test gets a schema of its own (dropped afterwards), so tests
never see each other's tables and can run against a shared server.
"""

from __future__ import annotations

import os
import uuid

import pytest

POSTGRES_ENV = "SAFESET_TEST_POSTGRES_URL"


def backends() -> list:
    params = [pytest.param("sqlite", id="sqlite")]
    if os.environ.get(POSTGRES_ENV):
        params.append(pytest.param("postgresql", id="postgresql"))
    return params


def postgres_url_with_schema(base: str, schema: str) -> str:
    separator = "&" if "?" in base else "?"
    return f"{base}{separator}options=-csearch_path%3D{schema}"


class TemporaryDatabase:
    """A fresh database URL for one test, cleaned up by `drop`."""

    def __init__(self, backend: str, tmp_path):
        self.backend = backend
        self.schema = None
        if backend == "sqlite":
            self.url = f"sqlite:///{tmp_path / 'state' / 'safeset.db'}"
        else:
            import psycopg

            base = os.environ[POSTGRES_ENV]
            self.schema = "t_" + uuid.uuid4().hex[:16]
            with psycopg.connect(base, autocommit=True) as conn:
                conn.execute(f'CREATE SCHEMA "{self.schema}"')
            self.url = postgres_url_with_schema(base, self.schema)

    def drop(self) -> None:
        if self.schema is None:
            return
        import psycopg

        with psycopg.connect(os.environ[POSTGRES_ENV], autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{self.schema}" CASCADE')
