"""The OpenVINO embedder runtime on the packaged MiniLM: real exports (fp32 and static int8, one
of each per session, ~15-25 s each), vectors against torch, queries through the same runtime,
a damaged export rebuilt, the runtime recorded in a real index."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("openvino", reason="the openvino extra is not installed: pip install 'ragtune[openvino]'")
pytest.importorskip("nncf", reason="the openvino extra is not installed: pip install 'ragtune[openvino]'")

from rag.embedders.export import MANIFEST, verify
from rag.embedders.openvino import OpenVINOEmbedder

pytestmark = pytest.mark.slow

TEXTS = [
    "The refund window for the Acme Widget is thirty days from delivery.",
    "Four score and seven years ago our fathers brought forth on this continent a new nation.",
    "Airworthiness directives require inspection of the fuselage frames for cracking.",
    "Gradient descent lowers the loss by stepping against the gradient.",
] * 3 + [f"passage number {i} about topic {i % 7} with a few more words in it" for i in range(40)]


@pytest.fixture(scope="session")
def exports(tmp_path_factory):
    """(fp32/bf16 embedder, int8 embedder, cache dir): the int8 one calibrated on TEXTS."""
    cache = tmp_path_factory.mktemp("models") / "exports"   # where open_configured looks under models_dir
    fp = OpenVINOEmbedder("all-MiniLM-L6-v2", cache_dir=cache)
    q8 = OpenVINOEmbedder("all-MiniLM-L6-v2", cache_dir=cache, quantization="int8")
    fp.embed(TEXTS)
    q8.embed(TEXTS)
    return fp, q8, cache


def test_vectors_agree_with_torch(exports, embedder):
    fp, q8, _ = exports
    ref = embedder.embed(TEXTS)
    assert fp.dim == q8.dim == embedder.dim and fp.max_tokens == embedder.max_tokens
    assert (fp.embed(TEXTS) * ref).sum(1).min() > 0.999
    assert (q8.embed(TEXTS) * ref).sum(1).min() > 0.98
    assert fp.count_tokens(TEXTS[:3]) == embedder.count_tokens(TEXTS[:3])


def test_queries_use_the_same_runtime(exports):
    for emb in exports[:2]:
        batch = emb.embed(["where is the refund policy?", TEXTS[0], TEXTS[1]])
        alone = emb.embed_query("where is the refund policy?")
        assert np.allclose(alone, batch[0], atol=1e-3)
        assert np.isclose(np.linalg.norm(alone), 1.0, atol=1e-4)


def test_int8_was_calibrated_on_the_users_text(exports):
    _, q8, _ = exports
    manifest = json.loads((q8.export_dir / MANIFEST).read_text())
    assert manifest["key"]["weights"] == "int8"
    assert manifest["calibration"]["user_passages"] == len(set(TEXTS))
    assert not (q8.export_dir / "openvino_model.bin").exists()   # only the int8 graph is kept


def test_damaged_export_is_rebuilt(exports):
    fp, _, cache = exports
    weights = fp.export_dir / "openvino_model.bin"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    assert not verify(fp.export_dir, fp.key)
    again = OpenVINOEmbedder("all-MiniLM-L6-v2", cache_dir=cache)
    vec = again.embed_query(TEXTS[0])
    assert verify(again.export_dir, again.key) and again.export_dir == fp.export_dir
    assert float(vec @ fp.embed_query(TEXTS[0])) > 0.9999


def test_index_records_the_openvino_runtime(exports, tmp_path):
    from rag.api import RAG
    from rag.settings import load_settings

    cache = exports[2]
    rag = RAG(settings=load_settings(env={}, overrides={
        "data_dir": str(tmp_path / "d"), "models_dir": str(cache.parent), "embedder_backend": "openvino",
        "embedder_quantization": "none"}))
    rag.add_texts(TEXTS[:4], metadatas=[{"source": f"d{i}"} for i in range(4)])
    info = rag.store.get_info()
    assert info["embedder_backend"] == "openvino" and info["embedder_precision"] in ("bfloat16", "float32")
    assert rag.retrieve("how long can I return the widget?", k=1, mode="dense")[0].source == "d0"
    rag.close()


def test_the_default_settings_ingest_with_openvino_int8(exports, tmp_path, monkeypatch):
    """No embedder setting at all (the autouse fixture's torch pin removed): `auto` picks the
    OpenVINO int8 runtime, records it in the index and answers from it."""
    from rag.api import RAG
    from tests.conftest import SAMPLE

    monkeypatch.delenv("RAGTUNE_EMBEDDER_BACKEND")
    monkeypatch.setenv("RAGTUNE_MODELS_DIR", str(exports[2].parent))
    with RAG(data_dir=tmp_path / "d") as rag:
        assert (rag.settings.embedder_backend, rag.settings.embedder_quantization) == ("auto", "auto")
        rag.ingest([str(SAMPLE)])
        info = rag.store.get_info()
        assert (info["embedder_backend"], info["embedder_precision"]) == ("openvino", "int8")
        hits = rag.retrieve("How much does the Acme Widget weigh?", k=3)
        assert any("140" in h.text for h in hits)
