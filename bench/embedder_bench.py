"""Embedder runtimes on this CPU: texts/s as ratios to torch bf16 (today's default), cosine to fp32.

    python -m bench --only embedder
    python -m bench.embedder_bench --texts 128   # JSON on stdout

One process, the same texts (SciFact abstracts cut at 1000 characters, the size of an ingest
chunk), every runtime handed all texts in one call as ragtune does; runtimes are interleaved over
rounds and the median is kept, because the machine is shared. Every ratio is against torch with
bf16 autocast at batch 32 (the default before the openvino backend). Retrieval quality per runtime
is bench/retrieval_bench.py's ``runtimes_quality``; the int8 export here is calibrated on the
shipped passages only (rag/embedders/calibration.jsonl), the worst case for a user.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

SCIFACT = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "scifact"
EXPORTS = Path.home() / ".cache" / "ragtune-bench" / "models" / "exports"   # bench/retrieval_bench.py's too
REFERENCE = "torch bf16"
# name: (backend, precision, quantization, threads or None)
RUNTIMES = {
    "torch bf16": ("torch", "bfloat16", "none", None),
    "torch fp32": ("torch", "float32", "none", None),
    "openvino fp32": ("openvino", "float32", "none", None),
    "openvino bf16": ("openvino", "bfloat16", "none", None),
    "openvino int8": ("openvino", "auto", "int8", None),
    "openvino int8, bf16 activations": ("openvino", "bfloat16", "int8", None),
    "openvino int8, 1 thread": ("openvino", "auto", "int8", 1),
}


def cpu() -> dict:
    """Model name and the flags that decide bf16/int8 speed (AMX, AVX512-BF16, VNNI)."""
    text = Path("/proc/cpuinfo").read_text()
    model = next((ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("model name")), "?")
    flags = next((ln for ln in text.splitlines() if ln.startswith("flags")), "").split()
    keep = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16", "amx_int8", "amx_tile")
    return {"model": model, "flags": [f for f in keep if f in flags]}


def _open(backend: str, precision: str, quantization: str, threads: int | None, log):
    from rag.embedders import open_embedder

    emb = open_embedder("all-MiniLM-L6-v2", backend=backend, precision=precision, quantization=quantization,
                        cache_dir=EXPORTS, threads=threads, log=log)
    if backend == "openvino":
        t0 = time.perf_counter()
        emb.load(calibration=None)   # shipped passages only; export (first time) outside the timing
        log(f"  embedder: {backend} {quantization} ready in {time.perf_counter() - t0:.1f} s ({emb.export_dir.name})")
    return emb


def bench(n_texts: int = 96, rounds: int = 2, log=print) -> dict:
    import numpy as np
    import torch

    from rag.embedders.sentence_transformers import cpu_has_native_bf16

    docs = [json.loads(line) for line, _ in zip((SCIFACT / "corpus.jsonl").open(), range(n_texts))]
    texts = [(d["title"] + ". " + d["text"])[:1000] for d in docs]
    default_threads = torch.get_num_threads()
    models = {name: _open(*cfg, log) for name, cfg in RUNTIMES.items()}
    ref = models["torch fp32"].embed(texts)
    times: dict[str, list[float]] = {n: [] for n in models}
    cos: dict[str, np.ndarray] = {}
    for _ in range(rounds):
        for name, model in models.items():
            threads = RUNTIMES[name][3]
            torch.set_num_threads(threads if threads and RUNTIMES[name][0] == "torch" else default_threads)
            t0 = time.perf_counter()
            vecs = model.embed(texts)
            times[name].append(time.perf_counter() - t0)
            cos[name] = (vecs * ref).sum(1)
    torch.set_num_threads(default_threads)
    base = statistics.median(times[REFERENCE])
    rows = {}
    for name, (backend, precision, quant, threads) in RUNTIMES.items():
        t = statistics.median(times[name])
        rows[name] = {"backend": backend, "precision": models[name].precision, "quantization": quant,
                      "threads": threads or default_threads, "texts_per_s": len(texts) / t,
                      "vs_torch_bf16": base / t, "min_cosine_vs_fp32": float(cos[name].min()),
                      "mean_cosine_vs_fp32": float(cos[name].mean())}
        export = getattr(models[name], "export_dir", None)
        if export is not None:
            manifest = json.loads((export / "ragtune-export.json").read_text())
            rows[name]["export"] = {"folder": export.name, "built_s": manifest.get("built_s"),
                                    "calibration": manifest.get("calibration")}
    log(f"  embedder: {len(texts)} texts x {rounds} rounds")
    return {"texts": len(texts), "rounds": rounds, "threads": default_threads, "reference": REFERENCE,
            "native_bf16": cpu_has_native_bf16(), "cpu": cpu(), "runtimes": rows}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--texts", type=int, default=96)
    p.add_argument("--rounds", type=int, default=2)
    a = p.parse_args(argv)
    print(json.dumps(bench(a.texts, a.rounds, log=lambda m: print(m, file=sys.stderr)), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
