"""Evaluate retrieval and answers over a reference set, comparing configurations side by side.

Examples:

    # retrieval bake-off (no LLM: fast), on the sample documents
    python -m ingest data/sample
    python -m eval data/eval/sample.jsonl --retrieval dense --retrieval bm25 --retrieval hybrid

    # the same in one go, into a fresh data dir, with files, a CI gate and the winner saved
    python -m eval data/eval/sample.jsonl --data-dir /tmp/ev --ingest data/sample \\
        --retrieval dense --retrieval bm25 --retrieval hybrid --out runs/eval \\
        --fail-under hit@5=0.8 --save-best ragtune.toml

    # full answers: the packaged model against a fine-tuned adapter, hybrid retrieval
    python -m eval data/eval/sample.jsonl --llm default --llm hf:HuggingFaceTB/SmolLM2-135M-Instruct+adapter:runs/qlora \\
        --retrieval hybrid --json

    # a local judge grading the answers (correctness, with the references shown; groundedness)
    python -m eval data/eval/sample.jsonl --llm default --judge qwen2.5-coder-1.5b --json

Configurations are the cross product of --llm and --retrieval (or the entries of --grid FILE).
Without --llm only retrieval is scored: hit@1/3/5/10, MRR@10, recall@k and answer recall (a
reference answer occurs in the top-k passages). With --llm the answers are also scored: exact
match and token F1 (SQuAD normalisation), ROUGE-L, semantic similarity (cosine in the configured
embedder), lexical groundedness, latency and tokens generated; --judge MODEL adds a local LLM's
verdicts on correctness and groundedness. Means come with seeded 95% bootstrap intervals. Exit status: 0 ok, 1 a --fail-under threshold was missed or an error, 2 usage.
"""

from __future__ import annotations

import argparse
import re
import sys
from functools import partial
from typing import Any

from rag.cli import ArgumentParser, add_common, guarded, print_json, settings_from
from rag.types import MODES

KNOWN_METRICS = ("em", "f1", "rougeL", "semantic", "mrr", "recall@k", "answer_recall", "groundedness_lexical",
                 "judge_correct", "judge_grounded", "judge_kappa_f1", "latency_s", "retrieval_s", "generation_s", "tokens_generated")
_HIT = re.compile(r"^hit@\d+$")


