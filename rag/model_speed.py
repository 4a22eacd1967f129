"""Measured speed of catalogue models on this machine: ``python -m rag models bench NAME``.

``models list`` shows tokens/s *measured here*, not a vendor figure: speed on a 2-core box depends on the
CPU (AVX-512, AMX), the thread count and what else is running, so a number is only honest next to the
machine and threads it came from. Figures live beside the models in ``<models_dir>/measured.json``
(one entry per model name, the latest measurement wins).
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

FILE = "measured.json"

# A RAG-shaped prompt (five short passages, a question): prompt processing counts in time to first token.
_PASSAGE = ("The Normans were the people who in the 10th and 11th centuries gave their name to Normandy, "
            "a region in France. They were descended from Norse raiders and pirates from Denmark, Iceland "
            "and Norway who, under their leader Rollo, agreed to swear fealty to King Charles III. ")


def messages(round_: int) -> list[dict[str, str]]:
    """The prompt of one round. The round number leads the prompt so llama.cpp cannot reuse the previous
    round's cached prefix: time to first token then includes reading the whole prompt, as for a new question."""
    return [{"role": "system", "content": f"Session {round_}. Answer from the context only; cite passages as [n]."},
            MESSAGES[1]]


MESSAGES = [
    {"role": "system", "content": "Answer from the context only; cite passages as [n]."},
    {"role": "user", "content": "Context:\n" + "\n\n".join(f"[{i + 1}] Normans.pdf p.{i + 1}\n{_PASSAGE}"
                                                           for i in range(5))
     + "\n\nQuestion: Who led the Norse raiders that settled in Normandy? Explain in detail."},
]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _peak_rss_mb() -> float:
    # ru_maxrss is KiB on Linux: the high-water mark of this process, model weights included.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _one(llm: Any, max_tokens: int, round_: int) -> dict[str, float]:
    t0 = time.perf_counter()
    first = None
    text = ""
    for piece in llm.stream(messages(round_), max_new_tokens=max_tokens, temperature=0.0):
        if first is None:
            first = time.perf_counter()
        text += piece
    end = time.perf_counter()
    n = llm.count_tokens(text)
    decode = end - (first or end)
    return {"ttft_s": (first or end) - t0, "tokens": n,
            "tokens_per_s": (n - 1) / decode if n > 1 and decode > 0 else 0.0}


def measure(name: str, settings: Any, *, max_tokens: int = 64, rounds: int = 2) -> dict[str, Any]:
    """Load ``name`` (any LLM spec; a catalogue name normally), warm it up, then time ``rounds`` greedy
    generations of up to ``max_tokens`` tokens: median tokens/s (decode only) and time to first token."""
    from rag.llms import open_llm

    t0 = time.perf_counter()
    llm = open_llm(name, settings)
    load_s = time.perf_counter() - t0
    _one(llm, 4, 0)  # warm-up: first-call allocations are not the model's speed
    runs = [_one(llm, max_tokens, r + 1) for r in range(rounds)]
    ttft = statistics.median(r["ttft_s"] for r in runs)
    # The prompt's size beside its first-token time: a chain prompt of P tokens then takes about
    # P / prompt_tokens_per_s before its first token (five 1,000-character passages are ~1,400 tokens).
    prompt_tokens = llm.count_tokens("\n".join(m["content"] for m in messages(1)))
    return {"tokens_per_s": round(statistics.median(r["tokens_per_s"] for r in runs), 2),
            "ttft_s": round(ttft, 3), "prompt_tokens": prompt_tokens,
            "prompt_tokens_per_s": round(prompt_tokens / ttft, 1) if ttft > 0 else None,
            "load_s": round(load_s, 2), "peak_rss_mb": round(_peak_rss_mb()),
            "tokens": runs[-1]["tokens"], "max_new_tokens": max_tokens, "rounds": rounds,
            "threads": getattr(settings.llm, "threads", None) or _threads_used(llm),
            "cpu": cpu_model(), "cores": os.cpu_count(),
            "measured_at": datetime.now(UTC).isoformat(timespec="seconds")}


def _threads_used(llm: Any) -> int | None:
    if isinstance(getattr(llm, "threads", None), int):  # LlamaCppLLM: what its last request used
        return llm.threads
    inner = getattr(llm, "llm", None)  # llama_cpp.Llama keeps its context params
    params = getattr(inner, "context_params", None)
    return getattr(params, "n_threads", None)


def load(root: Path) -> dict[str, dict[str, Any]]:
    """Every recorded measurement under the model cache ``root`` ({} when none or unreadable)."""
    try:
        data = json.loads((Path(root) / FILE).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def record(root: Path, name: str, figures: dict[str, Any]) -> Path:
    """Store ``figures`` for ``name`` (atomically: a reader never sees half a file)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    data = load(root)
    data[name] = figures
    tmp = root / f".{FILE}.{os.getpid()}.partial"
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(tmp, root / FILE)
    return root / FILE
