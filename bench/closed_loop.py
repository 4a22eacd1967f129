"""Closed loop on SQuAD: synthesise Q&A from some articles, tune SmolLM2 on them, test on the others.

    RAGTUNE_LLM__THREADS=1 .venv/bin/python bench/closed_loop.py            # ~25 min on a busy 2-core box
    .venv/bin/python bench/closed_loop.py --steps 300 --n-test 200 --k 3      # a longer run
    .venv/bin/python bench/closed_loop.py --teacher qwen2.5-coder-1.5b --eval-teacher   # teacher-distilled adapter

The ten SQuAD v1.1 dev articles in ``shared/data/squad`` are ingested as PDFs. The loop (``loop``)
synthesises questions (extractive generator, no LLM) from the chunks, splits them by article
(``--test-docs`` are held out, never trained on), trains a QLoRA adapter and evaluates the base
SmolLM2 and base + adapter in the same chain, on the same retrieved passages, against the
**human-written SQuAD questions** of the held-out articles (``eval.dataset``): EM / F1 with 95%
bootstrap intervals, the paired difference, and retrieval hit@5. Results go to
``bench/results/closed_loop.md`` and ``.json``.

With ``--teacher NAME`` the loop's ``teach`` stage has that model write the training answers
(RAFT-style, filtered, cached in ``WORK/run-teacher-NAME/teacher_cache.jsonl``, so a killed run resumes);
results go to ``closed_loop_teacher.md`` / ``.json`` with the teacher's report (kept / dropped by reason,
tokens/s, seconds per reply). ``--eval-teacher`` also answers the same questions with the teacher itself
through the same chain and passages.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_SQUAD = ROOT.parent / "shared" / "data" / "squad"
TEST_DOCS = ["Southern_California.pdf", "Sky_United_Kingdom.pdf", "Victoria_Australia.pdf"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--squad-dir", type=Path, default=DEFAULT_SQUAD)
    p.add_argument("--work", type=Path, default=Path("/tmp/ragtune-closed-loop"), help="pipeline folder + data dir")
    p.add_argument("--results", type=Path, default=ROOT / "bench" / "results")
    p.add_argument("--test-docs", default=",".join(TEST_DOCS), help="held-out articles (comma-separated)")
    p.add_argument("--n-test", type=int, default=160, help="SQuAD questions sampled from the held-out articles")
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--k", type=int, default=2, help="passages in the prompt (training and eval)")
    p.add_argument("--chunk-size", type=int, default=700)
    p.add_argument("--max-seq-len", type=int, default=640)
    p.add_argument("--max-new-tokens", type=int, default=24)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--teacher", metavar="NAME", help="teacher LLM for the training answers (catalogue name or spec)")
    p.add_argument("--teacher-questions", action="store_true", help="the teacher also writes the questions")
    p.add_argument("--eval-teacher", action="store_true", help="also score the teacher itself in the same chain")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="more loop parameters (python -m loop)")
    return p


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("RAGTUNE_DATA_DIR", str(a.work / "data"))
    os.environ.setdefault("RAGTUNE_LLM__THREADS", str(a.threads))
    from bench.squad_to_eval import convert
    from loop import load_params, run
    from loop.params import stage_order
    from rag.settings import load_settings

    test_docs = [d.strip() for d in a.test_docs.split(",") if d.strip()]
    docs = a.work / "docs"  # the PDFs only (the folder also holds JSONL and TSV files)
    docs.mkdir(parents=True, exist_ok=True)
    for pdf in sorted(a.squad_dir.glob("*.pdf")):
        link = docs / pdf.name
        if not link.exists():
            link.symlink_to(pdf.resolve())
    rows = [r for r in convert(a.squad_dir, 0) if r["sources"][0]["source"] in test_docs]
    rows = sorted(random.Random(0).sample(rows, min(a.n_test, len(rows))), key=lambda r: r["id"])
    dataset = a.work / "squad_test.jsonl"
    dataset.write_text("".join(json.dumps(r) + "\n" for r in rows))
    overrides = [f"split.test_docs={','.join(test_docs)}", "split.val=0.1", "split.max_val=16",
                 f"eval.dataset={dataset}", f"eval.limit={a.n_test}", f"eval.max_new_tokens={a.max_new_tokens}",
                 f"eval.threads={a.threads}", f"retrieval.k={a.k}", f"ingest.chunk_size={a.chunk_size}",
                 "ingest.chunk_overlap=100", f"finetune.max_steps={a.steps}", f"finetune.max_seq_len={a.max_seq_len}",
                 f"finetune.threads={a.threads}", f"finetune.eval_every={max(1, a.steps // 2)}",
                 "finetune.early_stopping_patience=0", "mlflow.registered_model=ragtune-squad-adapter"]
    out = a.work / "run"
    if a.teacher:
        overrides += [f"teacher.model={a.teacher}", f"teacher.threads={a.threads}",
                      f"teacher.questions={str(a.teacher_questions).lower()}"]
        out = a.work / f"run-teacher-{a.teacher.replace('/', '_').replace(':', '_')}"
    params = load_params(None, [*overrides, *a.overrides], docs=str(docs), out=str(out))
    t0 = time.time()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    settings = load_settings()
    result = run(params, settings)
    minutes = (time.time() - t0) / 60
    m = result["metrics"]
    synth = json.loads((out / "synth_report.json").read_text())
    split = json.loads((out / "split" / "split.json").read_text())
    ft = json.loads((out / ".stages" / "finetune.json").read_text())
    stage_s = {s: json.loads((out / ".stages" / f"{s}.json").read_text())["seconds"] for s in stage_order(params)}
    report = {"load": load, "params": params.to_dict(), "metrics": m, "synth": synth, "split": split, "finetune": ft, "stage_seconds": stage_s,
              "minutes": round(minutes, 1), "stages": result["stages"], "answers": answer_stats(out / "eval_rows.jsonl")}
    if a.teacher:
        report["teach"] = json.loads((out / "teach_report.json").read_text())
        if a.eval_teacher:
            report["teacher_eval"] = eval_teacher(params, settings, out, a.teacher)
    a.results.mkdir(parents=True, exist_ok=True)
    name = "closed_loop_teacher" if a.teacher else "closed_loop"
    (a.results / f"{name}.json").write_text(json.dumps(report, indent=2, default=str))
    (a.results / f"{name}.md").write_text(render(report))
    print(render(report))
    return 0


def eval_teacher(params, settings, out: Path, spec: str) -> dict:
    """The teacher itself on the loop's test questions, in the same chain with the same passages.

    Kept in ``OUT/teacher_eval.json`` with what it depends on (the teacher, the test questions, the
    eval and retrieval settings), so a re-run that changes only the filter or the student re-uses it
    (it is the longest step: ~17 s a question for the 1.5B on one core)."""
    import hashlib

    from eval import metrics as M
    from loop.stages import Context
    from loop.stages.evaluate import _answer_rows, _test_examples
    from loop.workdir import Paths

    paths = Paths(out)
    examples, _ = _test_examples(params, paths)
    p = params.to_dict()
    key = hashlib.sha256(json.dumps([spec, examples, p["eval"], p["retrieval"]],
                                    sort_keys=True, default=str).encode()).hexdigest()
    cached = out / "teacher_eval.json"
    if cached.exists():
        prev = json.loads(cached.read_text())
        if prev.get("key") == key:
            return prev["result"]
    t0 = time.perf_counter()
    rows = _answer_rows(params, paths, Context(settings), examples, {"teacher": spec})
    seconds = time.perf_counter() - t0

    def stat(metric: str) -> dict:
        vals = [r["metrics"][f"teacher_{metric}"] for r in rows]
        ci = M.bootstrap_ci(vals, n_boot=params.eval.bootstrap, seed=params.eval.seed)
        return {"mean": M.mean(vals), "ci_low": ci[0] if ci else None, "ci_high": ci[1] if ci else None}

    result = {"spec": spec, "n": len(rows), "em": stat("em"), "f1": stat("f1"), "s_per_question": seconds / len(rows)}
    cached.write_text(json.dumps({"key": key, "result": result}, indent=1))
    return result


def answer_stats(rows_file: Path) -> dict:
    """Where an F1 gain comes from: answer length, and how often a reference answer appears in the answer."""
    from eval.metrics import normalize_answer, strip_citations
    from loop.workdir import read_rows

    rows = read_rows(rows_file)
    out = {}
    for side in ("base", "adapter"):
        preds = [strip_citations(r[side]) for r in rows]
        has = [any(f" {normalize_answer(a)} " in f" {normalize_answer(p)} " for a in r["references"])
               for p, r in zip(preds, rows)]
        out[side] = {"mean_words": sum(len(p.split()) for p in preds) / len(preds),
                     "reference_contained": sum(has) / len(has)}
    return out


def teacher_lines(r: dict) -> list[str]:
    """What the teacher did: its filter's counts and its speed on this box."""
    t = r.get("teach")
    if not t:
        return []
    lines = ["", (f"Training answers by the teacher **{t['teacher']}** (answer style "
                  f"`teacher.style={t.get('style', 'sentence')}`, questions written by "
                  f"{'the teacher' if t['questions_by'] == 'teacher' else 'the synthesise stage'}): "
                  f"{t['asked']} asked, **{t['kept']} kept**, dropped by reason: "
                  f"{', '.join(f'{k} {v}' for k, v in t['dropped'].items()) or 'none'}; {t['generated']} replies "
                  f"generated, {t['cached']} from the cache."
                  + (f" With `teacher.recite=true`, {t['recited']} of the kept answers cited only another passage "
                     "but are grounded in the golden one." if t.get("recited") else ""))]
    if t.get("tokens_per_s"):
        per_1000 = t["s_per_generation"] * 1000 / 3600
        lines.append(f"Teacher speed here: {t['tokens_per_s']:.1f} generated tokens/s (prompt processing included), "
                     f"{t['s_per_generation']:.1f} s per reply, so about {per_1000:.1f} h per 1,000 questions.")
    if r.get("teacher_eval"):
        lines.append(f"The teacher itself answers in {r['teacher_eval']['s_per_question']:.1f} s per question.")
    return lines


