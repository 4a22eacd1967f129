"""Exports in the model cache: built once, atomic, a damaged or half-written one is rebuilt.

The build functions here write small files instead of a model (the real OpenVINO export is in
tests/integration/test_openvino_backend.py); the locking, manifest, rename and kill handling are
the real ones.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rag.embedders.export import MANIFEST, ensure_export, export_key, export_path, model_digest, verify

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def model_dir(tmp_path) -> Path:
    d = tmp_path / "model"
    (d / "1_Pooling").mkdir(parents=True)
    (d / "model.safetensors").write_bytes(b"weights" * 100)
    (d / "1_Pooling" / "config.json").write_text("{}")
    return d


def writer(calls: list, payload: bytes = b"x" * 4096):
    def build(out: Path) -> dict:
        calls.append(out)
        (out / "model.bin").write_bytes(payload)
        (out / "sub").mkdir()
        (out / "sub" / "model.xml").write_text("<xml/>")
        return {"calibration": {"user_passages": 3}}
    return build


def test_built_once_then_reused(tmp_path, model_dir):
    key = export_key(model_dir, "openvino", "int8")
    calls: list = []
    first = ensure_export(tmp_path / "cache", "org/My Model", key, writer(calls))
    again = ensure_export(tmp_path / "cache", "org/My Model", key, writer(calls))
    assert first == again and len(calls) == 1
    manifest = json.loads((first / MANIFEST).read_text())
    assert manifest["key"] == key and set(manifest["files"]) == {"model.bin", "sub/model.xml"}
    assert manifest["calibration"] == {"user_passages": 3}
    assert not list(first.parent.glob("*.tmp-*"))  # the temporary folder was renamed, not copied


def test_key_is_model_content_backend_and_weights(tmp_path, model_dir):
    a = export_key(model_dir, "openvino", "int8")
    assert export_key(model_dir, "openvino", "fp32") != a
    assert export_path(tmp_path, "m", a) != export_path(tmp_path, "m", export_key(model_dir, "openvino", "fp32"))
    (model_dir / "openvino").mkdir()                       # an export beside the model: not its identity
    (model_dir / "openvino" / "x.xml").write_text("x")
    assert model_digest(model_dir) == a["model_sha256"]
    (model_dir / "model.safetensors").write_bytes(b"other weights")   # new weights: new key, new folder
    b = export_key(model_dir, "openvino", "int8")
    assert b["model_sha256"] != a["model_sha256"]
    assert export_path(tmp_path, "m", b) != export_path(tmp_path, "m", a)


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete", "no-manifest", "bad-manifest", "other-key"])
def test_damaged_export_is_rebuilt_not_loaded(tmp_path, model_dir, damage):
    key = export_key(model_dir, "openvino", "fp32")
    calls: list = []
    final = ensure_export(tmp_path, "m", key, writer(calls))
    target = final / "model.bin"
    if damage == "truncate":
        target.write_bytes(target.read_bytes()[:100])
    elif damage == "flip":   # same size, one byte changed
        data = bytearray(target.read_bytes())
        data[10] ^= 1
        target.write_bytes(bytes(data))
    elif damage == "delete":
        target.unlink()
    elif damage == "no-manifest":   # what a crash before the manifest was written would leave
        (final / MANIFEST).unlink()
    elif damage == "bad-manifest":
        (final / MANIFEST).write_text('{"key": ')
    else:
        m = json.loads((final / MANIFEST).read_text())
        m["key"] = {**key, "weights": "int8"}
        (final / MANIFEST).write_text(json.dumps(m))
    assert not verify(final, key)
    again = ensure_export(tmp_path, "m", key, writer(calls))
    assert again == final and len(calls) == 2 and verify(final, key)
    assert target.read_bytes() == b"x" * 4096


def test_failed_build_leaves_nothing(tmp_path, model_dir):
    key = export_key(model_dir, "openvino", "fp32")

    def broken(out: Path) -> dict:
        (out / "model.bin").write_bytes(b"half")
        raise RuntimeError("converter crashed")

    cache = tmp_path / "cache"
    with pytest.raises(RuntimeError, match="converter crashed"):
        ensure_export(cache, "m", key, broken)
    assert [p.name for p in cache.iterdir() if not p.name.endswith(".lock")] == []
    calls: list = []
    assert verify(ensure_export(cache, "m", key, writer(calls)), key) and len(calls) == 1


KILLED_BUILDER = """
import sys, time
from pathlib import Path
sys.path.insert(0, {root!r})
from rag.embedders.export import ensure_export, export_key

def build(out):
    (out / "model.bin").write_bytes(b"half-written")
    Path({flag!r}).write_text("writing")
    time.sleep(60)   # killed here, mid-export
    return {{}}

ensure_export({cache!r}, "m", export_key({model!r}, "openvino", "int8"), build)
"""


def test_killed_mid_export_is_rebuilt(tmp_path, model_dir):
    """A real process killed with SIGKILL while writing its export: the next open rebuilds it."""
    cache, flag = tmp_path / "cache", tmp_path / "flag"
    code = KILLED_BUILDER.format(root=str(ROOT), flag=str(flag), cache=str(cache), model=str(model_dir))
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        for _ in range(600):
            if flag.exists() or proc.poll() is not None:
                break
            time.sleep(0.05)
        assert flag.exists(), "the builder never started writing"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    key = export_key(model_dir, "openvino", "int8")
    final = export_path(cache, "m", key)
    leftovers = list(cache.glob("*.tmp-*"))
    assert not final.exists() and leftovers  # the half-written export never took the final name
    calls: list = []
    got = ensure_export(cache, "m", key, writer(calls))   # the lock died with the process
    assert got == final and len(calls) == 1 and verify(final, key)
    assert not list(cache.glob("*.tmp-*"))
