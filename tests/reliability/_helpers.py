"""Helpers shared by the reliability tests and bench/ scripts.

``HashEmbedder`` is a fake for pipeline logic only: a deterministic bag-of-words hash (the same
text always gives the same vector, similar words give similar vectors), so tests of what the
pipeline does with hostile files or faults do not wait on MiniLM. The real embedder is exercised
in tests/integration/.

``slow_parse`` replaces ``ingest.pipeline._parse`` in a test: it is pickled by name, so it runs
inside the parser worker process, where it sleeps on files named ``*slow*`` (a stand-in for a
parser that hangs on a hostile file); ``crash_parse`` kills the worker with SIGKILL (as the OOM
killer would) and ``segv_parse`` with SIGSEGV (as a parser bug would) on ``*crash*`` files.
"""

from __future__ import annotations

import hashlib
import re
import time
from pathlib import Path
from typing import Any

import numpy as np

_WORD = re.compile(r"\w+")


class HashEmbedder:
    """Deterministic 64-d bag-of-words vectors; ``count_tokens`` ~ characters / 4."""

    id = "test/hash-embedder"
    dim = 64
    max_tokens = 256

    def __init__(self, rest: str | None = None, device: str = "cpu") -> None:
        # opened through the embedder registry as ``testhash:NAME`` (see ``register_hash_embedder``)
        if rest is not None:
            self.id = f"testhash:{rest}"
        self.misses = 0

    def _vec(self, text: str) -> np.ndarray:
        v = np.zeros(self.dim, dtype=np.float32)
        for w in _WORD.findall(text.lower())[:2000] or [text[:32]]:
            h = int.from_bytes(hashlib.blake2b(w.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little")
            v[h % self.dim] += 1.0 if (h >> 32) & 1 else -1.0
        n = float(np.linalg.norm(v))
        if n == 0:
            v[0], n = 1.0, 1.0
        return v / n

    def embed(self, texts: list[str]) -> np.ndarray:
        self.misses += len(texts)
        return np.vstack([self._vec(t) for t in texts]) if texts else np.zeros((0, self.dim), np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        return self._vec(text)

    def count_tokens(self, texts: list[str]) -> list[int]:
        return [len(t) // 4 + 1 for t in texts]

    def close(self) -> None:
        pass


def register_hash_embedder(monkeypatch) -> str:
    """Make ``testhash:NAME`` an embedder spec (for CLIs run in-process); returns a spec to use."""
    from rag import embedders

    monkeypatch.setitem(embedders.REGISTRY, "testhash", "tests.reliability._helpers:HashEmbedder")
    return "testhash:fake"


def hash_rag(**kw: Any):
    """A ``rag.api.RAG`` on the test's data dir with the HashEmbedder in place of MiniLM."""
    from rag.api import RAG

    rag = RAG(embedder=HashEmbedder.id, **kw)
    rag._embedder = HashEmbedder()
    return rag


def crash_parse(path: str, settings):
    """``_parse`` that kills its own worker process (as a segfaulting parser would) on ``*crash*``."""
    import os
    import signal

    from ingest.pipeline import _parse

    if "crash" in path.rsplit("/", 1)[-1]:
        os.kill(os.getpid(), signal.SIGKILL)
    return _parse(path, settings)


def segv_parse(path: str, settings):
    """``_parse`` that dies by SIGSEGV (a parser bug on the file's bytes) on ``*crash*`` files."""
    import os
    import signal

    from ingest.pipeline import _parse

    if "crash" in path.rsplit("/", 1)[-1]:
        os.kill(os.getpid(), signal.SIGSEGV)
    return _parse(path, settings)


def slow_parse(path: str, settings):
    """``_parse`` that hangs (sleeps far past any test timeout) on files named ``*slow*``."""
    from ingest.pipeline import _parse

    if "slow" in path.rsplit("/", 1)[-1]:
        time.sleep(600)
    return _parse(path, settings)


def tiny_llama_dir() -> Path:
    """A random 2-layer LLaMA with the SmolLM2 tokenizer, built once per machine and kept under the
    temp folder (converting the GGUF tokenizer takes ~15 s; tests only read the folder)."""
    import os
    import shutil
    import tempfile

    import transformers

    cache = Path(tempfile.gettempdir()) / f"ragtune-tiny-llama-v1-tf{transformers.__version__}"
    if (cache / "model.safetensors").exists() and (cache / "tokenizer.json").exists():
        return cache
    build = Path(tempfile.mkdtemp(prefix="ragtune-tiny-llama-build-"))
    tiny_llama(build)
    try:
        os.rename(build, cache)           # atomic: a concurrent builder's copy wins, ours is dropped
    except OSError:
        shutil.rmtree(build, ignore_errors=True)
    return cache


def tiny_llama(path) -> None:
    """Save a random 2-layer LLaMA (hidden 64) with the packaged SmolLM2 tokenizer to ``path``
    (safetensors): a base model for QLoRA runs of a few seconds on CPU."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from rag.model_paths import packaged_smollm2_gguf

    gguf = packaged_smollm2_gguf()
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id)
    LlamaForCausalLM(cfg).save_pretrained(path, safe_serialization=True)
    tok.save_pretrained(path)
