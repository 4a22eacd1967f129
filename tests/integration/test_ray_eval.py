"""``python -m eval ... --engine ray`` on the session's local Ray cluster: the same metrics as local.

Real SmolLM2 (the packaged GGUF, greedy, one thread) answering a few sample questions over the
embedded store; the questions are split into shards that run as Ray tasks on both nodes.
"""

from __future__ import annotations

import json

import pytest

from eval.__main__ import main
from tests.conftest import ROOT, SAMPLE

pytestmark = pytest.mark.slow

DATASET = ROOT / "data" / "eval" / "sample.jsonl"
TIMING = {"retrieval_s", "generation_s", "latency_s"}


def test_eval_on_ray_matches_local(ray_cluster, tmp_path, capsys):
    from rag import RAG
    from rag.settings import load_settings

    data = tmp_path / "d"
    with RAG(settings=load_settings(env={}, overrides={"data_dir": str(data)})) as rag:
        assert not rag.ingest([SAMPLE]).failed
    (tmp_path / "ragtune.toml").write_text("[llm]\nthreads = 1\nmax_new_tokens = 32\n")  # same decoding on both
    args = [str(DATASET), "--data-dir", str(data), "--config", str(tmp_path / "ragtune.toml"), "--llm", "smollm2",
            "--retrieval", "bm25", "--limit", "4", "--bootstrap", "50", "--json"]

    def run(*extra: str) -> dict:
        assert main([*args, *extra]) == 0
        return json.loads(capsys.readouterr().out.strip().splitlines()[-1])["configs"][0]

    local = run()
    ray = run("--engine", "ray", "--ray-address", ray_cluster.address)
    assert ray["n"] == local["n"] == 4 and ray["name"] == local["name"]
    got, want = ({k: v for k, v in c["metrics"].items() if k not in TIMING} for c in (ray, local))
    assert got.keys() == want.keys()
    for k, v in want.items():
        assert got[k] == (v if v is None else pytest.approx(v)), k
    assert "f1" in ray["metrics"] and "hit@5" in ray["metrics"]
