"""Planted secrets never leave the environment.

``OPENAI_API_KEY``, ``PINECONE_API_KEY`` and ``WEAVIATE_API_KEY`` hold planted values, and a
pgvector URI carries a planted password. Then the CLIs run in-process, the way users run them:
ingest (embedded store, and pgvector on a dead port), ``rag ask`` / ``rag stats`` against an
OpenAI-compatible server that echoes the Authorization header back in its error and against a
dead port, eval with an LLM and MLflow tracking, finetune with MLflow tracking. Everything they
leave behind is searched for the planted values: stdout, stderr, every log record (all loggers
at DEBUG), and every file under the test's folder (data dir, eval reports, MLflow's SQLite store
and artifacts, adapter metadata). Embedder: the HashEmbedder fake (tests/reliability/_helpers.py).
"""

from __future__ import annotations

import http.server
import json
import logging
import socket
import threading
from pathlib import Path

import pytest

from tests.reliability._helpers import register_hash_embedder, tiny_llama_dir

OPENAI_KEY = "sk-test-PLANTED-openai-4c1d2e3f"
PINECONE_KEY = "pcsk_PLANTED-pinecone-9a8b7c"
WEAVIATE_KEY = "PLANTED-weaviate-5d6e7f"
PG_PASSWORD = "PLANTED-pg-pass-0f1e"
PLANTED = (OPENAI_KEY, PINECONE_KEY, WEAVIATE_KEY, PG_PASSWORD)

pytestmark = pytest.mark.slow


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _EchoAuth(http.server.BaseHTTPRequestHandler):
    """Every request gets 401 with the Authorization header quoted back, as some providers do."""

    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length") or 0))
        body = json.dumps({"error": {"message": f"Incorrect API key provided: {self.headers.get('authorization')}",
                                     "type": "invalid_request_error"}}).encode()
        self.send_response(401)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


@pytest.fixture
def echo_server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _EchoAuth)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/v1"
    srv.shutdown()
    srv.server_close()


def _grep_tree(root: Path) -> list[str]:
    found = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            found += [f"{path}: {v}" for v in PLANTED if v.encode() in data]
    return found


def test_no_cli_output_log_or_file_holds_a_planted_secret(tmp_path, monkeypatch, capsys, caplog, echo_server):
    from eval.__main__ import main as eval_main
    from finetune.qlora import main as ft_main
    from ingest.__main__ import main as ingest_main
    from rag.__main__ import main as rag_main

    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    monkeypatch.setenv("PINECONE_API_KEY", PINECONE_KEY)
    monkeypatch.setenv("WEAVIATE_API_KEY", WEAVIATE_KEY)
    monkeypatch.setenv("RAGTUNE_EMBEDDER", register_hash_embedder(monkeypatch))
    monkeypatch.setenv("RAGTUNE_LLM__MAX_RETRIES", "0")
    monkeypatch.setenv("RAGTUNE_LLM__TIMEOUT_S", "3")
    pg_uri = f"pgvector://alice:{PG_PASSWORD}@127.0.0.1:{_dead_port()}/ragtune?table=t&connect_timeout=2"
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("The lighthouse keeper is Abernathy. The lamp turns every 7 seconds.\n")
    codes: dict[str, int] = {}

    codes["ingest"] = ingest_main([str(docs), "--json"])
    codes["ingest pgvector"] = ingest_main([str(docs), "--store", pg_uri])
    monkeypatch.setenv("RAGTUNE_STORE", pg_uri)
    codes["stats pgvector"] = rag_main(["stats", "--json"])
    monkeypatch.delenv("RAGTUNE_STORE")
    monkeypatch.setenv("OPENAI_BASE_URL", echo_server)
    codes["ask echo"] = rag_main(["ask", "Who keeps the lighthouse?", "--llm", "openai:gpt-test", "--json"])
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{_dead_port()}/v1")
    codes["ask dead"] = rag_main(["ask", "Who keeps the lighthouse?", "--llm", "openai:gpt-test"])

    ref = tmp_path / "ref.jsonl"
    ref.write_text(json.dumps({"question": "Who keeps the lighthouse?", "answer": "Abernathy",
                               "sources": [{"source": "a.txt"}]}) + "\n")
    codes["eval"] = eval_main([str(ref), "--out", str(tmp_path / "eval-out"), "--track", "--bootstrap", "10"])
    monkeypatch.setenv("OPENAI_BASE_URL", echo_server)
    codes["eval llm"] = eval_main([str(ref), "--llm", "openai:gpt-test", "--out", str(tmp_path / "eval-llm"),
                                   "--track", "--bootstrap", "10"])

    base = tiny_llama_dir()
    train = tmp_path / "train.jsonl"
    train.write_text("\n".join(json.dumps({"instruction": f"Who keeps lighthouse {i}?", "output": "Abernathy."})
                               for i in range(8)) + "\n")
    codes["finetune"] = ft_main(["--base", str(base), "--data", str(train), "--output", str(tmp_path / "adapter"),
                                 "--max-steps", "1", "batch_size=2", "max_seq_len=64", "eval_split=0"])

    out = capsys.readouterr()
    logs = "\n".join(f"{r.name}: {r.getMessage()}" for r in caplog.records)
    # the runs really happened, and the failing ones failed the way they should
    assert codes == {"ingest": 0, "ingest pgvector": 1, "stats pgvector": 1, "ask echo": 1, "ask dead": 1,
                     "eval": 0, "eval llm": codes["eval llm"], "finetune": 0}, (codes, out.err[-2000:])
    assert codes["eval llm"] in (0, 1)  # answers fail with 401: eval may record them or stop with the error
    assert "authentication failed (401)" in out.err and "cannot connect" in out.err
    assert "pgvector://alice@127.0.0.1" in out.err or "pgvector://alice:***@127.0.0.1" in out.err
    assert (tmp_path / ".ragtune" / "mlflow.db").exists() and (tmp_path / "adapter" / "ragtune_adapter.json").exists()

    leaks = [f"stdout: {v}" for v in PLANTED if v in out.out] + [f"stderr: {v}" for v in PLANTED if v in out.err]
    leaks += [f"log: {v}" for v in PLANTED if v in logs]
    leaks += _grep_tree(tmp_path)
    assert not leaks, leaks
