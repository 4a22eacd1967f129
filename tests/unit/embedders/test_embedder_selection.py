"""Embedder backend selection, runtime recording in the index, and the compatibility rule.

A fake runtime registers in the same tables as the real backends (no model is loaded here); the
real OpenVINO runtime is exercised in tests/integration/test_openvino_backend.py.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest

from rag import embedders
from rag.embedders.cache import CachedEmbedder
from rag.embedders.openvino import calibration_texts, shipped_calibration
from rag.embedders.runtime import MIXABLE, cache_namespace, check_runtime, compatible
from rag.errors import ConfigError, IndexMismatchError
from rag.settings import load_settings


class RuntimeFake:
    """Records how it was opened; vectors depend on the text and (slightly) on the precision."""

    opened: ClassVar[list[dict]] = []

    def __init__(self, name, *, device="cpu", precision="auto", quantization="none", cache_dir=None,
                 threads=None, log=None, backend="openvino"):
        RuntimeFake.opened.append({"name": name, "precision": precision, "quantization": quantization,
                                   "cache_dir": cache_dir, "threads": threads})
        self.id, self.dim, self.max_tokens = "fake/model", 8, 512
        self.precision = "int8" if quantization == "int8" else "bfloat16"
        self.runtime = {"embedder_backend": backend, "embedder_precision": self.precision}
        self.queries = 0

    def embed(self, texts):
        rng = [np.random.default_rng(abs(hash((t, self.precision))) % 2**32) for t in texts]
        v = np.array([r.standard_normal(self.dim) for r in rng], dtype=np.float32).reshape(-1, self.dim)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    def embed_query(self, text):
        self.queries += 1
        return self.embed([text])[0]

    def count_tokens(self, texts):
        return [len(t.split()) for t in texts]


@pytest.fixture
def fake_openvino(monkeypatch):
    RuntimeFake.opened = []
    monkeypatch.setitem(embedders.BACKENDS, "openvino", f"{__name__}:RuntimeFake")
    return RuntimeFake


def test_unknown_backend_lists_the_known_ones():
    with pytest.raises(ConfigError, match="unknown embedder backend 'onnx' .*torch, openvino"):
        embedders.open_embedder("all-MiniLM-L6-v2", backend="onnx")


def test_int8_needs_the_openvino_backend():
    with pytest.raises(ConfigError, match="needs embedder_backend = 'openvino'"):
        embedders.open_embedder("all-MiniLM-L6-v2", backend="torch", quantization="int8")


def test_settings_reject_unknown_backend_and_quantization():
    with pytest.raises(ConfigError) as e:
        load_settings(env={"RAGTUNE_EMBEDDER_BACKEND": "onnx", "RAGTUNE_EMBEDDER_QUANTIZATION": "int4"})
    assert "embedder_backend" in str(e.value) and "embedder_quantization" in str(e.value)
    s = load_settings(env={})
    assert (s.embedder_backend, s.embedder_quantization, s.embedder_threads) == ("auto", "auto", None)


def test_settings_reach_the_chosen_backend(fake_openvino, tmp_path):
    s = load_settings(env={"RAGTUNE_EMBEDDER_BACKEND": "openvino", "RAGTUNE_EMBEDDER_QUANTIZATION": "int8",
                           "RAGTUNE_EMBEDDER_THREADS": "1", "RAGTUNE_MODELS_DIR": str(tmp_path / "models"),
                           "RAGTUNE_DATA_DIR": str(tmp_path / "data")})
    emb = embedders.open_configured(s)
    assert isinstance(emb, CachedEmbedder) and isinstance(emb.inner, RuntimeFake)
    opened = fake_openvino.opened[-1]
    assert opened["quantization"] == "int8" and opened["threads"] == 1
    assert opened["cache_dir"] == tmp_path / "models" / "exports"
    assert emb.runtime == {"embedder_backend": "openvino", "embedder_precision": "int8"}
    emb.close()


def test_compatibility_rule():
    assert compatible("float32", "bfloat16") and compatible(None, "bfloat16")   # None: an index from before
    check_runtime(None, RuntimeFake("m"))                                          # empty index: anything goes
    check_runtime({"embedder": "fake/model"}, RuntimeFake("m"))                    # legacy float index
    float_info = {"embedder_backend": "torch", "embedder_precision": "bfloat16"}
    int8 = RuntimeFake("m", quantization="int8")
    # A precision this ragtune does not know (an index from a newer version) is never mixed.
    with pytest.raises(IndexMismatchError, match="in int4, but the current one is openvino in bfloat16"):
        check_runtime({"embedder_backend": "openvino", "embedder_precision": "int4"}, RuntimeFake("m"))
    if frozenset({"float", "int8"}) in MIXABLE:
        check_runtime(float_info, int8)
    else:
        with pytest.raises(IndexMismatchError, match="torch embedder runtime in bfloat16.*openvino in int8"):
            check_runtime(float_info, int8)


def test_int8_vectors_are_cached_apart(tmp_path):
    f, q = RuntimeFake("m"), RuntimeFake("m", quantization="int8")
    assert cache_namespace(f) == "fake/model" and cache_namespace(q) == "fake/model#int8"
    a, b = CachedEmbedder(f, tmp_path), CachedEmbedder(q, tmp_path)
    va, vb = a.embed(["same text"]), b.embed(["same text"])
    assert b.misses == 1 and not np.allclose(va, vb)   # int8 never gets the float vector from the cache
    assert np.allclose(b.embed(["same text"]), vb) and b.hits == 1
    a.close()
    b.close()


def test_index_records_backend_and_precision(fake_openvino, monkeypatch, tmp_path):
    from rag.api import RAG

    monkeypatch.setitem(embedders.REGISTRY, "st", f"{__name__}:RuntimeFake")   # the "torch" runtime, faked
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("The refund window is thirty days. " * 20)
    rag = RAG(settings=load_settings(env={}, overrides={"data_dir": str(tmp_path / "d"),
                                                        "embedder_backend": "openvino",
                                                        "embedder_quantization": "none"}))
    rag.ingest([str(docs)])
    info = rag.store.get_info()
    assert (info["embedder_backend"], info["embedder_precision"]) == ("openvino", "bfloat16")
    hits = rag.retrieve("refund window", k=1, mode="dense")
    assert hits and rag.embedder.inner.queries == 1     # the query went through the same runtime
    rag.close()
    other = RAG(settings=load_settings(env={}, overrides={"data_dir": str(tmp_path / "d"),
                                                          "embedder_backend": "openvino",
                                                          "embedder_quantization": "int8"}))
    if frozenset({"float", "int8"}) not in MIXABLE:
        with pytest.raises(IndexMismatchError, match="re-embed"):
            other.retrieve("refund window", k=1, mode="dense")
    other.close()


def test_add_texts_records_the_runtime(fake_openvino, tmp_path):
    from rag.api import RAG

    rag = RAG(settings=load_settings(env={}, overrides={"data_dir": str(tmp_path / "d"),
                                                        "embedder_backend": "openvino",
                                                        "embedder_quantization": "int8"}))
    rag.add_texts(["one passage", "another passage"])
    assert rag.store.get_info()["embedder_precision"] == "int8"
    rag.close()


def test_calibration_prefers_the_users_text():
    shipped = shipped_calibration()
    assert len(shipped) >= 100 and all(t.strip() for t in shipped)
    texts, counts = calibration_texts(["mine", "mine", " ", "also mine"], n=10)
    assert texts[:2] == ["mine", "also mine"] and len(texts) == 10
    assert counts == {"user_passages": 2, "shipped_passages": 8}
    texts, counts = calibration_texts([f"t{i}" for i in range(50)], n=20)
    assert counts == {"user_passages": 20, "shipped_passages": 0}


def test_auto_runtime(monkeypatch):
    import importlib.util

    from rag.embedders import AUTO_QUANTIZATION, resolve_runtime

    assert resolve_runtime("torch", "auto") == ("torch", "none")
    assert resolve_runtime("auto", "none", "cuda") == ("torch", "none")      # OpenVINO here runs on CPUs only
    if importlib.util.find_spec("openvino") and importlib.util.find_spec("nncf"):
        assert resolve_runtime("auto", "auto") == ("openvino", AUTO_QUANTIZATION["openvino"])
    # Without the extra installed (simulated: it is installed in the dev environment), auto is torch.
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "openvino" else real(name, *a))
    assert resolve_runtime("auto", "auto") == ("torch", "none")
    s = load_settings(env={"RAGTUNE_EMBEDDER_BACKEND": "auto", "RAGTUNE_EMBEDDER_QUANTIZATION": "auto"})
    assert (s.embedder_backend, s.embedder_quantization) == ("auto", "auto")
