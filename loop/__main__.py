"""``python -m loop``: documents -> synthesised Q&A -> QLoRA adapter -> measured gain.

Examples:
    # everything, in order (finished stages are skipped on the next run)
    python -m loop data/sample --out runs/loop
    python -m loop data/sample --out runs/loop --params params.yaml finetune.max_steps=200 eval.limit=100

    # a teacher LLM writes the training answers (RAFT-style, filtered, cached in OUT/teacher_cache.jsonl)
    python -m loop data/sample --out runs/loop --teacher qwen2.5-coder-1.5b

    # one stage (what dvc.yaml calls; `dvc repro` re-runs only what changed)
    python -m loop --stage finetune --params params.yaml

``python -m finetune.loop`` is the same command under its earlier name.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from loop.params import ALL_STAGES


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m loop", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Documents -> synthesised Q&A -> QLoRA adapter -> measured gain (stages: "
                    + ", ".join(ALL_STAGES) + "; teach only with a teacher).",
        epilog="example:\n  python -m loop data/sample --out runs/loop --params params.yaml "
               "finetune.max_steps=50 eval.limit=40\n\nkey=value overrides use dotted keys "
               "(section.key); see params.yaml for every key.")
    p.add_argument("docs", nargs="?", metavar="DOCS", help="Folder or file to ingest (default: `docs` in --params).")
    p.add_argument("--out", metavar="DIR", help="Pipeline folder (default: `out` in --params).")
    p.add_argument("--params", metavar="YAML", help="Parameters file, e.g. params.yaml.")
    p.add_argument("--stage", choices=ALL_STAGES, help="Run this stage only (its predecessors must be finished).")
    p.add_argument("--teacher", metavar="SPEC", help="Teacher LLM for the training answers: a catalogue name "
                   "(qwen2.5-coder-1.5b), gguf:PATH, hf:ID or openai:MODEL (= teacher.model=SPEC).")
    p.add_argument("--force", action="store_true", help="Re-run the stages even when their markers match.")
    p.add_argument("--json", action="store_true", help="Print the result as one JSON object.")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. finetune.max_steps=50 retrieval.k=2")
    return p


def _print_summary(result: dict[str, Any], stage: str | None) -> None:
    print(" ".join(f"{k}:{v}" for k, v in result["stages"].items()))
    m = result["metrics"]
    if not m or stage not in (None, "eval"):
        return
    for side in ("base", "adapter"):
        em, f1 = m[side]["em"], m[side]["f1"]
        print(f"{side:<8} EM {em['mean']:.3f} [{em['ci_low']:.3f}, {em['ci_high']:.3f}]  "
              f"F1 {f1['mean']:.3f} [{f1['ci_low']:.3f}, {f1['ci_high']:.3f}]")
    g = m["gain"]["f1"]
    print(f"F1 gain {g['mean']:+.3f} [{g['ci_low']:+.3f}, {g['ci_high']:+.3f}] on {m['n']} questions; "
          f"hit@5 {m['retrieval']['hit@5']['mean']}; generator {m['generator']}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_intermixed_args(argv)
    # "DOCS key=value" and "key=value" alone both parse: a DOCS containing '=' is an override.
    if args.docs and "=" in args.docs and not Path(args.docs).exists():
        args.overrides.insert(0, args.docs)
        args.docs = None
    from loop.params import load_params
    from loop.pipeline import run
    from rag.errors import ConfigError, RagtuneError
    from rag.settings import load_settings

    try:
        overrides = [*args.overrides, f"teacher.model={args.teacher}"] if args.teacher else args.overrides
        params = load_params(args.params, overrides, docs=args.docs, out=args.out)
        result = run(params, load_settings(), only=args.stage, force=args.force)
    except (RagtuneError, FileNotFoundError) as e:
        if os.environ.get("RAGTUNE_DEBUG") == "1":
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2 if isinstance(e, ConfigError) else 1  # a bad parameter is a usage error
    if args.json:
        print(json.dumps(result, default=str))
    else:
        _print_summary(result, args.stage)
    return 0


if __name__ == "__main__":
    sys.exit(main())
