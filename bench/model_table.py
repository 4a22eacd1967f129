"""One table per catalogue model: answer quality from `python -m eval` runs, speed from `models bench`.

    python -m bench.model_table NAME=EVAL_OUT_DIR[,EVAL_OUT_DIR...] ... [--models-dir DIR] [--out FILE.md]

Each ``EVAL_OUT_DIR`` is the ``--out`` folder of ``python -m eval DATASET --llm SPEC --out DIR``
(bench/squad_to_eval.py builds the datasets from the shared SQuAD set). Several folders for one
model are pooled (a long run split into parts so a killed part loses only itself); a question id
seen twice counts once. EM and F1 are scored again from each row's prediction (:func:`rescore`).
Everything is computed from the rows (``rows.jsonl``: each row's
``metrics``): answer F1 and EM with percentile-bootstrap 95% intervals (eval's own
``bootstrap_ci``, seed 0), the share of answers with a valid ``[n]`` (``cited``), the part of those
the chain attributed itself (``attributed``), the unsupported-citation rate, answers that still
hold a repeated sentence, and p50/p90 seconds per question. From ``<models_dir>/measured.json``
(``python -m rag models bench NAME``, where NAME is a catalogue name): decode tokens/s, prompt
tokens/s, the bench prompt's time to first token (a ~410-token prompt; a five-passage chain prompt
is ~1,400 tokens, so p50 is the figure for a question) and peak RSS
(other rows show "-"). ``--common`` scores every model on the questions all runs
share (e.g. a slow model run on a seeded subset: ``squad_to_eval.py --n 100`` picks a subset of
``--n 300``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path


def _quantile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def load_rows(folders: list[Path]) -> list[dict]:
    """The rows of every folder, each question id once (the first folder that has it wins)."""
    seen: set = set()
    rows: list[dict] = []
    for folder in folders:
        for line in (folder / "rows.jsonl").read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            r = json.loads(line)
            key = r.get("id")
            if key is not None and key in seen:
                continue
            seen.add(key)
            rows.append(r)
    return rows


def rescore(rows: list[dict]) -> list[dict]:
    """EM and F1 again from each row's prediction and references with today's
    ``eval.metrics.answer_scores`` (citation markers removed), so runs written before a metric change
    compare on the same metric."""
    from eval.metrics import answer_scores

    out = []
    for r in rows:
        if r.get("prediction") is not None and r.get("references"):
            r = {**r, "metrics": {**(r.get("metrics") or {}), **answer_scores(r["prediction"], r["references"])}}
        out.append(r)
    return out


def _metric(rows: list[dict], name: str) -> list:
    return [(r.get("metrics") or {}).get(name) for r in rows]


def _ci(rows: list[dict], name: str) -> str:
    from eval.metrics import bootstrap_ci, mean

    vals = _metric(rows, name)
    m = mean(vals)
    if m is None:
        return "-"
    lo, hi = bootstrap_ci(vals, seed=0)
    return f"{m:.3f} ({lo:.3f}-{hi:.3f})"


def _share(rows: list[dict], name: str) -> str:
    from eval.metrics import mean

    m = mean(_metric(rows, name))
    return "-" if m is None else f"{m:.3f}"


def repeated(rows: list[dict]) -> int:
    """Answers that still hold a sentence said twice (the chain's guard should leave none)."""
    from rag.repetition import strip_repeats

    return sum(strip_repeats(r.get("prediction") or "")[1] for r in rows)


def row(name: str, rows: list[dict], measured: dict) -> dict:
    lat = [x for x in _metric(rows, "latency_s") if x is not None]
    speed = measured.get(name, {})
    return {"name": name, "n": len(rows), "f1": _ci(rows, "f1"), "em": _ci(rows, "em"),
            "cited": _ci(rows, "cited"), "attributed": _share(rows, "attributed"),
            "unsupported": _share(rows, "unsupported"), "repeated": repeated(rows),
            "p50_s": statistics.median(lat) if lat else None, "p90_s": _quantile(lat, 0.9) if lat else None,
            "tokens_per_s": speed.get("tokens_per_s"), "ttft_s": speed.get("ttft_s"),
            "prompt_tps": speed.get("prompt_tokens_per_s"),
            "rss_mb": speed.get("peak_rss_mb"), "threads": speed.get("threads")}


def render(rows: list[dict]) -> str:
    def f(x, nd=1):
        return "-" if x is None else f"{x:.{nd}f}"

    lines = [("| model | questions | answer F1 | EM | cited | of which attributed | unsupported | repeated | "
              "p50 s/question | p90 | tokens/s | prompt tokens/s | bench first token s | peak RSS MB |"),
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['n']} | {r['f1']} | {r['em']} | {r['cited']} | {r['attributed']} | "
                     f"{r['unsupported']} | {r['repeated']} | {f(r['p50_s'])} | {f(r['p90_s'])} | "
                     f"{f(r['tokens_per_s'])} | {f(r['prompt_tps'], 0)} | {f(r['ttft_s'], 2)} | {f(r['rss_mb'], 0)} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", metavar="NAME=EVAL_OUT_DIR[,EVAL_OUT_DIR...]")
    p.add_argument("--models-dir", type=Path, default=Path("~/.cache/ragtune/models").expanduser())
    p.add_argument("--out", type=Path)
    p.add_argument("--common", action="store_true",
                   help="score every model on only the questions all of them answered (runs of different sizes)")
    a = p.parse_args(argv)
    from rag.model_speed import load

    measured = load(a.models_dir)
    runs = []
    for spec in a.runs:
        name, sep, folders = spec.partition("=")
        dirs = [Path(x) for x in folders.split(",") if x]
        missing = [str(d) for d in dirs if not (d / "rows.jsonl").is_file()]
        if not sep or not dirs or missing:
            print(f"error: '{spec}': expected NAME=DIR[,DIR...] where each DIR holds an eval rows.jsonl "
                  f"(python -m eval ... --out DIR){'; missing: ' + ', '.join(missing) if missing else ''}",
                  file=sys.stderr)
            return 2
        runs.append((name, rescore(load_rows(dirs))))
    if a.common:
        shared = set.intersection(*({r.get("id") for r in rows} for _, rows in runs))
        runs = [(name, [r for r in rows if r.get("id") in shared]) for name, rows in runs]
    text = render([row(name, rows, measured) for name, rows in runs])
    print(text)
    if a.out:
        a.out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
