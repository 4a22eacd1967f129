"""Stage ``eval``: the base model and base + adapter in the same chain, on the same passages.

Passages are retrieved once per test question (depth max(5, k)) and both models get the same top k
in the same prompt through :func:`rag.chain.answer`, ``hf:BASE`` vs ``hf:BASE+adapter:OUT/adapter``.
``[n]`` markers are removed before EM/F1. Means carry 95% bootstrap intervals; ``gain`` is the paired
bootstrap of adapter minus base. ``OUT/metrics.json`` holds the figures, ``OUT/eval_rows.jsonl`` every
answer, ``OUT/registry.json`` what MLflow did with the adapter's registry version.
"""

from __future__ import annotations

import json
import time
from typing import Any

from loop.params import LoopParams
from loop.stages import Context, open_rag
from loop.stages.split import match_doc
from loop.workdir import Paths, log, read_rows, write_rows
from rag.errors import DataError


def _test_examples(params: LoopParams, paths: Paths) -> tuple[list[Any], int]:
    """The test split as eval Examples (or ``eval.dataset``), and how many come from trained-on documents."""
    from eval.dataset import Example, Reference, load_dataset

    limit = params.eval.limit or None
    if params.eval.dataset:
        examples = load_dataset(params.eval.dataset, limit=limit)
    else:
        rows = read_rows(paths.split / "test.jsonl")[:limit]
        examples = [Example(r["id"], r["question"], [r["answer"]], [Reference(r["source"], int(r["page"] or 0))])
                    for r in rows]
    seen = json.loads((paths.split / "split.json").read_text())
    trained = seen["train"]["documents"] + seen["val"]["documents"]
    leaked = sum(1 for ex in examples if any(match_doc(s.source, trained) for s in ex.sources))
    return examples, leaked


def _answer_rows(params: LoopParams, paths: Paths, ctx: Context, examples: list[Any],
                 specs: dict[str, str]) -> list[dict[str, Any]]:
    """One row per question: references, retrieved pages, each model's answer and scores."""
    from eval import metrics as M
    from rag import chain
    from rag.llms import open_llm

    k, mode = params.retrieval.k, params.retrieval.mode
    rows: list[dict[str, Any]] = []
    with open_rag(params, paths, ctx.settings) as rag:
        retrieved = [rag.retrieve(ex.question, k=max(5, k), mode=mode) for ex in examples]
        for ex, hits in zip(examples, retrieved):
            rows.append({"id": ex.id, "question": ex.question, "references": ex.answers,
                         "sources": [{"source": s.source, "page": s.page} for s in ex.sources],
                         "retrieved": [{"source": h.source, "page": h.page} for h in hits[:5]],
                         "metrics": {"hit@5": M.retrieval_scores(hits, ex.sources, k)["hit@5"]}})
        for name, spec in specs.items():
            llm = open_llm(spec, rag.settings)
            t0 = time.perf_counter()
            for i, (ex, hits, row) in enumerate(zip(examples, retrieved, rows), 1):
                ans = chain.answer(ex.question, retrieve=lambda _q, h=hits: h[:k], llm=llm, settings=rag.settings)
                s = M.answer_scores(ans.text, ex.answers)  # markers removed there
                row[name] = ans.text
                row["metrics"][f"{name}_em"], row["metrics"][f"{name}_f1"] = s["em"], s["f1"]
                if i % 25 == 0:
                    log(f"eval {name}: {i}/{len(examples)} ({(time.perf_counter() - t0) / i:.1f} s/question)")
            log(f"eval {name}: {len(examples)} questions in {time.perf_counter() - t0:.0f} s")
            del llm
    return rows


def _with_intervals(rows: list[dict[str, Any]], n_boot: int, seed: int) -> dict[str, Any]:
    """Means with bootstrap CIs per side, and the paired adapter - base difference."""
    from eval import metrics as M

    def stat(metric: str) -> dict[str, float | None]:
        vals = [r["metrics"][metric] for r in rows]
        ci = M.bootstrap_ci(vals, n_boot=n_boot, seed=seed)
        return {"mean": M.mean(vals), "ci_low": ci[0] if ci else None, "ci_high": ci[1] if ci else None}

    def diff(metric: str) -> dict[str, float | None]:
        d = M.paired_bootstrap_diff([r["metrics"][f"adapter_{metric}"] for r in rows],
                                    [r["metrics"][f"base_{metric}"] for r in rows], n_boot=n_boot, seed=seed)
        return {"mean": d[0], "ci_low": d[1], "ci_high": d[2]} if d else {"mean": None, "ci_low": None,
                                                                          "ci_high": None}

    return {"base": {"em": stat("base_em"), "f1": stat("base_f1")},
            "adapter": {"em": stat("adapter_em"), "f1": stat("adapter_f1")},
            "gain": {"em": diff("em"), "f1": diff("f1")},
            "retrieval": {"hit@5": stat("hit@5")}}


def run(params: LoopParams, paths: Paths, ctx: Context) -> dict[str, Any]:
    ep, k = params.eval, params.retrieval.k
    examples, leaked = _test_examples(params, paths)
    if not examples:
        raise DataError("no test questions: the test documents yielded none (add documents or set split.test_docs)")
    if leaked:
        log(f"warning: {leaked} test question(s) come from documents used in training")
    base = str(params.finetune.get("base") or "smollm2")
    base_spec = "hf:" + base.removeprefix("hf:")
    rows = _answer_rows(params, paths, ctx, examples,
                        {"base": base_spec, "adapter": f"{base_spec}+adapter:{paths.adapter.resolve()}"})
    report = json.loads(paths.synth_report.read_text())
    metrics = {
        "n": len(rows), "k": k, "retrieval_mode": params.retrieval.mode, "generator": report["generator"],
        "test_source": "dataset" if ep.dataset else "synthesised test split", "leaked_questions": leaked,
        **_with_intervals(rows, ep.bootstrap, ep.seed),
        "specs": {"base": base_spec, "adapter": f"{base_spec}+adapter:{paths.adapter}"},
        "synth": {"kept": report["kept"], "dropped": sum(report["dropped"].values())},
    }
    write_rows(paths.eval_rows, rows)
    paths.metrics.write_text(json.dumps(metrics, indent=2))
    registry: dict[str, Any] = {"registered": False}
    if ctx.tracker:
        registry = ctx.tracker.finish_eval(metrics, paths)
    paths.registry.write_text(json.dumps(registry, indent=2))
    g = metrics["gain"]["f1"]
    log(f"F1 base {metrics['base']['f1']['mean']:.3f} -> adapter {metrics['adapter']['f1']['mean']:.3f} "
        f"(gain {g['mean']:+.3f}, 95% CI [{g['ci_low']:+.3f}, {g['ci_high']:+.3f}]), "
        f"hit@5 {metrics['retrieval']['hit@5']['mean']}")
    return {"n": len(rows), "f1_gain": g["mean"], "champion": registry.get("champion")}
