"""The Streamlit UI with API keys, driven in-process by ``streamlit.testing.v1.AppTest``: without a
key it shows a password field and nothing else; with an ``hr`` key the picker offers only ``hr``,
counts cover only ``hr``, and answers to questions quoting ``legal`` documents hold nothing from
them. Fakes (HashEmbedder, EchoLLM that repeats its prompt): see tests/security/team_helpers.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest

from tests.security.team_helpers import ADVERSARIAL, leaks_in

APP = str(Path(__file__).resolve().parents[2] / "ui" / "app.py")


@pytest.fixture
def ui_team(tmp_path, monkeypatch):
    from rag.api import RAG
    from rag.keys import KeyStore
    from rag.llms import register, unregister
    from tests.http_helpers import EchoLLM
    from tests.reliability._helpers import register_hash_embedder
    from tests.security.team_helpers import build_index

    data = tmp_path / ".ragtune"
    spec = register_hash_embedder(monkeypatch)
    rag = RAG(data_dir=data, embedder=spec)  # the spec the UI opens too: the index must match it
    ids = build_index(rag)
    rag.close()
    store = KeyStore(data)
    keys = {"hr": store.create("hr-reader", "reader", ["hr"])[1],
            "writer": store.create("hr-writer", "writer", ["hr"])[1],
            "admin": store.create("boss", "admin", [])[1]}
    store.close()
    monkeypatch.setenv("RAGTUNE_DATA_DIR", str(data))
    monkeypatch.setenv("RAGTUNE_EMBEDDER", spec)
    monkeypatch.setenv("RAGTUNE_LLM__SPEC", "echo:")
    monkeypatch.setenv("RAGTUNE_INGEST__WORKERS", "0")
    register("echo", EchoLLM)
    yield keys, ids, data
    unregister("echo")


def _app() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    return at


def _sign_in(at: AppTest, key: str) -> AppTest:
    at.text_input(key="api_key_field").input(key)
    at.button[0].click().run()  # the form's submit button
    assert not at.exception, at.exception
    return at


def _page_text(at: AppTest) -> str:
    parts = [e.value for kind in ("markdown", "caption", "text", "error", "info", "warning", "metric")
             for e in at.get(kind) if isinstance(getattr(e, "value", None), str)]
    parts += [e.label for e in at.get("expander")]
    return "\n".join(parts)


def test_without_a_key_the_ui_shows_only_the_sign_in(ui_team, tally):
    keys, _, _ = ui_team
    at = _app()
    assert [t.label for t in at.text_input] == ["API key"] and at.text_input[0].proto.type == 1  # PASSWORD
    assert not at.chat_input and not at.sidebar.metric and not at.get("multiselect")
    _sign_in(at, keys["hr"][:-4] + "AAAA")  # a wrong key: still only the form, and an error
    assert [e.value for e in at.error] == ["Invalid API key."]
    assert not at.chat_input and not at.sidebar.metric
    tally["requests"] += 2


def test_hr_reader_sees_only_hr_in_the_ui(ui_team, tally):
    keys, ids, _ = ui_team
    at = _sign_in(_app(), keys["hr"])
    assert at.chat_input, "signed in: the chat is shown"
    [picker] = at.sidebar.multiselect
    assert picker.options == ["hr"] and picker.value == ["hr"]
    assert [m.value for m in at.sidebar.metric] == ["3", "3"]  # files, chunks: hr's only
    assert not at.sidebar.file_uploader  # a reader uploads nothing
    assert "Store URI" not in [t.label for t in at.sidebar.text_input]  # nor repoints the store
    for question in ADVERSARIAL[:4]:
        at.chat_input[0].set_value(question).run()
        assert not at.exception, at.exception
        assert "answer" in at.session_state["messages"][-1], at.session_state["messages"][-1]
        answer = at.session_state["messages"][-1]["answer"]
        found = leaks_in(answer, ["hr"], ids) + leaks_in(_page_text(at), ["hr"], ids)
        tally["requests"] += 1
        tally["leaks"] += len(found)
        assert not found, found
        assert {s["collection"] for s in answer["sources"]} == {"hr"}
    assert "legal" not in json.dumps(at.session_state["messages"]).lower()


def test_a_revoked_key_is_signed_out_at_the_next_rerun(ui_team, tally):
    from rag.keys import KeyStore

    keys, _, data = ui_team
    at = _sign_in(_app(), keys["hr"])
    at.chat_input[0].set_value("What is the parental leave?").run()
    assert at.session_state["messages"]
    KeyStore(data).revoke("hr-reader")
    at.run()
    assert not at.chat_input and [t.label for t in at.text_input] == ["API key"]
    assert any("revoked" in e.value for e in at.error)
    assert not at.session_state["messages"]  # what the key was shown is gone too
    tally["requests"] += 3


def test_writer_uploads_into_its_collection_only(ui_team, tally):
    keys, _, data = ui_team
    at = _sign_in(_app(), keys["writer"])
    assert at.sidebar.selectbox(key="upload_collection").options == ["hr"]
    at.sidebar.file_uploader[0].set_value([("pay.txt", b"Bonuses are paid in April to every engineer.\n",
                                            "text/plain")]).run()
    at.sidebar.button(key="ingest").click().run()
    assert not at.exception, at.exception
    assert (data / "uploads" / "hr" / "pay.txt").exists()
    assert [m.value for m in at.sidebar.metric] == ["4", "4"]
    tally["requests"] += 1


def test_admin_sees_every_collection_and_every_page(ui_team):
    keys, _, _ = ui_team
    at = _sign_in(_app(), keys["admin"])
    [picker] = at.sidebar.multiselect
    assert sorted(picker.options) == ["handbook", "hr", "legal"]
    assert "Store URI" in [t.label for t in at.sidebar.text_input]
