"""A real PostgreSQL for tests: one cluster per session (initdb/pg_ctl on a free loopback port, as an
unprivileged user when the tests run as root), a fresh database per test.

Import the fixtures you use explicitly::

    from tests.postgres import pg_cluster, store_settings  # noqa: F401

- ``pg_cluster``: the running :class:`LocalPostgres` (session); its password is in ``$LOOKOUT_TEST_PGPASSWORD``.
- ``pg_store_settings``: ``StoreSettings`` for a new empty database.
- ``store_settings``: parametrized over both engines (``sqlite`` file in tmp_path, and ``postgresql``).

Tests that need PostgreSQL skip, saying why, only where its server binaries are not installed.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import pytest
from lookout.relay.config import StoreSettings
from lookout.relay.local_postgres import PASSWORD_ENV, LocalPostgres, find_pg_bin

__all__ = ["pg_cluster", "pg_store_settings", "store_settings"]

_names = itertools.count(1)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[LocalPostgres]:
    if find_pg_bin() is None:
        pytest.skip("PostgreSQL server binaries not found (apt-get install postgresql, or set LOOKOUT_PG_BIN)")
    pytest.importorskip("psycopg", reason="psycopg not installed (pip install 'lookout[postgresql]')")
    cluster = LocalPostgres().start()
    previous = os.environ.get(PASSWORD_ENV)
    os.environ[PASSWORD_ENV] = cluster.password
    try:
        yield cluster
    finally:
        cluster.stop()
        if previous is None:
            os.environ.pop(PASSWORD_ENV, None)
        else:
            os.environ[PASSWORD_ENV] = previous


@pytest.fixture
def pg_store_settings(pg_cluster: LocalPostgres) -> StoreSettings:
    dsn = pg_cluster.create_database(f"test_{os.getpid()}_{next(_names)}")
    return StoreSettings(type="postgresql", dsn=dsn, password_env=PASSWORD_ENV, connect_timeout_s=10)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_settings(request, tmp_path) -> StoreSettings:
    if request.param == "sqlite":
        return StoreSettings(path=tmp_path / "relay.sqlite")
    return request.getfixturevalue("pg_store_settings")
