"""The HTTP API's exposure, beyond tests/integration/test_server.py and
tests/unit/rag/test_server_unit.py (413 on /ask, /ingest traversal by path and symlink, upload
name with a directory part):

- ``python -m rag serve`` really listens on 127.0.0.1 only (read from /proc/net/tcp), and says so
  loudly when told to bind elsewhere;
- the body limit also guards the upload and chat endpoints, chunked or not;
- upload names that try to escape the uploads folder never write outside it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.reliability._helpers import hash_rag

pytest.importorskip("fastapi")
ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listen_addresses(port: int) -> set[str]:
    """Local addresses of LISTEN sockets on ``port`` (IPv4 and IPv6), from /proc/net/tcp*."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            addr, _, hex_port = local.partition(":")
            if state == "0A" and int(hex_port, 16) == port:
                if len(addr) == 8:
                    found.add(socket.inet_ntop(socket.AF_INET, bytes.fromhex(addr)[::-1]))
                else:
                    words = [bytes.fromhex(addr[i:i + 8])[::-1] for i in range(0, 32, 8)]
                    found.add(socket.inet_ntop(socket.AF_INET6, b"".join(words)))
    return found


@pytest.mark.slow
def test_serve_listens_on_loopback_only_by_default(tmp_path):
    if not Path("/proc/net/tcp").exists():
        pytest.skip("needs /proc/net/tcp (Linux) to read the listening address")
    port = _free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("RAGTUNE_")}, "PYTHONPATH": str(ROOT),
           "RAGTUNE_DATA_DIR": str(tmp_path / "data")}
    proc = subprocess.Popen([sys.executable, "-m", "rag", "serve", "--port", str(port)], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).read()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()[-1500:]
                time.sleep(0.2)
        assert _listen_addresses(port) == {"127.0.0.1"}
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    assert f"serving on http://127.0.0.1:{port}" in err and "warning" not in err


def test_binding_elsewhere_needs_auth_or_an_explicit_insecure_flag(monkeypatch, capsys):
    import uvicorn

    from rag.__main__ import main as rag_main
    from rag.commands import serve
    from rag.keys import KeyStore

    seen = {}
    # neither binds nor serves: this test is about what the command asks for and prints
    monkeypatch.setattr(serve, "_listen",
                        lambda host, port: seen.update(host=host, port=port) or socket.socket())
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: seen.update(sockets=len(sockets)))
    assert rag_main(["serve"]) == 0
    assert seen == {"host": "127.0.0.1", "port": 8000, "sockets": 1}
    assert "warning" not in capsys.readouterr().err.lower()
    for host in ("0.0.0.0", "::", "192.168.1.20", "myhost.example"):
        seen.clear()
        assert rag_main(["serve", "--host", host]) == 2  # refused before anything is bound
        err = capsys.readouterr().err
        assert seen == {} and err.startswith(f"error: refusing to listen on {host} without authentication"), err
        assert "python -m rag keys create" in err and "--insecure-no-auth" in err
    assert rag_main(["serve", "--host", "0.0.0.0", "--insecure-no-auth"]) == 0
    err = capsys.readouterr().err
    assert seen["host"] == "0.0.0.0" and "WARNING: --insecure-no-auth" in err and "WITHOUT AUTHENTICATION" in err
    assert rag_main(["serve", "--host", "0.0.0.0", "--auth"]) == 0
    assert "authentication on" in capsys.readouterr().err
    KeyStore(".ragtune").create("ops", "admin", [])  # the data dir of this test (conftest chdir)
    assert rag_main(["serve", "--host", "0.0.0.0"]) == 0
    err = capsys.readouterr().err
    assert "authentication on (keys exist)" in err and "warning" not in err.lower()