def parse_threshold(text: str) -> tuple[str, float]:
    """``'hit@5=0.6'`` -> ``('hit@5', 0.6)``; raises ``argparse.ArgumentTypeError`` naming what is accepted."""
    metric, sep, value = text.rpartition("=")
    metric = metric.strip()
    if not sep or not metric:
        raise argparse.ArgumentTypeError(f"expected METRIC=VALUE, e.g. hit@5=0.6, got '{text}'")
    if metric not in KNOWN_METRICS and not _HIT.match(metric):
        raise argparse.ArgumentTypeError(f"unknown metric '{metric}' (known: {', '.join(KNOWN_METRICS)}, hit@N)")
    try:
        return metric, float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"threshold for {metric} must be a number, got '{value}'") from None


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got '{text}'") from None
    if n <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {n}")
    return n


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="python -m eval", description=__doc__.split("\n\n")[0],
                                epilog="example: python -m eval data/eval/sample.jsonl --retrieval dense "
                                       "--retrieval hybrid --out runs/eval",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dataset", metavar="DATASET.jsonl", help="reference set: JSON lines with question, answer, sources")
    p.add_argument("--llm", action="append", metavar="SPEC",
                   help="LLM spec to answer with (repeatable; 'default' = the first installed of "
                        "qwen2.5-coder-0.5b, smollm2-135m: python -m rag models list); none = retrieval only")
    p.add_argument("--retrieval", action="append", metavar="MODE", choices=MODES,
                   help=f"retrieval mode (repeatable): {', '.join(MODES)} (default: the configured one)")
    p.add_argument("--k", type=_positive, metavar="N", help="passages per question (default: retrieval.k)")
    p.add_argument("--grid", metavar="FILE", help="TOML/YAML file listing configurations (see eval/harness.py)")
    p.add_argument("--limit", type=_positive, metavar="N", help="only the first N questions")
    p.add_argument("--ingest", action="append", metavar="PATH", help="ingest PATH into the store first (repeatable)")
    p.add_argument("--out", metavar="DIR", help="write rows.jsonl, summary.json, report.md and plots here")
    p.add_argument("--fail-under", action="append", type=parse_threshold, default=[], metavar="METRIC=VALUE",
                   help="exit 1 when any configuration scores below VALUE on METRIC (repeatable)")
    p.add_argument("--save-best", metavar="FILE",
                   help="write the winning retrieval mode into this settings file (retrieval.mode)")
    p.add_argument("--rank-by", metavar="METRIC",
                   help="metric that picks the winner for --save-best (default: f1 with --llm, else mrr)")
    p.add_argument("--judge", metavar="SPEC",
                   help="LLM spec or catalogue name grading each answer's correctness and groundedness "
                        "(adds judge_correct, judge_grounded, judge_unparsed, judge_kappa_f1; see eval/judge.py)")
    p.add_argument("--track", action="store_true", help="log runs to MLflow (also when tracking_uri is set)")
    p.add_argument("--bootstrap", type=int, default=1000, metavar="N", help="bootstrap resamples for CIs (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="ray: fan the questions out over a Ray cluster (same metrics; eval/distributed.py)")
    p.add_argument("--ray-address", metavar="ADDRESS", help="Ray cluster for --engine ray (default: RAY_ADDRESS, "
                                                           "else a local Ray)")
    add_common(p)
    return p


def _winner(results: list[Any], metric: str, n_boot: int, seed: int) -> tuple[Any, str]:
    """The best configuration on ``metric`` and a sentence saying by how much it won."""
    from eval import metrics as M
    from eval.report import LOWER_IS_BETTER

    scored = [r for r in results if r.metrics.get(metric) is not None]
    if not scored:
        from rag.errors import ConfigError

        raise ConfigError(f"--rank-by {metric}: no configuration has this metric "
                          f"(available: {', '.join(k for k, v in results[0].metrics.items() if v is not None)})")
    sign = -1 if metric in LOWER_IS_BETTER else 1
    ranked = sorted(scored, key=lambda r: -sign * r.metrics[metric])
    best = ranked[0]
    if len(ranked) == 1:
        return best, f"{metric} {best.metrics[metric]:.3f} (no other configuration to compare)"
    second = ranked[1]
    if best.metrics[metric] == second.metrics[metric]:
        return best, (f"{metric} {best.metrics[metric]:.3f}, tied with '{second.config.name}' "
                      "(kept the one listed first)")
    diff = M.paired_bootstrap_diff(best.values(metric), second.values(metric), n_boot=n_boot, seed=seed)
    text = (f"{metric} {best.metrics[metric]:.3f} vs {second.metrics[metric]:.3f} for '{second.config.name}' "
            f"({best.metrics[metric] - second.metrics[metric]:+.3f}")
    if diff:
        _, lo, hi = diff
        verdict = "" if (lo > 0 or hi < 0) else "; not significant"
        text += f", 95% CI of the paired difference {lo:+.3f}..{hi:+.3f}{verdict}"
    return best, text + ")"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    log = lambda s: print(s, file=sys.stderr, flush=True)

    def run() -> int:
        from eval import harness, report
        from eval.dataset import load_dataset

        settings = settings_from(args, **{"retrieval.k": args.k})
        k = settings.retrieval.k
        examples = load_dataset(args.dataset, limit=args.limit)
        if args.grid:
            configs = harness.load_grid(args.grid, k=k, default_mode=settings.retrieval.mode)
            bad = [c.retrieval for c in configs if c.retrieval not in MODES]
            if bad:
                from rag.errors import ConfigError

                raise ConfigError(f"{args.grid}: unknown retrieval mode(s) {', '.join(sorted(set(bad)))} "
                                  f"(known: {', '.join(MODES)})")
        else:
            configs = harness.build_configs(args.llm, args.retrieval, k=k, default_mode=settings.retrieval.mode)
        if args.ingest:
            from rag import RAG

            with RAG(settings=settings) as rag:
                res = rag.ingest(args.ingest)
            s = res.summary()
            log(f"ingest: {s['added']} added, {s['updated']} updated, {s['unchanged']} unchanged, "
                f"{s['removed']} removed, {len(s['failed'])} failed, {s['chunks']} chunks, {s['seconds']:.1f}s")
        if args.engine == "ray":
            from eval.distributed import evaluate as run_eval

            run_eval = partial(run_eval, address=args.ray_address)
        else:
            run_eval = harness.evaluate
        results = run_eval(examples, configs, settings, judge=args.judge, n_boot=args.bootstrap, seed=args.seed,
                           log=log)
        meta = {"dataset": str(args.dataset), "questions": len(examples), "store": _safe(settings.store_uri),
                "embedder": settings.embedder, "bootstrap": args.bootstrap, "seed": args.seed}
        extra: dict[str, Any] = {}

        if args.out:
            paths = report.write_outputs(args.out, results, meta)
            log(f"wrote {', '.join(str(p) for p in paths)}")
        if args.track or settings.tracking_uri:
            from eval.tracking import log_results

            ids = log_results(results, settings, dataset=str(args.dataset), out=args.out)
            log(f"mlflow: logged {len(ids)} run(s) to experiment 'ragtune-eval'")
        if args.save_best:
            from rag.settings import save_setting

            metric = args.rank_by or ("f1" if any(c.full for c in configs) else "mrr")
            best, how = _winner(results, metric, args.bootstrap, args.seed)
            save_setting(args.save_best, "retrieval.mode", best.config.retrieval)
            log(f"best: '{best.config.name}' on {how}; saved retrieval.mode = '{best.config.retrieval}' "
                f"to {args.save_best}")
            extra["best"] = {"name": best.config.name, "retrieval": best.config.retrieval, "metric": metric,
                             "summary": how, "saved_to": str(args.save_best)}
        failures = []
        for metric, threshold in args.fail_under:
            for r in results:
                value = r.metrics.get(metric)
                if value is None:
                    failures.append(f"{metric} was not computed for '{r.config.name}' (threshold {threshold:g})")
                elif value < threshold:
                    failures.append(f"{metric} = {value:.3f} < {threshold:g} for '{r.config.name}'")
        if args.fail_under:
            extra["fail_under"] = {"thresholds": {m: v for m, v in args.fail_under}, "failures": failures,
                                   "passed": not failures}
        if args.json:
            print_json(report.summary(results, **extra))
        else:
            print(report.format_table(results))
            for r in results:
                for w in r.warnings:
                    log(f"warning [{r.config.name}]: {w}")
        for f in failures:
            log(f"fail-under: {f}")
        return 1 if failures else 0

    return guarded(run)


def _safe(uri: str) -> str:
    from rag.errors import redact

    return redact(uri)


if __name__ == "__main__":
    raise SystemExit(main())