def _ci(s: dict) -> str:
    return f"{s['mean']:.3f} [{s['ci_low']:.3f}, {s['ci_high']:.3f}]"


def _dci(s: dict) -> str:
    return f"{s['mean']:+.3f} [{s['ci_low']:+.3f}, {s['ci_high']:+.3f}]"


def gain_source(ans: dict) -> str:
    """What the answer statistics say about the gain (measured, not assumed: shorter answers raise
    token F1 without being more often right; a higher contained share is correctness)."""
    b, a = ans["base"], ans["adapter"]
    shorter = a["mean_words"] < 0.8 * b["mean_words"]
    righter = a["reference_contained"] - b["reference_contained"]
    if righter >= 0.05:
        return (f"The adapter contains a reference answer {righter:+.3f} more often: it is right more often"
                + (", and briefer." if shorter else "; its answers are not shorter, which holds token F1 back."))
    if shorter:
        return ("Most of the F1/EM gain is the adapter answering briefly (the base model wraps the answer in a "
                "sentence, which costs precision); correctness itself moved much less.")
    return "Neither answer length nor the contained share moved much."


def render(r: dict) -> str:
    m, p, synth, split, ft = r["metrics"], r["params"], r["synth"], r["split"], r["finetune"]
    g = m["gain"]
    supported = g["f1"]["ci_low"] > 0
    lines = [
        "# Closed loop on SQuAD: base SmolLM2 vs base + loop-trained adapter",
        "",
        ("Made by `bench/closed_loop.py` (`loop` on the ten SQuAD v1.1 dev articles in "
        "`shared/data/squad`). Training questions were synthesised by the "
        f"**{synth['generator']}** generator{' (no LLM)' if synth['generator'] == 'extractive' else ''} from the "
        "training articles; the test questions are the "
        f"**human-written SQuAD questions** of held-out articles ({', '.join(split['test']['documents'])}), "
        f"{m['n']} sampled (seed 0). Both models answer in the same chain with the same "
        f"retrieved passages (k={m['k']}, {m['retrieval_mode']}) and prompt; `[n]` citation markers are "
        "removed before scoring. 95% percentile-bootstrap intervals over questions; the gain is the paired "
        "bootstrap of adapter minus base."),
        "",
        "| model | EM | F1 |",
        "| --- | --- | --- |",
        f"| base `{m['specs']['base']}` | {_ci(m['base']['em'])} | {_ci(m['base']['f1'])} |",
        f"| base + adapter | {_ci(m['adapter']['em'])} | {_ci(m['adapter']['f1'])} |",
        f"| gain (paired) | {_dci(g['em'])} | {_dci(g['f1'])} |",
        *([(f"| teacher `{r['teacher_eval']['spec']}` itself | {_ci(r['teacher_eval']['em'])} | "
            f"{_ci(r['teacher_eval']['f1'])} |")] if r.get("teacher_eval") else []),
        "",
        f"Retrieval hit@5 (gold page in the top 5): {_ci(m['retrieval']['hit@5'])}.",
        *teacher_lines(r),
        "",
        f"**Is the F1 gain supported?** {'Yes' if supported else 'No'}: the 95% interval of the paired F1 "
        f"difference is [{g['f1']['ci_low']:+.3f}, {g['f1']['ci_high']:+.3f}]"
        + (", entirely above 0." if supported else ", which includes 0."),
        "",
        *([(f"Where the gain comes from: mean answer length {r['answers']['base']['mean_words']:.1f} -> "
           f"{r['answers']['adapter']['mean_words']:.1f} words; a reference answer appears inside the answer "
           f"{r['answers']['base']['reference_contained']:.3f} -> {r['answers']['adapter']['reference_contained']:.3f} "
           f"of the time. {gain_source(r['answers'])}"), ""] if r.get("answers") else []),
        "## Setting",
        "",
        (f"- Synthesis: {synth['chunks']} chunks, {synth['candidates']} candidate questions, **{synth['kept']} kept**, "
        f"dropped by reason: {', '.join(f'{k} {v}' for k, v in synth['dropped'].items()) or 'none'}."),
        (f"- Split by article: train {split['train']['questions']} questions from {len(split['train']['documents'])} "
        f"articles, val {split['val']['questions']} ({', '.join(split['val']['documents'])}), synthesised test "
        f"{split['test']['questions']} (not used: the SQuAD questions are the test set)."),
        (f"- QLoRA: base {ft['base']}, {ft['steps']} steps, batch {p['finetune']['batch_size']}, "
        f"max_seq_len {p['finetune']['max_seq_len']}, rank {p['finetune']['rank']}, lr {p['finetune']['lr']}; "
        f"train loss {ft['train_loss']:.3f}, val loss {ft['first_eval_loss']:.3f} -> best {ft['best_eval_loss']:.3f}; "
        f"{ft['s_per_step']:.1f} s/step."),
        (f"- Eval: max_new_tokens {p['eval']['max_new_tokens']}, greedy, "
        f"chunk size {p['ingest']['chunk_size']}, 1 CPU thread."),
        (f"- Time per stage (s): {', '.join(f'{k} {v:.0f}' for k, v in r['stage_seconds'].items())}; "
        f"{sum(r['stage_seconds'].values()) / 60:.1f} min of stage time on a 2-core CPU"
        + (f" (load average {r['load']} at the start)" if r.get("load") else "")
        + f"; this invocation took {r['minutes']} min"
        + (f" and skipped {', '.join(k for k, v in r['stages'].items() if v == 'skipped')} (finished by an "
           "earlier invocation)." if "skipped" in r["stages"].values() else ".")),
        "",
    ]
    seen = ft["steps"] * p["finetune"]["batch_size"]
    n_train = r["teach"]["splits"]["train"]["kept"] if r.get("teach") else split["train"]["questions"]
    lines += [
        "## What limits it",
        "",
        (f"- {m['n']} test questions: the F1 interval is about ±{(g['f1']['ci_high'] - g['f1']['ci_low']) / 2:.2f} wide; "
        "one split and one training seed, so the variance across splits/seeds is not in these intervals."),
        (f"- Training: {ft['steps']} steps of batch {p['finetune']['batch_size']} ({seen} examples drawn) over "
        f"{n_train} {'kept teacher answers' if r.get('teach') else 'synthesised questions'}, sized to finish on this "
        "2-core CPU; more steps were not measured here."),
        *([("- The extractive generator writes template questions (\"What is X?\", fill in the blank) with clause-span "
            "answers; SQuAD's human questions are phrased differently, so the adapter mostly learns the answer "
            "*format* (short span + citation) rather than how to find facts.")] if not r.get("teach") else
          [(f"- The teacher was asked for {'phrases' if r['teach'].get('style') == 'phrase' else 'sentences'} "
            f"(`teacher.style`; the distilled student's mean answer is "
            f"{r['answers']['adapter']['mean_words']:.1f} words where SQuAD's references are phrases), and "
            f"{r['teach']['kept']} of {r['teach']['asked']} teacher answers passed the filter: the student learns "
            "from a few dozen examples.")] if r.get("answers") else []),
        (f"- SmolLM2-135M is small: both models often pick the wrong span from the right passage (retrieval is "
        f"not the bottleneck: hit@5 {m['retrieval']['hit@5']['mean']:.2f})."),
        (f"- Answers are cut at {p['eval']['max_new_tokens']} new tokens for both models, which caps how much the "
        "base model's long sentences can lose in precision."),
        "",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
