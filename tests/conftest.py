"""Shared fixtures."""

from __future__ import annotations

import sys

import pytest

from db_util import TemporaryDatabase, backends


@pytest.fixture(params=backends())
def db_url(request, tmp_path):
    """A fresh, empty database URL: SQLite, and PostgreSQL too when SAFESET_TEST_POSTGRES_URL is set."""
    database = TemporaryDatabase(request.param, tmp_path)
    yield database.url
    _close_service_clients_now()  # before the schema goes away under them
    database.drop()


def _close_service_clients_now() -> None:
    service_util = sys.modules.get("service_util")
    if service_util is not None:
        service_util.close_clients()


@pytest.fixture(autouse=True)
def _close_service_clients():
    """Service test clients made by tests/service_util.make_client are shut down after each test."""
    yield
    _close_service_clients_now()
