"""Turn the SQuAD reference set in shared/data/squad into an ``eval`` dataset with page ranges.

    .venv/bin/python bench/squad_to_eval.py --n 500 --out /tmp/squad500.jsonl
    .venv/bin/python -m eval /tmp/squad500.jsonl --data-dir /tmp/squad-eval \\
        --ingest ../shared/data/squad --retrieval dense --retrieval bm25 --retrieval hybrid

``qa.jsonl`` names only the page where a question's paragraph starts; 78 of the 530 paragraphs
run over a page break, so each source gets ``pages`` from ``paragraphs.jsonl`` (by
``context_id``) and a retrieved chunk on any of them counts as a hit. ``--n`` takes a seeded
random sample spread over all ten articles (0 = every question, 3,036).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

DEFAULT_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "squad"


def convert(squad_dir: Path, n: int = 0, seed: int = 0) -> list[dict]:
    paragraphs = {}
    with (squad_dir / "paragraphs.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            p = json.loads(line)
            paragraphs[p["context_id"]] = p
    rows = []
    with (squad_dir / "qa.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            q = json.loads(line)
            para = paragraphs[q["context_id"]]
            sources = [{"source": s["source"], "page": s["page"], "pages": list(para["pages"])} for s in q["sources"]]
            rows.append({"id": q["id"], "question": q["question"], "answer": list(dict.fromkeys(q["answer"])),
                         "sources": sources, "context_id": q["context_id"]})
    if n and n < len(rows):
        keep = sorted(random.Random(seed).sample(range(len(rows)), n))
        rows = [rows[i] for i in keep]
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--squad-dir", type=Path, default=DEFAULT_DIR, help=f"default: {DEFAULT_DIR}")
    ap.add_argument("--n", type=int, default=500, help="questions to sample (0 = all; default 500)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, help="output JSONL (default: stdout)")
    args = ap.parse_args(argv)
    rows = convert(args.squad_dir, args.n, args.seed)
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    if args.out:
        args.out.write_text(text, encoding="utf-8")
        print(f"{args.out}: {len(rows)} questions", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
