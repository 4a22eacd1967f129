"""Embedder options on this CPU: precision, batch size, torch threads (speed; quality is in retrieval).

    python -m bench --only embedder
    python -m bench.embedder_bench --texts 128   # JSON on stdout

One process, one model, the same texts (SciFact abstracts cut at 1000 characters, the size of an
ingest chunk); configurations are interleaved over rounds and the median is kept, because the
machine is shared. Every ratio is against ragtune's previous default (float32, batch 64, all threads).
sentence-transformers already sorts by length inside each ``encode`` call and ragtune hands it
512 chunks per call, so length-sorted batching is on in every row.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

SCIFACT = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "scifact"
CONFIGS = {  # name: (precision, batch_size, threads or 0 = default)
    "float32 b64 (old default)": ("float32", 64, 0),
    "bfloat16 b64": ("bfloat16", 64, 0),
    "bfloat16 b32 (new default, precision=auto)": ("bfloat16", 32, 0),
    "float32 b16": ("float32", 16, 0),
    "float32 b128": ("float32", 128, 0),
    "float32 b64 1 thread": ("float32", 64, 1),
}


def onnx_status() -> str:
    try:
        import onnxruntime  # noqa: F401
        import optimum  # noqa: F401
    except ImportError as e:
        return f"not measured: {e.name} not installed"
    return "available (not measured here)"


INT8 = "int8 dynamic (torch) b32"


def _int8_copy(emb, log):
    """The embedder with every Linear dynamically quantised to int8 (torch's oneDNN/FBGEMM kernels,
    VNNI on this CPU): the int8 path that needs no new dependency. None where torch lacks the kernels."""
    import copy

    import torch

    try:
        q = copy.copy(emb)
        q.model = torch.ao.quantization.quantize_dynamic(copy.deepcopy(emb.model), {torch.nn.Linear},
                                                         dtype=torch.qint8)
        return q
    except Exception as e:  # noqa: BLE001 - a torch build without quantised kernels: say so
        log(f"  embedder: int8 not measured ({e.__class__.__name__}: {e})")
        return None


def bench(n_texts: int = 96, rounds: int = 2, log=print) -> dict:
    import torch

    from rag.embedders.sentence_transformers import SentenceTransformerEmbedder, cpu_has_native_bf16

    docs = [json.loads(line) for line, _ in zip((SCIFACT / "corpus.jsonl").open(), range(n_texts))]
    texts = [(d["title"] + ". " + d["text"])[:1000] for d in docs]
    emb = SentenceTransformerEmbedder("all-MiniLM-L6-v2")
    default_threads = torch.get_num_threads()
    emb.precision = "float32"  # the reference: plain fp32, whatever the default is
    ref = emb.embed(texts[:16])
    configs = {name: (emb, *cfg) for name, cfg in CONFIGS.items()}
    int8 = _int8_copy(emb, log)
    if int8 is not None:
        configs[INT8] = (int8, "float32", 32, 0)
    times: dict[str, list[float]] = {n: [] for n in configs}
    agree: dict[str, float] = {}
    for _ in range(rounds):
        for name, (model, prec, bs, threads) in configs.items():
            model.precision, model.batch_size = prec, bs
            torch.set_num_threads(threads or default_threads)
            t0 = time.perf_counter()
            vecs = model.embed(texts)
            times[name].append(time.perf_counter() - t0)
            agree[name] = float((vecs[:16] * ref).sum(1).min())
    torch.set_num_threads(default_threads)
    base = statistics.median(times["float32 b64 (old default)"])
    rows = {}
    for name in configs:
        t = statistics.median(times[name])
        rows[name] = {"texts_per_s": len(texts) / t, "speedup": base / t, "min_cosine_vs_fp32": agree[name]}
    log(f"  embedder: {len(texts)} texts x {rounds} rounds")
    return {"texts": len(texts), "rounds": rounds, "threads": default_threads,
            "native_bf16": cpu_has_native_bf16(), "onnx": onnx_status(), "configs": rows}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--texts", type=int, default=96)
    p.add_argument("--rounds", type=int, default=2)
    a = p.parse_args(argv)
    print(json.dumps(bench(a.texts, a.rounds, log=lambda m: print(m, file=sys.stderr)), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
