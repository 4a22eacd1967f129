"""API keys never leave the request that carries them: not in the server's output, logs or
tracebacks, the audit log, any file under the data directory, any reply (body or header), or any
command's output but the one ``keys create`` prints.

The server is the real command (``python -m rag serve`` through ``rag.__main__.main``) in its own
process, with its stdout and stderr captured. Its two fakes are registered in that process before
``main`` runs, like real backends: the HashEmbedder (tests/reliability/_helpers.py) and
``EchoLLM`` (tests/http_helpers.py), plus a ``boom`` LLM that raises a plain exception so a
traceback is printed. Keys are sent right, wrong (the right id with a wrong secret), revoked, in
the body, in the query string, as a collection name and as an upload's file name.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytest.importorskip("fastapi")
ROOT = Path(__file__).resolve().parents[2]
SERVER = """
import sys
from rag import embedders, llms
from rag.llms import BaseLLM
from tests.http_helpers import EchoLLM

class Boom(BaseLLM):
    name, context_window = "boom:", 512
    def __init__(self, rest="", settings=None):
        super().__init__(settings)
    def count_tokens(self, text):
        return len(text.split())
    def generate(self, messages, **opts):
        raise RuntimeError("backend exploded while answering")

embedders.REGISTRY["testhash"] = "tests.reliability._helpers:HashEmbedder"
llms.register("echo", EchoLLM)
llms.register("boom", Boom)
from rag.__main__ import main
sys.exit(main(sys.argv[1:]))
"""


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _secrets(keys: list[str]) -> list[str]:
    """Each key and its secret part alone (a leak of either counts). The secret is everything after
    "rtk_ID_": it may itself contain "_" (token_urlsafe), so split from the left."""
    return [k for key in keys for k in (key, key.split("_", 2)[2])]


def test_keys_appear_nowhere_but_in_the_request(tmp_path, tally, monkeypatch):
    from rag.api import RAG
    from tests.reliability._helpers import register_hash_embedder

    data = tmp_path / "data"
    spec = register_hash_embedder(monkeypatch)  # the server process registers the same spec
    rag = RAG(data_dir=data, embedder=spec)
    rag.add_texts(["Parental leave is 20 weeks."], metadatas=[{"source": "hr/leave.txt"}], collection="hr")
    rag.close()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("RAGTUNE_")}, "PYTHONPATH": str(ROOT),
           "RAGTUNE_DATA_DIR": str(data), "RAGTUNE_EMBEDDER": spec, "RAGTUNE_INGEST__WORKERS": "0"}
    made = {}
    for name, role in (("alice", "reader"), ("wally", "writer"), ("gone", "reader")):
        out = subprocess.run([sys.executable, "-m", "rag", "keys", "create", "--name", name, "--role", role,
                              "--collection", "hr"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)
        assert out.returncode == 0, out.stderr
        made[name] = out.stdout.strip()  # the one place a key is shown
    listing = subprocess.run([sys.executable, "-m", "rag", "keys", "list"], env=env, cwd=tmp_path,
                             capture_output=True, text=True, timeout=60, check=False)
    revoked = subprocess.run([sys.executable, "-m", "rag", "keys", "revoke", "gone"], env=env, cwd=tmp_path,
                             capture_output=True, text=True, timeout=60, check=False)
    alice, wally, gone = made["alice"], made["wally"], made["gone"]
    wrong = alice[:15] + ("B" if alice[15] == "A" else "A") + alice[16:]
    planted = [alice, wally, gone, wrong]

    port = _port()
    proc = subprocess.Popen([sys.executable, "-c", SERVER, "serve", "--port", str(port), "--llm", "echo:"],
                            env={**env, "RAGTUNE_DEBUG": "1"}, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    replies: list[str] = []
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(url + "/health", timeout=2)
                break
            except httpx.HTTPError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()[-2000:]
                time.sleep(0.2)

        def send(method: str, path: str, key: str | None, **kw) -> None:
            headers = {**kw.pop("headers", {}), **({"Authorization": f"Bearer {key}"} if key else {})}
            r = httpx.request(method, url + path, headers=headers, timeout=60, **kw)
            replies.append(f"{r.status_code} {dict(r.headers)} {r.text}")

        ask = {"question": "How long is parental leave?"}
        for key in (alice, wrong, gone, "x" + alice, alice.upper()):
            send("POST", "/ask", key, json=ask)
            send("POST", "/ask", key, json={**ask, "stream": True})
            send("POST", "/v1/chat/completions", key, json={"messages": [{"role": "user", "content": "leave?"}]})
        send("POST", "/ask", alice, json={**ask, "collections": [alice]})            # a key as a collection name
        send("POST", "/ask", alice, json={**ask, "collections": ["legal"], "api_key": alice})
        send("POST", "/ask", alice, json={"question": "x", "k": alice})              # a key in a bad field
        send("POST", "/ingest", wally, json={"texts": ["y"], "metadatas": [{"page": alice}]})  # quoted by a check
        send("GET", f"/stats?api_key={alice}", alice)
        send("POST", "/ingest", wally, json={"texts": ["Overtime is paid."], "collection": wally})
        send("POST", f"/ingest/upload?filename={wally}.txt", wally, content=b"Bonuses are paid in April.")
        send("POST", "/ingest", alice, json={"texts": ["A reader may not write."]})
        send("GET", "/nope", wrong)
        send("POST", "/ask", alice, content=f'{{"question": "{alice}"'.encode(),       # not JSON
             headers={"content-type": "application/json"})
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=30)
    # the boom backend needs its own server; the same checks cover its traceback
    port = _port()
    proc = subprocess.Popen([sys.executable, "-c", SERVER, "serve", "--port", str(port), "--llm", "boom:"],
                            env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                r = httpx.post(f"http://127.0.0.1:{port}/ask", json={"question": "leave?"},
                               headers={"Authorization": f"Bearer {alice}"}, timeout=30)
                break
            except httpx.HTTPError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()[-2000:]
                time.sleep(0.2)
        replies.append(f"{r.status_code} {dict(r.headers)} {r.text}")
    finally:
        proc.terminate()
        out2, err2 = proc.communicate(timeout=30)
    assert r.status_code == 500 and "Traceback" in err2 and "backend exploded" in err2, (r.text, err2[-1500:])

    tally["requests"] += len(replies)
    codes = {int(x[:3]) for x in replies}
    assert {200, 401, 403, 422, 500} <= codes, codes  # the right, wrong, refused and failing paths all ran
    outputs = {"server stdout": out + out2, "server stderr": err + err2, "keys list": listing.stdout + listing.stderr,
               "keys revoke": revoked.stdout + revoked.stderr, **{f"reply {i}": x for i, x in enumerate(replies)}}
    for path in tmp_path.rglob("*"):
        if path.is_file():
            outputs[str(path)] = path.read_bytes().decode("latin-1")
    found = [f"{where}: {s[:12]}..." for where, text in outputs.items() for s in _secrets(planted) if s in text]
    tally["leaks"] += len(found)
    assert not found, found
    assert (data / "audit.jsonl").exists() and "alice" in (data / "audit.jsonl").read_text()
