"""The Streamlit UI driven in-process with ``streamlit.testing.v1.AppTest``: chat with the packaged
SmolLM2 over data/sample, uploads and ingest (with a failing file), error messages, escaping."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest

from ui.components import md_escape, safe_filename, save_upload

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "ui" / "app.py")
SAMPLE = ROOT / "data" / "sample"
PNG_1PX = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")
TIMEOUT = 300  # seconds per script run; the first question loads the embedder and the LLM


@pytest.fixture(scope="module")
def sample_data(tmp_path_factory, embedder) -> Path:
    """A data directory with data/sample ingested, shared by this module's tests (one RAG, one model)."""
    from rag.api import RAG
    from rag.embedders.cache import CachedEmbedder
    from rag.settings import load_settings

    data = tmp_path_factory.mktemp("ui-home") / ".ragtune"
    rag = RAG(settings=load_settings(env={}, overrides={"data_dir": str(data)}))
    rag._embedder = CachedEmbedder(embedder, data / "cache")  # the session's MiniLM: no second load
    try:
        result = rag.ingest([SAMPLE])
    finally:
        rag.close()
    assert result.added == 5 and not result.failed
    return data


@pytest.fixture
def ui_env(monkeypatch, tmp_path):
    """Small, fast generation; no provider secrets from the real environment."""
    monkeypatch.setenv("RAGTUNE_LLM__MAX_NEW_TOKENS", "48")
    monkeypatch.setenv("RAGTUNE_LLM__THREADS", "1")  # llama.cpp with 2 threads crawls on busy shared cores
    monkeypatch.setenv("RAGTUNE_LLM__SPEC", "smollm2")  # the fast model, whatever the default is here
    monkeypatch.setenv("RAGTUNE_RETRIEVAL__K", "3")
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def _app(**kw) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    assert not at.exception, at.exception
    return at


def _ask(at: AppTest, question: str) -> AppTest:
    at.chat_input[0].set_value(question).run()
    assert not at.exception, at.exception
    return at


def _assistant_texts(at: AppTest) -> list[str]:
    return [" ".join(md.value for md in m.markdown) for m in at.chat_message if m.name == "assistant"]


def _no_html(at: AppTest) -> None:
    """Nothing on the page may be rendered as HTML."""
    assert not at.get("html")
    assert all(not md.allow_html for md in at.markdown)
    assert all(not md.allow_html for md in at.caption)


# -- chat -------------------------------------------------------------------------------------
def test_chat_streams_answer_with_sources_and_follow_up(sample_data, ui_env):
    import rag.llms

    ui_env.setenv("RAGTUNE_DATA_DIR", str(sample_data))
    opened = []
    real_open = rag.llms.open_llm
    ui_env.setattr(rag.llms, "open_llm", lambda *a, **kw: opened.append(a) or real_open(*a, **kw))
    at = _app()
    assert [m.value for m in at.sidebar.metric] == ["5", "19"]  # rag.stats(): files, chunks
    _ask(at, "What is the refund policy for the Acme Widget?")
    assert not at.error, [e.value for e in at.error]
    answers = _assistant_texts(at)
    assert len(answers) == 1 and answers[0].strip()
    labels = [e.label for e in at.expander]
    assert labels and labels[0].startswith(md_escape("[1] acme_widget_faq.md"))
    assert any("45 days" in t.value for t in at.text)  # the passage text inside the source
    assert any(c.value.startswith("Sources (3)") for c in at.caption)
    assert any("smollm2" in c.value.lower() for c in at.sidebar.caption)  # what is loaded now
    history = at.session_state["messages"]
    assert [m["role"] for m in history] == ["user", "assistant"]
    assert history[1]["answer"]["flags"] is not None

    _ask(at, "And how long is the warranty?")  # a follow-up goes through the history
    assert not at.error, [e.value for e in at.error]
    assert len(_assistant_texts(at)) == 2
    assert len(opened) <= 1  # st.cache_resource: the second question (and rerun) reloads nothing
    second = at.session_state["messages"][-1]["answer"]
    assert second["question"] == "And how long is the warranty?" and second["sources"]
    _no_html(at)


# -- uploads ----------------------------------------------------------------------------------
def test_upload_ingests_files_and_lists_failures_with_reasons(sample_data, ui_env):
    ui_env.setenv("RAGTUNE_DATA_DIR", str(sample_data))
    at = _app()
    files, chunks = (int(m.value) for m in at.sidebar.metric)
    at.sidebar.file_uploader[0].set_value([
        ("../../ferry_timetable.txt", b"The harbour ferry leaves at 07:15 and 19:40 every day.\n", "text/plain"),
        ("broken.pdf", b"this is not a pdf at all", "application/pdf"),
    ]).run()
    at.sidebar.button(key="ingest").click().run()
    assert not at.exception, at.exception

    uploads = sample_data / "uploads"
    assert sorted(p.name for p in uploads.iterdir()) == ["broken.pdf", "ferry_timetable.txt"]
    assert not (sample_data.parent.parent / "ferry_timetable.txt").exists()  # no path traversal
    table = at.dataframe[0].value
    rows = {r["file"]: r for r in table.to_dict("records")}
    assert rows["ferry_timetable.txt"]["status"] == "added" and rows["ferry_timetable.txt"]["chunks"] == 1
    assert rows["broken.pdf"]["status"] == "failed" and rows["broken.pdf"]["reason"]
    errors = [e.value for e in at.error]
    assert any(e.startswith(md_escape("broken.pdf: ")) for e in errors), errors
    assert "1 failed" in at.expander[0].label
    assert [int(m.value) for m in at.sidebar.metric] == [files + 1, chunks + 1]  # failed files add nothing


