"""Stage ``split``: train / val / test **by document** (``OUT/split/*.jsonl``), so test questions come
from documents the adapter never saw."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from loop.params import LoopParams
from loop.stages import Context
from loop.workdir import Paths, read_rows, write_rows
from rag.errors import ConfigError, DataError


def match_doc(source: str, names: list[str]) -> bool:
    """``source`` is one of ``names``: the same path, the same file name, or a path ending in it."""
    return any(source == n or Path(source).name == Path(n).name or source.endswith("/" + n) for n in names)


def run(params: LoopParams, paths: Paths, ctx: Context) -> dict[str, Any]:
    """Whole documents go to train, val or test, so no test question comes from a trained-on document."""
    sp = params.split
    rows = read_rows(paths.qa)
    docs = sorted({r["source"] for r in rows})
    if len(docs) < 2:
        raise DataError(f"a split by document needs at least 2 documents with questions (got {len(docs)})")
    order = docs[:]
    random.Random(sp.seed).shuffle(order)
    if sp.test_docs:
        test = [d for d in order if match_doc(d, sp.test_docs)]
        if not test:
            raise ConfigError(f"split.test_docs: none of {sp.test_docs} has questions (documents: {docs})")
        rest = [d for d in order if d not in test]
    else:
        n_test = min(len(docs) - 1, max(1, round(len(docs) * sp.test)))
        test, rest = order[:n_test], order[n_test:]
    n_val = min(len(rest) - 1, round(len(docs) * sp.val)) if sp.val > 0 else 0
    n_val = max(n_val, 1 if sp.val > 0 and len(rest) >= 2 else 0)
    val, train = rest[:n_val], rest[n_val:]
    if not train:
        raise DataError("no document left for training after the test/val split")
    counts = {}
    for name, names in {"train": train, "val": val, "test": test}.items():
        part = [r for r in rows if r["source"] in names]
        if name == "val" and sp.max_val and len(part) > sp.max_val:
            part = sorted(random.Random(sp.seed).sample(part, sp.max_val), key=lambda r: r["id"])
        write_rows(paths.split / f"{name}.jsonl", part)
        counts[name] = {"documents": sorted(names), "questions": len(part)}
    (paths.split / "split.json").write_text(json.dumps(counts, indent=2))
    return {k: v["questions"] for k, v in counts.items()}
