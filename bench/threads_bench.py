"""llama.cpp thread count: decode speed idle and beside a competing CPU-bound process, one run.

    python -m bench.threads_bench                         # the default LLM, threads 1..cores
    python -m bench.threads_bench --spec smollm2 --rounds 3

For each thread count, and for ``auto`` (``llm.threads`` unset: chosen per request by
``rag.llms.threads``): prompt tokens/s (prefill of a RAG-sized prompt, five passages, made unique
per call so llama.cpp's prefix cache cannot skip it) and decode tokens/s (64 new tokens, greedy),
with the machine otherwise idle, then with one busy-looping process per core but one started beside
it (what another job on a shared box looks like). Rounds interleave the settings. The ratio
"busy / idle" says how gracefully each setting degrades (docs/llms.md, Threads).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import statistics
import sys
import time


def _spin(stop) -> None:
    while not stop.is_set():
        pass


@contextlib.contextmanager
def spinning(n: int, settle_s: float = 0.0):
    """``n`` busy-looping processes for the duration of the block (another job on a shared box);
    ``settle_s`` waits for them to reach their loop before the block starts."""
    stop = mp.Event()
    spinners = [mp.Process(target=_spin, args=(stop,), daemon=True) for _ in range(n)]
    for s in spinners:
        s.start()
    time.sleep(settle_s)
    try:
        yield
    finally:
        stop.set()
        for s in spinners:
            s.join()


_CALLS = iter(range(10**9))


def messages() -> list[dict[str, str]]:
    """A RAG-sized prompt that makes every model write to the token limit (a short answer would
    measure prefill, not decoding). It starts with a new number each call: the whole prompt is
    prefilled every time."""
    from bench.generation_bench import PASSAGE

    context = "\n\n".join(f"[{i + 1}] Normans.pdf p.{i + 1}\n{PASSAGE}" for i in range(5))
    return [{"role": "user", "content": f"Request {next(_CALLS)}.\n\n{context}\n\n"
                                        "Retell the passages as a long story of at least 300 words."}]


def _decode(llm, messages, max_tokens: int) -> tuple[float, float]:
    """(prompt tokens/s, decode tokens/s) of one streamed answer."""
    prompt = sum(llm.count_tokens(m["content"]) for m in messages)
    t0 = time.perf_counter()
    first, n = None, 0
    text = ""
    for piece in llm.stream(messages, max_new_tokens=max_tokens, temperature=0.0):
        text += piece
        if first is None:
            first = time.perf_counter()
    end = time.perf_counter()
    n = llm.count_tokens(text)
    decode = (n - 1) / (end - first) if first and n > 1 and end > first else 0.0
    return (prompt / (first - t0) if first else 0.0), decode


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--spec", default="", help="LLM spec (default: the default LLM)")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--max-new-tokens", type=int, default=64)
    a = p.parse_args(argv)

    from rag.llms import open_llm
    from rag.settings import Settings

    cores = os.cpu_count() or 1
    counts: list[int | str] = [*range(1, cores + 1), "auto"]
    llms = {t: open_llm(a.spec, Settings(llm={"threads": None if t == "auto" else t})) for t in counts}
    for llm in llms.values():
        _decode(llm, messages(), 8)  # warm-up: load, first prefill
    speeds: dict[str, list[tuple[float, float]]] = {f"{t}/{load}": [] for t in counts for load in ("idle", "busy")}
    chosen: dict[str, list[int]] = {"idle": [], "busy": []}  # what auto picked
    for _ in range(a.rounds):
        for load in ("idle", "busy"):
            with spinning(max(1, cores - 1) if load == "busy" else 0):
                for t in counts:
                    speeds[f"{t}/{load}"].append(_decode(llms[t], messages(), a.max_new_tokens))
                    if t == "auto":
                        chosen[load].append(getattr(llms[t], "threads", 0))
    table = {}
    for t in counts:
        row = {}
        for k, what in enumerate(("prompt", "decode")):
            idle = statistics.median(x[k] for x in speeds[f"{t}/idle"])
            busy = statistics.median(x[k] for x in speeds[f"{t}/busy"])
            row |= {f"{what}_idle_tok_s": round(idle, 1), f"{what}_busy_tok_s": round(busy, 1),
                    f"{what}_busy_over_idle": round(busy / idle, 3) if idle else None}
        if t == "auto":
            row["chosen"] = chosen
        table[str(t)] = row
        print(f"threads {t}: prompt idle {row['prompt_idle_tok_s']:6.1f} busy {row['prompt_busy_tok_s']:6.1f} tok/s; "
              f"decode idle {row['decode_idle_tok_s']:6.1f} busy {row['decode_busy_tok_s']:6.1f} tok/s", file=sys.stderr)
    print(json.dumps({"spec": a.spec or "default", "cores": cores, "name": llms[1].name, "threads": table},
                     indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