def test_document_html_is_shown_escaped(sample_data, ui_env):
    ui_env.setenv("RAGTUNE_DATA_DIR", str(sample_data))
    payload = ("Zorblax recall notice. <script>alert('xss')</script> <img src=x onerror=alert(1)> "
               "The Zorblax recall covers serial numbers ZX-100 to ZX-199.")
    at = _app()
    at.sidebar.file_uploader[0].set_value(("zorblax <b>notice<b>.md", payload.encode(), "text/markdown")).run()
    at.sidebar.button(key="ingest").click().run()
    _ask(at, "Which serial numbers does the Zorblax recall cover?")
    assert not at.error, [e.value for e in at.error]
    label = next(e.label for e in at.expander if "zorblax" in e.label)
    assert "<b>" not in label  # the file name was sanitised and the label escaped
    assert any(payload in t.value for t in at.text)  # shown verbatim, as text
    for md in [*at.markdown, *at.caption]:
        assert "<script" not in md.value  # any echo of it in markdown is escaped (\<script\>)
    _no_html(at)


def test_safe_filename_and_save_upload(tmp_path):
    assert safe_filename("../../etc/passwd.md") == "passwd.md"
    assert safe_filename("..\\..\\win.TXT") == "win.txt"
    assert safe_filename(".hidden.pdf") == "hidden.pdf"
    assert safe_filename("a<b>|c;rm -rf.md") == "a_b__c_rm -rf.md"
    assert safe_filename("...") == "upload"
    assert len(safe_filename("x" * 500 + ".pdf")) == 120
    path = save_upload("../x.md", b"hi", tmp_path / "up")
    assert path == (tmp_path / "up" / "x.md").resolve() and path.read_bytes() == b"hi"
    with pytest.raises(ValueError, match="only .pdf"):
        save_upload("run.sh", b"echo", tmp_path / "up")


# -- errors -----------------------------------------------------------------------------------
def test_unreachable_store_is_an_error_message_not_a_traceback(ui_env):
    ui_env.setenv("RAGTUNE_STORE", "pgvector://nobody:s3cret@127.0.0.1:1/x")
    at = _app()
    errors = [e.value for e in at.error]
    assert errors and any("127" in e for e in errors), errors
    assert not any("s3cret" in e or "Traceback" in e for e in errors)


def test_invalid_setting_is_an_error_message(ui_env):
    ui_env.setenv("RAGTUNE_RETRIEVAL__K", "many")
    at = _app()
    assert any(md_escape("retrieval.k: ") in e.value for e in at.error), [e.value for e in at.error]


def test_missing_api_key_is_an_error_message(sample_data, ui_env):
    ui_env.setenv("RAGTUNE_DATA_DIR", str(sample_data))
    ui_env.setenv("RAGTUNE_LLM__SPEC", "openai:gpt-4o-mini")
    at = _app()
    assert at.sidebar.selectbox(key="llm_choice").value.startswith("OpenAI")
    _ask(at, "What is the refund policy?")
    errors = [e.value for e in at.error]
    assert any("OPENAI\\_API\\_KEY" in e for e in errors), errors
    assert at.session_state["messages"][-1]["error"]


# -- eval and fine-tuning pages ---------------------------------------------------------------
def test_eval_page_shows_the_comparison_table_and_plots(ui_env, tmp_path):
    out = tmp_path / ".ragtune" / "runs" / "eval1"
    out.mkdir(parents=True)
    summary = {"configs": [
        {"name": "dense", "llm": None, "retrieval": "dense", "n": 24, "metrics": {"hit@1": 0.5, "mrr": 0.6}},
        {"name": "hybrid", "llm": None, "retrieval": "hybrid", "n": 24, "metrics": {"hit@1": 0.7, "mrr": 0.8}}],
        "run": {"dataset": "sample.jsonl", "questions": 24, "plots": ["plot_metrics.png"]}}
    (out / "summary.json").write_text(json.dumps(summary))
    (out / "plot_metrics.png").write_bytes(base64.b64decode(PNG_1PX))
    (out / "report.md").write_text("# eval\n")
    at = _app()
    at.switch_page("pages/evaluation.py").run()
    assert not at.exception, at.exception
    assert str(out) in at.selectbox[0].options[0]
    table = at.dataframe[0].value
    assert list(table["config"]) == ["dense", "hybrid"] and list(table["hit@1"]) == [0.5, 0.7]
    assert [img.captions for img in at.get("image")] == [["plot_metrics.png"]]


def test_finetune_page_lists_adapters_and_sidebar_offers_them(ui_env, tmp_path):
    run = tmp_path / ".ragtune" / "adapters" / "run1"
    run.mkdir(parents=True)
    (run / "ragtune_adapter.json").write_text(json.dumps({
        "base_model": "smollm2", "created": "2026-11-23T10:00:00+00:00",
        "metrics": {"best_eval_loss": 1.25, "train_loss": 1.5}}))
    at = _app()
    choices = at.sidebar.selectbox(key="llm_choice").options
    assert "adapter: run1 on smollm2" in choices
    assert "local: smollm2-135m (135M)" in choices  # the catalogue's installed models are offered too
    at.switch_page("pages/finetuning.py").run()
    assert not at.exception, at.exception
    rows = at.dataframe[0].value.to_dict("records")
    assert rows[0]["best_eval_loss"] == 1.25 and rows[0]["path"].endswith("run1")
    assert any(c.value == f"hf:smollm2+adapter:{run.resolve()}" for c in at.code)
