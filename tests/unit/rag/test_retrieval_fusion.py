import numpy as np

from rag.errors import redact
from rag.retrieval import fuse_mix, fuse_rrf, mmr


def test_rrf_rewards_agreement():
    fused = fuse_rrf([["a", "b", "c"], ["b", "d"]], k=3)
    assert fused[0][0] == "b"


def test_mix_uses_both_sides():
    fused = fuse_mix([("a", 0.9), ("b", 0.8), ("d", 0.1)], [("c", 12.0), ("b", 11.5), ("e", 1.0)], k=5,
                     dense_weight=0.5)
    assert fused[0][0] == "b"
    assert {c for c, _ in fused} == {"a", "b", "c", "d", "e"}


def test_mmr_prefers_diverse():
    q = np.array([1.0, 0.0])
    v = np.array([[1.0, 0.0], [0.99, 0.14], [0.7, -0.71]])
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    assert mmr(q, v, 2, lambda_=1.0) == [0, 1]
    assert mmr(q, v, 2, lambda_=0.3) == [0, 2]


def test_redact_strips_passwords():
    assert redact("pgvector://bob:s3cret@host/db") == "pgvector://bob:***@host/db"
    assert "abc" not in redact("https://x/y?api_key=abc&z=1")
