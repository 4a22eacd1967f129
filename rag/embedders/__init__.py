"""Embedders: one protocol, one registry keyed by spec prefix.

A spec is ``st:NAME`` (sentence-transformers, the default when no prefix is given) or any name a
registered prefix claims. Backends are imported only when chosen.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from rag.errors import ConfigError


@runtime_checkable
class Embedder(Protocol):
    id: str            # stable identifier recorded in the index
    dim: int
    max_tokens: int    # inputs longer than this are truncated by the model

    def embed(self, texts: list[str]) -> np.ndarray:
        """L2-normalised float32 matrix, one row per text."""

    def embed_query(self, text: str) -> np.ndarray:
        """L2-normalised float32 vector for a query."""

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Tokens each text takes in the model, to chunk within ``max_tokens``."""


REGISTRY: dict[str, str] = {
    "st": "rag.embedders.sentence_transformers:SentenceTransformerEmbedder",
}


def _load(target: str):
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def parse_spec(spec: str) -> tuple[str, str]:
    """``'st:NAME'`` -> ``('st', 'NAME')``; a bare name or path is sentence-transformers'.

    Raises:
        ConfigError: an unknown prefix (the message lists the known ones).
    """
    prefix, sep, rest = spec.partition(":")
    if sep and prefix in REGISTRY:
        return prefix, rest
    if sep and len(prefix) > 1 and not prefix.startswith(("/", ".")) and "/" not in prefix:
        raise ConfigError(f"unknown embedder prefix '{prefix}' in '{spec}' (known: {', '.join(sorted(REGISTRY))})")
    return "st", spec


def embedder_id(spec: str) -> str:
    """The id an index records for ``spec``, without loading the model: the same string the
    opened embedder reports as ``.id`` (``st:all-MiniLM-L6-v2`` and ``all-MiniLM-L6-v2`` are one)."""
    from rag.model_paths import embedder_id_for

    prefix, rest = parse_spec(spec)
    return embedder_id_for(rest) if prefix == "st" else spec


# Runtimes for sentence-transformers models (``embedder_backend``); imported only when chosen.
BACKENDS: dict[str, str] = {
    "torch": "rag.embedders.sentence_transformers:SentenceTransformerEmbedder",
    "openvino": "rag.embedders.openvino:OpenVINOEmbedder",
}


# What ``auto`` quantization means per backend: the fastest runtime within the quality gates of
# bench/results/embedders.md (docs/embedders.md).
AUTO_QUANTIZATION = {"torch": "none", "openvino": "int8"}


def resolve_runtime(backend: str, quantization: str, device: str = "cpu") -> tuple[str, str]:
    """``auto`` -> a concrete (backend, quantization): openvino on the CPU when it is installed
    (``pip install 'ragtune[openvino]'``), torch otherwise (and on GPUs)."""
    import importlib.util

    if backend == "auto":
        installed = all(importlib.util.find_spec(m) is not None for m in ("openvino", "nncf", "tokenizers"))
        backend = "openvino" if device == "cpu" and installed else "torch"
    if quantization == "auto":
        quantization = AUTO_QUANTIZATION.get(backend, "none")
    return backend, quantization


def open_embedder(spec: str, *, device: str = "cpu", precision: str = "auto", backend: str = "torch",
                  quantization: str = "none", cache_dir: str | Path | None = None,
                  threads: int | None = None, log=None) -> Embedder:
    """Open the embedder a spec names. ``precision`` reaches other backends only when not the default.

    Args:
        backend: the runtime of a sentence-transformers model (``torch`` or ``openvino``).
        quantization: ``int8`` = a static int8 OpenVINO export (openvino backend only).
        cache_dir: where runtime exports live (the openvino backend builds one on first use).
        threads: CPU threads for the embedder (None = the runtime's default).

    Raises:
        ConfigError: an unknown backend, or a backend/quantization the spec cannot use.
    """
    prefix, rest = parse_spec(spec)
    if prefix != "st":   # runtimes apply to sentence-transformers models only: "auto" means none
        backend = "torch" if backend == "auto" else backend
        quantization = "none" if quantization == "auto" else quantization
    backend, quantization = resolve_runtime(backend, quantization, device)
    if backend not in BACKENDS:
        raise ConfigError(f"unknown embedder backend '{backend}' (known: {', '.join(BACKENDS)})")
    if prefix != "st" and (backend != "torch" or quantization != "none"):
        raise ConfigError(f"embedder_backend/embedder_quantization apply to sentence-transformers models, "
                          f"not to '{spec}'")
    if prefix != "st":
        options = {"precision": precision} if precision != "auto" else {}
        return _load(REGISTRY[prefix])(rest, device=device, **options)
    if backend == "torch":
        if quantization != "none":
            raise ConfigError(f"embedder_quantization '{quantization}' needs embedder_backend = 'openvino' "
                              "(torch's dynamic int8 loses too much: bench/results/embedders.md)")
        return _load(REGISTRY["st"])(rest, device=device, precision=precision, threads=threads)
    return _load(BACKENDS[backend])(rest, device=device, precision=precision, quantization=quantization,
                                    cache_dir=cache_dir, threads=threads, log=log)


def open_configured(settings, log=None):
    """The embedder ``settings`` describe, behind the embedding cache under the data dir."""
    from rag.embedders.cache import CachedEmbedder

    inner = open_embedder(settings.embedder, device=settings.device, precision=settings.embedder_precision,
                          backend=settings.embedder_backend, quantization=settings.embedder_quantization,
                          cache_dir=Path(settings.models_dir).expanduser() / "exports",
                          threads=settings.embedder_threads, log=log)
    return CachedEmbedder(inner, settings.data_dir / "cache")
