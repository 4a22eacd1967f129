"""The chat UI in a real browser: ``streamlit run ui/app.py`` on a free port, Debian's Chromium
driven by PyPI playwright (scripts/ui_browser_check.py), one question over data/sample."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(),
                       reason=f"{CHROMIUM} not found: bash scripts/system-deps.sh installs Debian's chromium"),
]
pytest.importorskip("streamlit")
pytest.importorskip("playwright", reason="the browser test needs PyPI playwright (pip install 'ragtune[dev]')")


def _check_script():
    spec = importlib.util.spec_from_file_location("ui_browser_check", ROOT / "scripts" / "ui_browser_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def sample_data(tmp_path, embedder) -> Path:
    from rag.api import RAG
    from rag.embedders.cache import CachedEmbedder
    from rag.settings import load_settings

    data = tmp_path / "ui-home" / ".ragtune"
    rag = RAG(settings=load_settings(env={}, overrides={"data_dir": str(data)}))
    rag._embedder = CachedEmbedder(embedder, data / "cache")  # the session's MiniLM
    try:
        assert rag.ingest([ROOT / "data" / "sample"]).added == 5
    finally:
        rag.close()
    return data


def test_chat_answers_with_sources_in_chromium(sample_data, tmp_path):
    check = _check_script()
    port = check.free_port()
    proc = check.start_streamlit(sample_data, port, tmp_path / "streamlit.log", {
        "RAGTUNE_LLM__MAX_NEW_TOKENS": "48", "RAGTUNE_LLM__THREADS": "1", "RAGTUNE_RETRIEVAL__K": "3"})
    shot = tmp_path / "chat.png"
    try:
        seen = check.ask_in_browser(f"http://127.0.0.1:{port}/", check.DEFAULT_QUESTION, shot, timeout_s=240)
    except Exception:
        print((tmp_path / "streamlit.log").read_text(errors="replace")[-4000:])
        raise
    finally:
        check.stop(proc)
    answer_text = seen["answer"].split("Sources (")[0].strip()
    assert answer_text, seen["page"][-2000:]                  # the streamed answer, above its sources
    assert "[1] acme_widget_faq.md" in seen["answer"]          # source [1], opened
    assert "45 days of delivery" in seen["answer"]             # its passage text
    assert "Sources (3)" in seen["page"]
    assert "Traceback" not in seen["page"]
    assert shot.stat().st_size > 10_000 and shot.read_bytes()[:4] == b"\x89PNG"
