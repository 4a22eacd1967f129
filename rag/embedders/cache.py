"""Content-addressed embedding cache: identical text is never embedded twice.

Keyed by sha256(embedder id + text) in a small SQLite file per embedder under the data dir
(int8 runtimes key by ``id#int8``: rag/embedders/runtime.py).
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
from pathlib import Path

import numpy as np

from rag.embedders import Embedder


def text_key(embedder_id: str, text: str) -> bytes:
    return hashlib.sha256(f"{embedder_id}\x00{text}".encode("utf-8", "surrogatepass")).digest()


class CachedEmbedder:
    """Wraps an Embedder; ``embed`` looks up every text first and embeds only the misses."""

    def __init__(self, inner: Embedder, cache_dir: str | Path):
        from rag.embedders.runtime import cache_namespace, runtime_of

        self.inner = inner
        self.id, self.dim, self.max_tokens = inner.id, inner.dim, inner.max_tokens
        self.runtime = runtime_of(inner)
        # int8 vectors are cached apart from float ones: a hit is always what this runtime computes.
        self.cache_id = cache_namespace(inner)
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", self.cache_id)[-80:]
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(Path(cache_dir) / f"embeddings-{slug}-{inner.dim}.sqlite",
                                  check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS emb (key BLOB PRIMARY KEY, vec BLOB NOT NULL)")
        self.hits = 0
        self.misses = 0

    def embed(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        keys = [text_key(self.cache_id, t) for t in texts]
        found: dict[bytes, bytes] = {}
        for i in range(0, len(keys), 500):
            part = list(dict.fromkeys(keys[i:i + 500]))
            rows = self.db.execute(f"SELECT key, vec FROM emb WHERE key IN ({','.join('?' * len(part))})", part)
            found.update(rows.fetchall())
        todo: dict[bytes, int] = {}
        for i, key in enumerate(keys):
            if key in found:
                out[i] = np.frombuffer(found[key], dtype=np.float32)
            elif key not in todo:
                todo[key] = i
        self.hits += len(texts) - len(todo)
        self.misses += len(todo)
        if todo:
            vecs = self.inner.embed([texts[i] for i in todo.values()])
            by_key = dict(zip(todo, vecs))
            for i, key in enumerate(keys):
                if key in by_key:
                    out[i] = by_key[key]
            with self.db:
                self.db.execute("BEGIN")
                self.db.executemany("INSERT OR REPLACE INTO emb VALUES (?, ?)",
                                    [(k, v.astype(np.float32).tobytes()) for k, v in by_key.items()])
        return out

    def embed_query(self, text: str) -> np.ndarray:
        return self.inner.embed_query(text)

    def count_tokens(self, texts: list[str]) -> list[int]:
        return self.inner.count_tokens(texts)

    def close(self) -> None:
        self.db.close()
