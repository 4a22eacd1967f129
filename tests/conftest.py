"""Shared fixtures: every test gets its own data dir and a clean RAGTUNE_* environment."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "sample"
SHARED = ROOT.parent / "shared" / "data"

os.environ["HF_HUB_OFFLINE"] = "1"          # no hub at test time, ever
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from ray_cluster import pg_table, ray_cluster  # noqa: F401 - a Ray cluster, a pgvector table (tests/ray_cluster.py)


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    for name in list(os.environ):
        if name.startswith("RAGTUNE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("RAGTUNE_DATA_DIR", str(tmp_path / ".ragtune"))
    # The default runtime ("auto": OpenVINO int8 where installed) builds a calibrated export on first
    # use; tests share the session's torch embedder instead, so they run the same vectors in any
    # order. The default itself is tested in tests/integration/test_openvino_backend.py.
    monkeypatch.setenv("RAGTUNE_EMBEDDER_BACKEND", "torch")
    monkeypatch.chdir(tmp_path)
    yield


@pytest.fixture(scope="session")
def embedder():
    """The real packaged MiniLM, loaded once per session."""
    from rag.embedders import open_embedder

    return open_embedder("all-MiniLM-L6-v2")


@pytest.fixture
def sample_dir(tmp_path) -> Path:
    """A private copy of data/sample (tests modify and delete files in it)."""
    dst = tmp_path / "docs"
    shutil.copytree(SAMPLE, dst)
    return dst


@pytest.fixture
def make_rag(tmp_path, embedder):
    """Build RAG instances on the tmp data dir that share the session's embedder."""
    from rag.api import RAG
    from rag.embedders.cache import CachedEmbedder

    made = []

    def make(**kw):
        rag = RAG(**kw)
        rag._embedder = CachedEmbedder(embedder, rag.settings.data_dir / "cache")
        made.append(rag)
        return rag

    yield make
    for rag in made:
        rag.close()


def shared(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared test data not found at {path} (it sits beside the repository as ../shared)")
    return path
