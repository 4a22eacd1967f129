"""Security-test fixtures: a team server (tests/security/team_helpers.py) and a tally of the
requests the tests sent and the leaks they found, printed at the end of the run
("security: N requests tried, M leaks found") for the issue's closing numbers."""

from __future__ import annotations

import pytest

TALLY = {"requests": 0, "leaks": 0}


@pytest.fixture
def tally():
    """Tests add what they sent and found: ``tally["requests"] += n``."""
    return TALLY


def pytest_terminal_summary(terminalreporter):
    if TALLY["requests"]:
        terminalreporter.write_line(f"security: {TALLY['requests']} requests tried, {TALLY['leaks']} leaks found")


@pytest.fixture
def team(tmp_path, monkeypatch):
    """A server with hr / legal / handbook collections and one key per role and grant."""
    from rag.keys import KeyStore
    from rag.llms import register, unregister
    from rag.server import create_app
    from tests.http_helpers import EchoLLM, serving
    from tests.reliability._helpers import hash_rag
    from tests.security.team_helpers import Team, build_index

    root = tmp_path / "root"
    root.mkdir()
    (root / "notes.txt").write_text("The harbour master logs every ship.\n")
    rag = hash_rag(data_dir=tmp_path / "data", llm="echo:", ingest__workers=0,
                   auth={"failed_burst": 20, "failed_per_minute": 10})
    ids = build_index(rag)
    grants = {"hr-reader": ["hr"], "legal-reader": ["legal"], "hr-writer": ["hr"],
              "hr-handbook": ["handbook", "hr"], "admin": ["*"]}
    roles = {"hr-writer": "writer", "admin": "admin"}
    store = KeyStore(rag.settings.data_dir)
    keys = {name: store.create(name, roles.get(name, "reader"), cols)[1] for name, cols in grants.items()}
    store.close()
    register("echo", EchoLLM)
    try:
        with serving(create_app(rag, ingest_root=root)) as url:
            yield Team(url, rag, keys, grants, ids)
    finally:
        unregister("echo")
        rag.close()
