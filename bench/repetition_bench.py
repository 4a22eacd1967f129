"""Choose ``llm.repeat_penalty`` by measurement: answer quality and loops per penalty, one run.

    python -m bench.repetition_bench --n 30                 # JSON on stdout, table on stderr
    python -m bench.repetition_bench --spec gguf:PATH --penalties 1.0,1.1

Each SQuAD question (../shared/data/squad) goes through the real chain with its gold paragraph
and four other paragraphs of the same article as the five retrieved passages (retrieval is
measured elsewhere; this isolates generation). Penalties are interleaved per question so a busy
machine slows them alike, in a rotating order (llama.cpp's prompt cache speeds up whichever runs
second on the same prompt). Per penalty: answer F1 and EM (citation markers removed), citation
rate (answers with a valid [n]), the share of answers the repetition guard had to cut, mean
answer tokens and seconds per answer. The demo question over data/sample runs too.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SQUAD = ROOT.parent / "shared" / "data" / "squad"
_CITE = re.compile(r"\[\s*\d+(?:\s*[,;-]\s*\d+)*\s*\]")


def questions(n: int) -> list[tuple[dict, list[dict]]]:
    """``n`` questions spread over the articles, each with its five passages (gold first)."""
    paras = [json.loads(x) for x in (SQUAD / "paragraphs.jsonl").read_text().splitlines() if x.strip()]
    by_id = {p["context_id"]: p for p in paras}
    by_source: dict[str, list[dict]] = defaultdict(list)
    for p in paras:
        by_source[p["source"]].append(p)
    rows = [json.loads(x) for x in (SQUAD / "qa.jsonl").read_text().splitlines() if x.strip()]
    step = max(1, len(rows) // n)
    out = []
    for row in rows[::step][:n]:
        gold = by_id[row["context_id"]]
        others = [p for p in by_source[gold["source"]] if p["context_id"] != gold["context_id"]]
        i = others.index(min(others, key=lambda p: abs(p["start_page"] - gold["start_page"])))
        out.append((row, [gold] + others[max(0, i - 2):][:4]))
    return out


def run(spec: str, penalties: list[float], n: int, max_new_tokens: int, threads: int, log=print) -> dict:
    from eval.metrics import answer_scores
    from rag import chain
    from rag.llms import open_llm
    from rag.settings import Settings
    from rag.types import Hit

    settings = Settings(data_dir=Path.home() / ".cache" / "ragtune-bench" / "rep",
                        llm={"threads": threads, "max_new_tokens": max_new_tokens})
    llm = open_llm(spec, settings)
    stats: dict[float, dict[str, list[float]]] = {p: defaultdict(list) for p in penalties}
    qs = questions(n)
    for qi, (row, passages) in enumerate(qs):
        hits = [Hit(p["context_id"], p["text"], p["source"], p["start_page"], 1.0 - 0.1 * j)
                for j, p in enumerate(passages)]
        # Rotate the order: the first call on a new prompt pays llama.cpp's prefill, the next ones
        # reuse its prompt cache, so a fixed order would bias the seconds column.
        for p in penalties[qi % len(penalties):] + penalties[:qi % len(penalties)]:
            t0 = time.perf_counter()
            a = chain.answer(row["question"], retrieve=lambda q, h=hits: h, llm=llm, settings=settings,
                             repeat_penalty=p, max_new_tokens=max_new_tokens)
            s = stats[p]
            s["seconds"].append(time.perf_counter() - t0)
            scores = answer_scores(_CITE.sub(" ", a.text), row["answer"])
            s["f1"].append(scores["f1"])
            s["em"].append(scores["em"])
            s["cited"].append(1.0 if a.citations else 0.0)
            s["repetition"].append(1.0 if "repetition" in a.flags else 0.0)
            s["tokens"].append(a.tokens.get("completion", 0))
        log(f"  {qi + 1}/{len(qs)}", file=sys.stderr)
    table = {str(p): {k: round(sum(v) / len(v), 4) for k, v in s.items()} for p, s in stats.items()}
    return {"spec": spec or "default (packaged SmolLM2)", "n": len(qs), "max_new_tokens": max_new_tokens,
            "threads": threads, "by_penalty": table}


def demo(spec: str, penalties: list[float], threads: int) -> dict:
    """The README demo's question over data/sample, per penalty: the answer and its flags."""
    import tempfile

    from rag.api import RAG

    out = {}
    with tempfile.TemporaryDirectory() as tmp, RAG(data_dir=tmp, llm=spec, llm__threads=threads) as rag:
        rag.ingest([ROOT / "data" / "sample"])
        for p in penalties:
            a = rag.ask("How much does the Acme Widget weigh?", repeat_penalty=p)
            out[str(p)] = {"answer": a.text, "flags": a.flags, "citations": a.citations}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--spec", default="", help="LLM spec (default: the packaged SmolLM2)")
    p.add_argument("--penalties", default="1.0,1.1,1.2,1.3")
    p.add_argument("--n", type=int, default=30, help="SQuAD questions")
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    if not SQUAD.exists():
        print(f"error: {SQUAD} not found (the shared data sits beside the repository)", file=sys.stderr)
        return 1
    penalties = [float(x) for x in a.penalties.split(",")]
    result = run(a.spec, penalties, a.n, a.max_new_tokens, a.threads, log=print)
    result["demo"] = demo(a.spec, penalties, a.threads)
    print(f"{'penalty':>8} {'F1':>6} {'EM':>6} {'cited':>6} {'cut':>6} {'tokens':>7} {'s/answer':>9}", file=sys.stderr)
    for pen, row in result["by_penalty"].items():
        print(f"{pen:>8} {row['f1']:6.3f} {row['em']:6.3f} {row['cited']:6.2f} {row['repetition']:6.2f} "
              f"{row['tokens']:7.1f} {row['seconds']:9.2f}", file=sys.stderr)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
