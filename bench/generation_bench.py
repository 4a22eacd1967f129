"""Local generation with the packaged SmolLM2: time to first token and tokens/s, llama.cpp vs transformers.

    python -m bench --only generation
    python -m bench.generation_bench            # JSON on stdout

Both backends get the same chat messages (a RAG prompt with ~5 retrieved passages), greedy
decoding and the same ``max_new_tokens``; rounds alternate between them after one warm-up each.
The default spec ('') is llama.cpp when ``llama_cpp`` is installed (the GGUF as shipped), else
transformers; ``hf:`` loads the same weights dequantised to float32 through transformers.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path.home() / ".cache" / "ragtune-bench"

PASSAGE = ("The Normans were the people who in the 10th and 11th centuries gave their name to Normandy, "
           "a region in France. They were descended from Norse raiders and pirates from Denmark, Iceland "
           "and Norway who, under their leader Rollo, agreed to swear fealty to King Charles III of West Francia. ")


def messages() -> list[dict[str, str]]:
    context = "\n\n".join(f"[{i + 1}] Normans.pdf p.{i + 1}\n{PASSAGE}" for i in range(5))
    return [{"role": "system", "content": "Answer from the context only; cite passages as [n]."},
            {"role": "user", "content": f"Context:\n{context}\n\nQuestion: Who was the leader of the Norse "
                                        "raiders that settled in Normandy?"}]


def _one(llm, max_tokens: int) -> dict:
    t0 = time.perf_counter()
    first = None
    text = ""
    for piece in llm.stream(messages(), max_new_tokens=max_tokens, temperature=0.0):
        if first is None:
            first = time.perf_counter()
        text += piece
    end = time.perf_counter()
    n = llm.count_tokens(text)
    return {"ttft_s": (first or end) - t0, "tokens": n, "seconds": end - t0,
            "tokens_per_s": (n - 1) / (end - first) if first and n > 1 and end > first else 0.0}


def bench(max_tokens: int = 64, rounds: int = 2, log=print) -> dict:
    from rag.llms import default_backend, open_llm
    from rag.settings import load_settings

    settings = load_settings(env={}, overrides={"data_dir": str(CACHE / "gen")})
    specs = {"default": "", "transformers (hf:)": "hf:"}
    llms, load = {}, {}
    for name, spec in specs.items():
        t0 = time.perf_counter()
        llms[name] = open_llm(spec, settings)
        load[name] = time.perf_counter() - t0
        _one(llms[name], 8)  # warm-up
    runs: dict[str, list[dict]] = {n: [] for n in specs}
    for _ in range(rounds):
        for name in specs:
            runs[name].append(_one(llms[name], max_tokens))
    out = {"default_backend": default_backend(), "max_new_tokens": max_tokens, "rounds": rounds, "backends": {}}
    for name in specs:
        rs = runs[name]
        out["backends"][name] = {"spec": specs[name], "load_s": load[name],
                                 "ttft_s": statistics.median(r["ttft_s"] for r in rs),
                                 "tokens_per_s": statistics.median(r["tokens_per_s"] for r in rs),
                                 "tokens": rs[-1]["tokens"], "name": getattr(llms[name], "name", "")}
    log(f"  generation: default backend = {out['default_backend']}")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--rounds", type=int, default=2)
    a = p.parse_args(argv)
    print(json.dumps(bench(a.max_tokens, a.rounds, log=lambda m: print(m, file=sys.stderr)), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
