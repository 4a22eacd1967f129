"""How far a local judge agrees with token F1: answers to SQuAD questions graded by eval/judge.py.

    python -m bench.judge_bench --n 30                       # writes bench/results/judge.json
    python -m bench.judge_bench --n 10 --judge qwen2.5-coder-0.5b --threads 2

Each question (../shared/data/squad, picked and given its five passages as in
bench/repetition_bench.py: gold paragraph first) is answered by the answering LLM (default: the
default spec) through the real chain; the judge then grades the answer against the references
(correctness) and the passages the chain used (groundedness). Reported: the judge's means,
Cohen's kappa and raw agreement between judge_correct and F1 >= 0.5 (citation markers removed
before scoring), unparsed replies and seconds per judgment (both judge calls for one answer).
The JSON is rewritten after every question, so a run cut short still leaves its figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "results" / "judge.json"


def summarise(rows: list[dict], meta: dict) -> dict:
    from eval.judge import cohen_kappa

    def mean(key: str) -> float | None:
        vals = [r[key] for r in rows if r.get(key) is not None]
        return round(sum(vals) / len(vals), 4) if vals else None

    pairs = [(r["judge_correct"] == 1.0, r["f1"] >= 0.5) for r in rows if r["judge_correct"] is not None]
    kappa = cohen_kappa([a for a, _ in pairs], [b for _, b in pairs])
    return {**meta, "n": len(rows), "judge_correct": mean("judge_correct"), "judge_grounded": mean("judge_grounded"),
            "f1": mean("f1"), "em": mean("em"), "f1_ge_0.5": mean("f1_ok"),
            "kappa_vs_f1_ge_0.5": None if kappa is None else round(kappa, 4),
            "agreement_vs_f1_ge_0.5": round(sum(a == b for a, b in pairs) / len(pairs), 4) if pairs else None,
            "judge_unparsed": sum(r["unparsed"] for r in rows),
            "seconds_per_judgment": mean("judge_s"), "seconds_per_answer": mean("answer_s"), "rows": rows}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=30, help="SQuAD questions (default 30)")
    p.add_argument("--llm", default="", help="answering LLM spec (default: the default spec)")
    p.add_argument("--judge", default="qwen2.5-coder-1.5b", help="judge LLM spec or catalogue name")
    p.add_argument("--threads", type=int, default=1, help="llama.cpp threads for both models (default 1)")
    p.add_argument("--out", default=str(OUT), help=f"JSON output (default {OUT.relative_to(ROOT)})")
    args = p.parse_args(argv)

    from bench.repetition_bench import _CITE, questions
    from eval.judge import Judge
    from eval.metrics import answer_scores
    from rag import chain
    from rag.llms import open_llm
    from rag.settings import Settings
    from rag.types import Hit

    settings = Settings(data_dir=Path.home() / ".cache" / "ragtune-bench" / "judge", llm={"threads": args.threads})
    llm = open_llm(args.llm, settings)
    judge = Judge(open_llm(args.judge, settings))
    meta = {"answer_llm": llm.name or "default", "judge": args.judge, "threads": args.threads,
            "judge_max_new_tokens": judge.max_new_tokens, "judge_max_context_chars": judge.max_context_chars}
    rows: list[dict] = []
    for qi, (row, passages) in enumerate(questions(args.n), 1):
        hits = [Hit(p["context_id"], p["text"], p["source"], p["start_page"], 1.0 - 0.1 * j)
                for j, p in enumerate(passages)]
        t0 = time.perf_counter()
        a = chain.answer(row["question"], retrieve=lambda q, h=hits: h, llm=llm, settings=settings)
        t1 = time.perf_counter()
        v = judge.grade(row["question"], row["answer"], a.text, [s.text for s in a.sources])
        t2 = time.perf_counter()
        scores = answer_scores(_CITE.sub(" ", a.text), row["answer"])
        rows.append({"id": row["id"], "question": row["question"], "references": sorted(set(row["answer"])),
                     "answer": a.text, "f1": round(scores["f1"], 4), "em": scores["em"],
                     "f1_ok": 1.0 if scores["f1"] >= 0.5 else 0.0, "judge_correct": v.correct,
                     "judge_grounded": v.grounded, "replies": v.replies, "unparsed": v.unparsed,
                     "answer_s": round(t1 - t0, 2), "judge_s": round(t2 - t1, 2)})
        Path(args.out).write_text(json.dumps(summarise(rows, meta), indent=1) + "\n", encoding="utf-8")
        print(f"  {qi}/{args.n} f1={scores['f1']:.2f} judge={v.correct} grounded={v.grounded} "
              f"judge_s={t2 - t1:.1f} replies={v.replies}", file=sys.stderr, flush=True)
    summary = summarise(rows, meta)
    print(json.dumps({k: v for k, v in summary.items() if k != "rows"}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
