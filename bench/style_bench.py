"""Answer style line on or off, with the chain's attributed citations: which gives the better answers?

    python -m bench.style_bench --spec qwen2.5-coder-0.5b --n 60      # JSON on stdout, progress on stderr

Same setting as bench/repetition_bench.py (each SQuAD question with its gold paragraph and four
other paragraphs of the article as the retrieved passages, so retrieval does not blur it), the two
prompts interleaved per question in a rotating order. Per prompt: answer F1 and EM (citation markers
removed), ``cited`` (a valid [n], written or attributed), ``cited_gold`` (the cited passage is the gold
paragraph), ``attributed`` (the chain added the citation), seconds per answer.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

from bench.repetition_bench import _CITE, questions


def run(spec: str, n: int, max_new_tokens: int, threads: int) -> dict:
    from eval.metrics import answer_scores
    from rag import chain
    from rag.llms import open_llm
    from rag.settings import Settings
    from rag.types import Hit

    settings = Settings(data_dir=Path.home() / ".cache" / "ragtune-bench" / "style",
                        llm={"threads": threads, "max_new_tokens": max_new_tokens})
    llm = open_llm(spec, settings)
    family = getattr(llm, "family", "")
    styled = chain.ANSWER_STYLE.get(family, "")
    prompts = {"style line": styled, "shared prompt only": ""}
    stats: dict[str, dict[str, list[float]]] = {p: defaultdict(list) for p in prompts}
    qs = questions(n)
    names = list(prompts)
    try:
        for qi, (row, passages) in enumerate(qs):
            hits = [Hit(p["context_id"], p["text"], p["source"], p["start_page"], 1.0 - 0.1 * j)
                    for j, p in enumerate(passages)]
            for name in names[qi % 2:] + names[:qi % 2]:
                if prompts[name]:
                    chain.ANSWER_STYLE[family] = prompts[name]
                else:
                    chain.ANSWER_STYLE.pop(family, None)
                t0 = time.perf_counter()
                a = chain.answer(row["question"], retrieve=lambda q, h=hits: h, llm=llm, settings=settings)
                s = stats[name]
                s["seconds"].append(time.perf_counter() - t0)
                scores = answer_scores(_CITE.sub(" ", a.text), row["answer"])
                s["f1"].append(scores["f1"])
                s["em"].append(scores["em"])
                s["cited"].append(1.0 if a.citations else 0.0)
                s["cited_gold"].append(1.0 if 1 in a.citations else 0.0)  # the gold paragraph is passage [1]
                s["attributed"].append(1.0 if "attributed" in a.flags else 0.0)
            print(f"  {qi + 1}/{len(qs)}", file=sys.stderr, flush=True)
    finally:
        if styled:
            chain.ANSWER_STYLE[family] = styled
    table = {p: {k: round(sum(v) / len(v), 4) for k, v in s.items()} for p, s in stats.items()}
    return {"spec": spec, "family": family, "n": len(qs), "max_new_tokens": max_new_tokens, "threads": threads,
            "style_line": styled, "by_prompt": table}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--spec", default="qwen2.5-coder-0.5b", help="LLM spec or catalogue name")
    p.add_argument("--n", type=int, default=60, help="SQuAD questions")
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    print(json.dumps(run(args.spec, args.n, args.max_new_tokens, args.threads), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
