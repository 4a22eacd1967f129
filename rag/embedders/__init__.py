"""Embedders: one protocol, one registry keyed by spec prefix.

A spec is ``st:NAME`` (sentence-transformers, the default when no prefix is given) or any name a
registered prefix claims. Backends are imported only when chosen.
"""

from __future__ import annotations

import importlib
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


def open_embedder(spec: str, *, device: str = "cpu", precision: str = "auto") -> Embedder:
    """Open the embedder a spec names. ``precision`` reaches other backends only when not the default."""
    prefix, sep, rest = spec.partition(":")
    if sep and prefix in REGISTRY:
        options = {"precision": precision} if prefix == "st" or precision != "auto" else {}
        return _load(REGISTRY[prefix])(rest, device=device, **options)
    if sep and len(prefix) > 1 and not prefix.startswith(("/", ".")) and "/" not in prefix:
        raise ConfigError(f"unknown embedder prefix '{prefix}' in '{spec}' (known: {', '.join(sorted(REGISTRY))})")
    return _load(REGISTRY["st"])(spec, device=device, precision=precision)
