"""Answer-style lines per model family (rag.chain.ANSWER_STYLE): F1 and citation rate, one run.

    python -m bench.prompt_probe --spec qwen2.5-coder-0.5b --n 24
    python -m bench.prompt_probe --spec smollm2 --style "Answer in a few words, then cite like [1]."

Each SQuAD question (../shared/data/squad, the tuning set; never a held-out set) goes through the
real chain with its gold paragraph and four others of the article as passages, once per style,
in a rotating order (llama.cpp's prompt cache favours whichever runs second on a prompt). Prints
per style: answer F1 (citation markers removed), the share of answers with a valid [n], seconds.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time

CITE = re.compile(r"\[\s*\d+(?:\s*[,;-]\s*\d+)*\s*\]")
CANDIDATES = [
    "Answer in a few words, then the passage number in brackets.",
    "Answer in one short sentence and end it with the number of the passage you used, like [1].",
    "Reply with only the answer phrase from the passage, followed by its passage number in brackets.",
]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--spec", default="", help="LLM spec (default: the default LLM)")
    p.add_argument("--n", type=int, default=24)
    p.add_argument("--style", action="append", help="a style line to try (repeatable; default: built-in candidates)")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)

    from bench.repetition_bench import questions
    from eval.metrics import answer_scores
    from rag import chain
    from rag.llms import open_llm
    from rag.settings import Settings
    from rag.types import Hit

    settings = Settings(llm={"threads": a.threads, "max_new_tokens": 64})
    llm = open_llm(a.spec, settings)
    family = getattr(llm, "family", "")
    styles = {"none": "", **{f"style{i + 1}": s for i, s in enumerate(a.style or CANDIDATES)}}
    saved = dict(chain.ANSWER_STYLE)
    stats = {name: {"f1": [], "cited": [], "s": []} for name in styles}
    try:
        for qi, (row, passages) in enumerate(questions(a.n)):
            hits = [Hit(p["context_id"], p["text"], p["source"], p["start_page"], 1.0 - 0.1 * j)
                    for j, p in enumerate(passages)]
            names = list(styles)
            for name in names[qi % len(names):] + names[:qi % len(names)]:
                chain.ANSWER_STYLE[family] = styles[name]
                t0 = time.perf_counter()
                ans = chain.answer(row["question"], retrieve=lambda q, h=hits: h, llm=llm, settings=settings)
                stats[name]["s"].append(time.perf_counter() - t0)
                stats[name]["f1"].append(answer_scores(CITE.sub(" ", ans.text), row["answer"])["f1"])
                stats[name]["cited"].append(1.0 if ans.citations else 0.0)
            print(f"  {qi + 1}/{a.n}", file=sys.stderr)
    finally:
        chain.ANSWER_STYLE.clear()
        chain.ANSWER_STYLE.update(saved)
    out = {"spec": a.spec or "default", "family": family, "n": a.n,
           "styles": {name: {"text": styles[name], **{k: round(sum(v) / len(v), 3) for k, v in stats[name].items()}}
                      for name in styles}}
    for name, row in out["styles"].items():
        print(f"{name:>8}  F1 {row['f1']:.3f}  cited {row['cited']:.2f}  {row['s']:.1f} s  {row['text']!r}",
              file=sys.stderr)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
