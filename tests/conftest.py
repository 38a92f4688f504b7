"""Shared fixtures."""

from __future__ import annotations

import pytest

from db_util import TemporaryDatabase, backends


@pytest.fixture(params=backends())
def db_url(request, tmp_path):
    """A fresh, empty database URL: SQLite, and PostgreSQL too when SAFESET_TEST_POSTGRES_URL is set."""
    database = TemporaryDatabase(request.param, tmp_path)
    yield database.url
    database.drop()
