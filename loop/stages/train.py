"""Stage ``finetune``: training rows in the chain's own prompt, then the QLoRA recipe on them.

Each train / val question is retrieved like a real query (``retrieval.k``, ``retrieval.mode``);
when its golden passage is not in the top k it replaces the last one at a seeded position (RAFT:
the answer's passage among real distractors). The rows use :func:`rag.chain.build_messages`, so
the model trains on the exact prompt it answers in, and the target is ``span [n]``. The adapter is
written to ``OUT/adapter`` (and registered in MLflow when tracking is on).
"""

from __future__ import annotations

import random
import shutil
from typing import Any

from loop.params import LoopParams
from loop.stages import Context, open_rag
from loop.workdir import Paths, log, read_rows, write_rows


def training_rows(rag: Any, rows: list[dict[str, Any]], k: int, mode: str, seed: int) -> list[dict[str, Any]]:
    """Chain-format chat rows: the question's real top-k passages with the golden one forced in."""
    from rag import chain
    from rag.types import Hit

    rng = random.Random(seed)
    out = []
    for r in rows:
        hits = rag.retrieve(r["question"], k=k, mode=mode)
        pos = next((i for i, h in enumerate(hits) if h.id == r["chunk_id"]), None)
        if pos is None:  # RAFT: the golden passage among retrieved distractors, at a seeded position
            gold = Hit(r["chunk_id"], r["passage"], r["source"], int(r["page"] or 0), 0.0)
            hits = hits[: max(0, k - 1)]
            pos = rng.randint(0, len(hits))
            hits.insert(pos, gold)
        messages = chain.build_messages(r["question"], hits)
        # a teacher's target (loop.stages.teach) is cited where the golden passage sits in *this* prompt
        messages.append({"role": "assistant", "content": f"{r.get('target') or r['answer']} [{pos + 1}]"})
        out.append({"messages": messages, "meta": {"id": r["id"], "source": r["source"], "golden": pos + 1}})
    return out


def _recipe_argv(params: LoopParams, paths: Paths, has_val: bool) -> list[str]:
    """The ``python -m finetune.qlora`` command line for the ``finetune`` section and MLflow settings."""
    fp, ml = dict(params.finetune), params.mlflow
    base = str(fp.pop("base", "smollm2") or "smollm2")
    fp.setdefault("eval_split", 0.1 if has_val else 0.0)
    if ml.enabled:
        fp.update(report_to="mlflow", experiment=ml.experiment, registered_model=ml.registered_model,
                  run_name=f"{paths.out.name}-finetune")
        if ml.tracking_uri:
            fp["tracking_uri"] = ml.tracking_uri
    else:
        fp["report_to"] = "none"
    return ["--base", base, "--data", str(paths.train_rows), "--output", str(paths.adapter),
            *[f"{k}={','.join(map(str, v)) if isinstance(v, list) else v}" for k, v in fp.items()]]


def run(params: LoopParams, paths: Paths, ctx: Context) -> dict[str, Any]:
    from finetune import qlora

    rp = params.retrieval
    rows_dir = paths.teach if params.teacher.model else paths.split  # teacher targets when there is a teacher
    train, val = read_rows(rows_dir / "train.jsonl"), read_rows(rows_dir / "val.jsonl")
    with open_rag(params, paths, ctx.settings) as rag:
        rows = training_rows(rag, train, rp.k, rp.mode, 0) + training_rows(rag, val, rp.k, rp.mode, 1)
    write_rows(paths.train_rows, rows)
    if paths.adapter.exists():
        shutil.rmtree(paths.adapter)
    argv = _recipe_argv(params, paths, bool(val))
    log(f"finetune: {len(train)} train / {len(val)} val questions -> python -m finetune.qlora {' '.join(argv)}")
    cfg = qlora.config_from_args(qlora.build_parser().parse_args(argv))
    n_train = len(train)
    # qlora's held-out set is our val documents (the rows after the train rows), not a random split
    meta = qlora.run(cfg, ctx.settings, split=lambda examples: (list(examples[:n_train]), list(examples[n_train:])))
    shutil.rmtree(paths.adapter / "checkpoints", ignore_errors=True)  # the best weights are saved above
    m = meta["metrics"]
    info = {"base": str(params.finetune.get("base") or "smollm2"), "steps": m["global_step"], "train_loss": m["train_loss"],
            "first_eval_loss": m["first_eval_loss"], "best_eval_loss": m["best_eval_loss"],
            "s_per_step": m["s_per_step"], "mlflow": meta.get("mlflow")}
    if ctx.tracker and meta.get("mlflow"):
        ctx.tracker.adopt(meta["mlflow"]["run_id"])
    return info
