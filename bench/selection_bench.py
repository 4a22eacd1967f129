"""Whole passages or the selected sentences (``retrieval.sentences``): answers and time, in one run.

    python bench/squad_to_eval.py --n 300 --out /tmp/squad300.jsonl
    python -m ingest ../shared/data/squad --data-dir /tmp/sq300
    python -m bench.selection_bench /tmp/squad300.jsonl --data-dir /tmp/sq300 --n 50 \\
        --llm qwen2.5-coder-0.5b --sentences 0,10 [--out bench/results/selection.json]

Each question is retrieved once (the default hybrid top k) and answered by the same loaded model
once per setting, the settings in a rotating order per question so a slower or faster stretch of a
shared machine falls on all of them. Per setting: answer F1 and EM (citation markers removed), the
share of answers holding a reference answer, prompt tokens, p50/p90 seconds per answer; and, against
the first setting (the baseline), the paired F1 difference with its 95% bootstrap interval and the
p50 time ratio. JSON on stdout (and ``--out``), progress on stderr.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path


def run(dataset: str, data_dir: str, llm_spec: str, settings_n: list[int], n: int) -> dict:
    from eval.metrics import answer_scores, paired_bootstrap_diff
    from rag import chain
    from rag.api import RAG
    from rag.selection import select_sentences

    rows = [json.loads(line) for line in Path(dataset).read_text(encoding="utf-8").splitlines() if line.strip()][:n]
    rag = RAG(llm=llm_spec, data_dir=data_dir)
    llm = rag.llm
    per: dict[int, dict[str, list[float]]] = {s: {"f1": [], "em": [], "contains": [], "seconds": [],
                                                   "prompt_tokens": []} for s in settings_n}
    try:
        for qi, row in enumerate(rows):
            hits = rag.retrieve(row["question"])
            refs = row["answer"] if isinstance(row["answer"], list) else [row["answer"]]
            for s in settings_n[qi % len(settings_n):] + settings_n[:qi % len(settings_n)]:
                t0 = time.perf_counter()
                a = chain.answer(row["question"], retrieve=lambda _q, h=hits: list(h), llm=llm, settings=rag.settings,
                                 select=(lambda q, h, s=s: select_sentences(q, h, rag.embed, s)) if s else None)
                m = per[s]
                m["seconds"].append(time.perf_counter() - t0)
                scores = answer_scores(a.text, refs)
                m["f1"].append(scores["f1"])
                m["em"].append(scores["em"])
                m["contains"].append(float(any(r.lower() in a.text.lower() for r in refs)))
                m["prompt_tokens"].append(float(a.tokens.get("prompt", 0)))
            print(f"  {qi + 1}/{len(rows)}", file=sys.stderr, flush=True)
    finally:
        rag.close()
    base = settings_n[0]
    out: dict = {"dataset": dataset, "llm": getattr(llm, "name", llm_spec), "k": rag.settings.retrieval.k,
                 "n": len(rows), "baseline": base, "settings": {}}
    for s, m in per.items():
        p50 = statistics.median(m["seconds"])
        entry = {"f1": statistics.fmean(m["f1"]), "em": statistics.fmean(m["em"]),
                 "contains_reference": statistics.fmean(m["contains"]),
                 "prompt_tokens": statistics.fmean(m["prompt_tokens"]), "p50_s": p50,
                 "p90_s": statistics.quantiles(m["seconds"], n=10)[-1] if len(m["seconds"]) > 1 else p50}
        if s != base:
            diff = paired_bootstrap_diff(m["f1"], per[base]["f1"])
            entry["f1_gain_vs_baseline"] = list(diff) if diff else None
            entry["p50_ratio_vs_baseline"] = p50 / statistics.median(per[base]["seconds"])
        out["settings"][str(s)] = entry
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset", help="eval JSONL (bench/squad_to_eval.py)")
    ap.add_argument("--data-dir", required=True, help="the data dir the documents were ingested into")
    ap.add_argument("--llm", default="qwen2.5-coder-0.5b")
    ap.add_argument("--sentences", default="0,10", help="comma-separated retrieval.sentences values; the first is "
                                                         "the baseline (0 = whole passages)")
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--out")
    a = ap.parse_args(argv)
    result = run(a.dataset, a.data_dir, a.llm, [int(x) for x in a.sentences.split(",")], a.n)
    text = json.dumps(result, indent=2)
    print(text)
    if a.out:
        Path(a.out).write_text(text + "\n", encoding="utf-8")
    for s, e in result["settings"].items():
        extra = (f", F1 gain {e['f1_gain_vs_baseline'][0]:+.3f} [{e['f1_gain_vs_baseline'][1]:+.3f}, "
                 f"{e['f1_gain_vs_baseline'][2]:+.3f}], p50 {e['p50_ratio_vs_baseline']:.2f}x"
                 if "p50_ratio_vs_baseline" in e and e["f1_gain_vs_baseline"] else "")
        print(f"sentences={s}: F1 {e['f1']:.3f} EM {e['em']:.3f} p50 {e['p50_s']:.1f} s, "
              f"{e['prompt_tokens']:.0f} prompt tokens{extra}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