def test_serve_on_a_taken_port_is_one_error_line(tmp_path):
    """Before: "serving on ..." was printed, then uvicorn logged its own error and exited."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("RAGTUNE_")},
               "PYTHONPATH": str(ROOT), "RAGTUNE_DATA_DIR": str(tmp_path / "data")}
        proc = subprocess.run([sys.executable, "-m", "rag", "serve", "--port", str(port)], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 1
    [line] = proc.stderr.splitlines()  # exactly one line, and no "serving on" before it
    assert line.startswith(f"error: cannot listen on 127.0.0.1:{port}: "), line
    assert "pick another --port" in line
    assert proc.stdout == "" and not (tmp_path / "data").exists()


@pytest.fixture
def client(tmp_path):
    from fastapi.testclient import TestClient

    from rag.server import create_app

    root = tmp_path / "root"
    root.mkdir()
    rag = hash_rag(server={"max_request_bytes": 50_000})
    with TestClient(create_app(rag, ingest_root=root)) as c:
        yield c, rag, tmp_path
    rag.close()


def test_body_limit_guards_upload_and_chat(client):
    c, rag, _ = client
    big = b"a" * 60_000
    r = c.post("/ingest/upload", params={"filename": "big.txt"}, content=big)
    assert r.status_code == 413
    r = c.post("/ingest/upload", params={"filename": "big.txt"}, content=iter([big[:30_000], big[30_000:]]))
    assert r.status_code == 413                                    # chunked: counted as it arrives
    assert not (rag.settings.data_dir / "uploads" / "big.txt").exists()
    r = c.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "x" * 60_000}]})
    assert r.status_code == 413


@pytest.mark.parametrize("name", ["../../evil.txt", "..\\..\\evil.txt", "/tmp/evil.txt", "uploads/../../evil.txt",
                                  "C:\\Windows\\evil.txt", "%2e%2e%2fevil.txt", "....//evil.txt"])
def test_upload_names_cannot_escape_the_uploads_folder(client, name):
    c, rag, tmp_path = client
    before = {p for p in tmp_path.rglob("*")}
    r = c.post("/ingest/upload", params={"filename": name}, content=b"Escaped text about the harbour master.\n")
    created = {p for p in tmp_path.rglob("*")} - before
    uploads = (rag.settings.data_dir / "uploads").resolve()
    written = [p for p in created if p.is_file() and p.suffix == ".txt"]
    assert all(p.resolve().parent == uploads for p in written), written
    assert not Path("/tmp/evil.txt").exists() or Path("/tmp/evil.txt").stat().st_mtime < time.time() - 60
    assert r.status_code in (200, 400), r.text
    if r.status_code == 200:
        assert "/" not in r.json()["file"] and "\\" not in r.json()["file"]


@pytest.mark.parametrize("name", ["evil\x00.txt", ".env", "", "a" * 300 + "/"])
def test_hostile_upload_names_are_refused(client, name):
    c, _, _ = client
    assert c.post("/ingest/upload", params={"filename": name}, content=b"x").status_code == 400


# --- hostile bodies: a 4xx naming the field, never a 500 ------------------------------------
# tests/unit/rag/test_server_fuzz.py draws many more; these are the ones that were 500s.

@pytest.mark.parametrize(("path", "body", "status", "field"), [
    ("/ingest", '{"paths": ["a\\u0000b"]}', 422, "paths[0]: contains a NUL byte"),
    ("/ingest", '{"paths": ["' + "x" * 5000 + '"]}', 422, "paths[0]: 5000 characters"),
    ("/ingest", '{"texts": ["y"], "metadatas": [{"page": "abc"}]}', 422,
     "metadatas[0].page: must be a whole number"),
    ("/ingest", '{"texts": ["y"], "metadatas": [{"page": 1e30}]}', 422, "metadatas[0].page"),
    ("/ingest", '{"texts": ["y", "z"], "metadatas": [{}]}', 422, "metadatas: 1 given for 2 texts"),
    ("/ingest", '{"texts": ["\\ud800"]}', 422, "texts[0]: holds an unpaired UTF-16 surrogate"),
    ("/ingest", '{"texts": ["y"], "metadatas": [{"note": Infinity}]}', 422,
     "metadatas[0].note: must be a finite"),
    ("/ask", '{"question": "x", "temperature": NaN}', 422, "temperature: must be a finite number"),
    ("/ask", '{"question": "x", "filter": {"page_min": 100000000000000000000}}', 422, "filter.page_min"),
    ("/ask", '{"question": "x", "history": ' + "[" * 2000 + "]" * 2000 + "}", 400, "body"),
    ("/v1/chat/completions", '{"messages": [{"role": "user", "content": "x"}], "temperature": NaN}', 422,
     "temperature: must be a finite number"),
    ("/v1/chat/completions", '{"messages": [{"role": "user", "content": "x"}], "model": "\\udc00"}', 422,
     "model: holds an unpaired UTF-16 surrogate"),
    ("/v1/chat/completions", '{"messages": [{"role": "user", "content": "x"}], "stop": ["", "b"]}', 422,
     "stop: up to 4 non-empty strings"),
])
def test_hostile_bodies_are_4xx_naming_the_field(client, path, body, status, field):
    c, _, _ = client
    r = c.post(path, content=body.encode(), headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    assert field in r.json()["detail"], r.json()


@pytest.mark.parametrize("blank", ["", " ", "\t\n  "])
def test_blank_questions_and_texts_are_refused_on_every_route(client, blank):
    """An empty chunk used to be stored, and to rank first for a blank question."""
    c, rag, _ = client
    r = c.post("/ask", json={"question": blank})
    assert r.status_code == 422 and r.json()["detail"].startswith("question: must not be empty"), r.text
    r = c.post("/ask", json={"question": blank, "stream": True})
    assert r.status_code == 422 and "question" in r.json()["detail"]
    r = c.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": blank}]})
    assert r.status_code == 422 and r.json()["error"]["param"] == "messages", r.text
    r = c.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": [{"type": "text",
                                                                                          "text": blank}]}]})
    assert r.status_code == 422
    r = c.post("/ingest", json={"texts": ["A real text.", blank]})
    assert r.status_code == 422 and r.json()["detail"].startswith("texts[1]: must not be empty"), r.text
    assert rag.stats()["chunks"] == 0  # nothing stored: the whole request is refused
