"""One table per catalogue model: answer quality from `python -m eval` runs, speed from `models bench`.

    python -m bench.model_table NAME=EVAL_OUT_DIR [NAME=EVAL_OUT_DIR ...] [--models-dir DIR] [--out FILE.md]

Each ``EVAL_OUT_DIR`` is the ``--out`` folder of ``python -m eval DATASET --llm SPEC --out DIR`` over
the same questions (bench/squad_to_eval.py builds them from the shared SQuAD set). Quality columns
(answer F1 and EM with their bootstrap intervals, citation rate, unsupported-citation rate) come
from its ``summary.json``; p50/p90 seconds per question from its ``rows.jsonl``; tokens/s, time to
first token and peak RSS from ``<models_dir>/measured.json`` (``python -m rag models bench NAME``),
where NAME is a catalogue name (other rows show "-").
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path


def _ci(cfg: dict, metric: str) -> str:
    value = cfg["metrics"].get(metric)
    if value is None:
        return "-"
    lo_hi = (cfg.get("ci") or {}).get(metric)
    return f"{value:.3f} ({lo_hi[0]:.3f}-{lo_hi[1]:.3f})" if lo_hi else f"{value:.3f}"


def _quantile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def row(name: str, out_dir: Path, measured: dict) -> dict:
    cfg = json.loads((out_dir / "summary.json").read_text(encoding="utf-8"))["configs"][0]
    lat = [json.loads(line).get("latency_s") for line in (out_dir / "rows.jsonl").read_text(encoding="utf-8").splitlines()
           if line.strip()]
    lat = [x for x in lat if x is not None]
    speed = measured.get(name, {})
    return {"name": name, "llm": cfg.get("llm"), "n": cfg.get("n"), "f1": _ci(cfg, "f1"), "em": _ci(cfg, "em"),
            "cited": _ci(cfg, "cited"), "unsupported": _ci(cfg, "unsupported"),
            "p50_s": statistics.median(lat) if lat else None, "p90_s": _quantile(lat, 0.9) if lat else None,
            "tokens_per_s": speed.get("tokens_per_s"), "ttft_s": speed.get("ttft_s"),
            "rss_mb": speed.get("peak_rss_mb"), "threads": speed.get("threads")}


def render(rows: list[dict]) -> str:
    def f(x, nd=1):
        return "-" if x is None else f"{x:.{nd}f}"

    lines = [("| model | questions | answer F1 | EM | cited | unsupported citations | p50 s/question | p90 | "
              "tokens/s | time to first token s | peak RSS MB |"),
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['n']} | {r['f1']} | {r['em']} | {r['cited']} | {r['unsupported']} | "
                     f"{f(r['p50_s'])} | {f(r['p90_s'])} | {f(r['tokens_per_s'])} | {f(r['ttft_s'], 2)} | "
                     f"{f(r['rss_mb'], 0)} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", metavar="NAME=EVAL_OUT_DIR")
    p.add_argument("--models-dir", type=Path, default=Path("~/.cache/ragtune/models").expanduser())
    p.add_argument("--out", type=Path)
    a = p.parse_args(argv)
    from rag.model_speed import load

    measured = load(a.models_dir)
    rows = []
    for spec in a.runs:
        name, sep, folder = spec.partition("=")
        if not sep or not (Path(folder) / "summary.json").is_file():
            print(f"error: '{spec}': expected NAME=DIR where DIR holds an eval summary.json", file=sys.stderr)
            return 2
        rows.append(row(name, Path(folder), measured))
    text = render(rows)
    print(text)
    if a.out:
        a.out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
