"""Fine-tuning benchmark: ragtune's QLoRA recipe vs a plain transformers Trainer + PEFT baseline.

Both train the packaged SmolLM2-135M-Instruct in 4-bit NF4 (double quant, bf16 compute) with the same
LoRA config (r=16 on every attention + MLP projection), optimizer, batch size, learning rate and data:
RAFT-style Q&A synthesised from ``data/sample/`` (ingested with ``python -m ingest``; falls back to a
plain text split when ingest is unavailable). Each side runs in its own process, so peak RSS is its own.

ragtune: answer-only loss, sequences packed to max_seq_len with per-example attention (no padding).
baseline: the usual recipe: chat-formatted text tokenized with ``padding="max_length"`` and
``DataCollatorForLanguageModeling`` (``--baseline-padding longest`` pads per batch instead).
tokens/s counts real (non-padding) tokens inside optimizer steps; the first step (warm-up) is excluded.

    python bench/finetune_bench.py --quick     # 20 steps each (a few minutes on 2 CPU cores)
    python bench/finetune_bench.py --full      # 200 steps of ragtune, 20 of the baseline
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SAMPLE = ROOT / "data" / "sample"
LORA = {"rank": 16, "alpha": 32, "dropout": 0.05}


def _env(data_dir: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "RAGTUNE_DATA_DIR": str(data_dir), "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false"}


def _fallback_store(store: Path) -> None:
    """Chunk data/sample without the ingest pipeline (text + pypdf); random vectors: synthesis reads text only."""
    import numpy as np

    from rag.stores import open_store
    from rag.types import Chunk

    chunks = []
    files = sorted(SAMPLE.glob("*")) if SAMPLE.exists() else []
    for f in files:
        if f.suffix == ".pdf":
            from pypdf import PdfReader

            text = "\n".join(p.extract_text() or "" for p in PdfReader(f).pages)
        else:
            text = f.read_text(errors="ignore")
        for i in range(0, len(text), 800):
            chunks.append(Chunk(f"{f.name}#{i}", text[i:i + 1000], f.name, 0, i // 800))
    if not chunks:
        raise SystemExit("no sample documents in data/sample")
    vecs = np.random.default_rng(0).normal(size=(len(chunks), 8)).astype("float32")
    s = open_store(str(store))
    s.upsert(chunks, vecs / np.linalg.norm(vecs, axis=1, keepdims=True))
    s.close()


def build_data(work: Path, distractors: int) -> Path:
    store = work / "index"
    r = subprocess.run([sys.executable, "-m", "ingest", str(SAMPLE), "--store", str(store), "--json"], check=False,
                       cwd=ROOT, env=_env(work / "data"), capture_output=True, text=True)
    if r.returncode != 0:
        print(f"ingest failed ({r.stderr.strip().splitlines()[-1:]}); chunking data/sample directly", file=sys.stderr)
        _fallback_store(store)
    from finetune.synth import synthesize

    rep = synthesize(str(store), work / "train.jsonl", distractors=distractors, seed=0)
    print(f"data: {rep.examples} Q&A examples from {rep.chunks} chunks of data/sample", file=sys.stderr)
    return Path(rep.path)


def run_ragtune(data: Path, work: Path, data_dir: Path, steps: int, a: argparse.Namespace) -> dict:
    out = work / "ragtune-adapter"
    cmd = [sys.executable, "-m", "finetune.qlora", "--base", "smollm2", "--data", str(data), "--output", str(out),
           "--max-steps", str(steps), "--json", f"batch_size={a.batch_size}", f"max_seq_len={a.max_seq_len}",
           f"rank={LORA['rank']}", f"alpha={LORA['alpha']}", f"dropout={LORA['dropout']}", f"lr={a.lr}",
           f"eval_every={max(1, steps // 4)}", "early_stopping_patience=0", "report_to=none", "eval_split=0.1",
           f"threads={a.threads}", f"gradient_checkpointing={a.gradient_checkpointing}"]
    t = time.time()
    r = subprocess.run(cmd, check=False, cwd=ROOT, env=_env(data_dir), stdout=subprocess.PIPE, text=True)
    if r.returncode != 0:
        raise SystemExit(f"ragtune run failed (exit {r.returncode})")
    meta = json.loads(r.stdout.strip().splitlines()[-1])
    m = meta["metrics"]
    return {"steps": m["global_step"], "s_per_step": m["s_per_step"], "tokens_per_s": m["tokens_per_s"],
            "peak_rss_mb": m["peak_rss_mb"], "first_eval_loss": m["first_eval_loss"],
            "last_eval_loss": m["final_eval_loss"], "best_eval_loss": m["best_eval_loss"],
            "load_in_4bit": meta["load_in_4bit"], "wall_s": time.time() - t}


def run_baseline(data: Path, data_dir: Path, steps: int, a: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--baseline-worker", "--data", str(data), "--steps", str(steps),
           "--batch-size", str(a.batch_size), "--max-seq-len", str(a.max_seq_len), "--lr", str(a.lr),
           "--threads", str(a.threads), "--baseline-padding", a.baseline_padding,
           "--gradient-checkpointing", a.gradient_checkpointing]
    t = time.time()
    r = subprocess.run(cmd, check=False, cwd=ROOT, env=_env(data_dir), stdout=subprocess.PIPE, text=True)
    if r.returncode != 0:
        raise SystemExit(f"baseline run failed (exit {r.returncode})")
    return {**json.loads(r.stdout.strip().splitlines()[-1]), "wall_s": time.time() - t}


def baseline_worker(a: argparse.Namespace) -> None:
    """Plain transformers Trainer + PEFT, same model/LoRA/optimizer; what most tutorials do."""
    import resource

    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        BitsAndBytesConfig,
        DataCollatorForLanguageModeling,
        Trainer,
        TrainerCallback,
        TrainingArguments,
        set_seed,
    )

    from finetune.config import LLAMA_TARGET_MODULES
    from finetune.data import load_jsonl
    from finetune.modeling import _keep_cpu_4bit_trainable, resolve_base
    from rag.settings import load_settings

    set_seed(0)
    torch.set_num_threads(a.threads)
    path = resolve_base("smollm2", load_settings().data_dir)
    tok = AutoTokenizer.from_pretrained(path)
    texts = [tok.apply_chat_template(ex.messages, tokenize=False) for ex in load_jsonl(a.data)]
    pad = "max_length" if a.baseline_padding == "max_length" else False
    rows = [tok(t, truncation=True, max_length=a.max_seq_len, padding=pad) for t in texts]
    data = [{"input_ids": r["input_ids"], "attention_mask": r["attention_mask"]} for r in rows]
    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                               bnb_4bit_compute_dtype=torch.bfloat16)
    model = AutoModelForCausalLM.from_pretrained(path, quantization_config=quant, dtype=torch.bfloat16)
    _keep_cpu_4bit_trainable(model)
    model.config.use_cache = False
    gc = a.gradient_checkpointing == "true"
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gc,
                                            gradient_checkpointing_kwargs={"use_reentrant": False})
    model = get_peft_model(model, LoraConfig(r=LORA["rank"], lora_alpha=LORA["alpha"], lora_dropout=LORA["dropout"],
                                             target_modules=LLAMA_TARGET_MODULES, task_type="CAUSAL_LM"))
    base_collator = DataCollatorForLanguageModeling(tok, mlm=False)
    counter = {"tokens": 0}

    def collate(features):
        batch = base_collator(features)
        counter["tokens"] += int(batch["attention_mask"].sum())
        return batch

    class Timer(TrainerCallback):
        def __init__(self):
            self.time, self.tokens, self.steps, self.mark = 0.0, 0, 0, 0

        def on_step_begin(self, args, state, control, **kw):
            # Trainer collates the step's batches before this hook: count what arrived since the last step.
            self.t0, self.step_tokens, self.mark = time.perf_counter(), counter["tokens"] - self.mark, counter["tokens"]

        def on_step_end(self, args, state, control, **kw):
            if state.global_step > 1:  # the first step is warm-up, as on the ragtune side
                self.time += time.perf_counter() - self.t0
                self.tokens += self.step_tokens
                self.steps += 1

    timer = Timer()
    args = TrainingArguments(output_dir=tempfile.mkdtemp(), max_steps=a.steps, per_device_train_batch_size=a.batch_size,
                             learning_rate=a.lr, lr_scheduler_type="cosine", warmup_steps=0.03, max_grad_norm=1.0,
                             optim="adamw_torch", bf16=True, use_cpu=True, logging_steps=1, save_strategy="no",
                             report_to="none", disable_tqdm=True, seed=0, dataloader_num_workers=0,
                             remove_unused_columns=False)
    Trainer(model=model, args=args, train_dataset=data, data_collator=collate, callbacks=[timer]).train()
    print(json.dumps({"steps": a.steps, "s_per_step": timer.time / max(1, timer.steps),
                      "tokens_per_s": timer.tokens / timer.time if timer.time else 0.0,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "padding": a.baseline_padding}))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true", help="20 steps each (default).")
    g.add_argument("--full", action="store_true", help="200 ragtune steps, 20 baseline steps.")
    p.add_argument("--steps", type=int, help="ragtune steps (overrides --quick/--full).")
    p.add_argument("--baseline-steps", type=int, help="baseline steps.")
    p.add_argument("--batch-size", type=int, help="sequences per step (default 2 quick, 4 full)")
    p.add_argument("--max-seq-len", type=int, default=512)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--distractors", type=int, default=1, help="distractor passages per synthesised question")
    p.add_argument("--threads", type=int, default=0, help="torch threads for both runs (0 = auto from load)")
    p.add_argument("--gradient-checkpointing", choices=["true", "false"], default="true")
    p.add_argument("--baseline-padding", choices=["max_length", "longest"], default="max_length")
    p.add_argument("--only", choices=["ragtune", "baseline"], help="run one side only")
    p.add_argument("--data-dir", help="where the dequantised SmolLM2 is cached (default: the settings data dir)")
    p.add_argument("--keep-adapter", type=Path, help="copy ragtune's adapter here (default with --full: "
                   "DATA_DIR/adapters/finetune-bench), for python -m rag ask --llm hf:smollm2+adapter:DIR")
    p.add_argument("--json", action="store_true")
    p.add_argument("--baseline-worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.baseline_worker:
        baseline_worker(a)
        return 0
    from finetune.modeling import cpu_threads, resolve_base
    from rag.settings import load_settings

    a.threads = cpu_threads(a.threads)  # decided once, so both sides get the same
    a.batch_size = a.batch_size or (4 if a.full else 2)
    steps = a.steps or (200 if a.full else 20)
    bsteps = a.baseline_steps or (20 if a.full else steps)
    data_dir = Path(a.data_dir or load_settings().data_dir).resolve()
    resolve_base("smollm2", data_dir)  # dequantise once, outside both timings
    with tempfile.TemporaryDirectory(prefix="ft-bench-") as tmp:
        work = Path(tmp)
        data = build_data(work, a.distractors)
        ours = None if a.only == "baseline" else run_ragtune(data, work, data_dir, steps, a)
        keep = a.keep_adapter or (data_dir / "adapters" / "finetune-bench" if a.full else None)
        if ours and keep:
            import shutil

            shutil.rmtree(keep, ignore_errors=True)
            shutil.copytree(work / "ragtune-adapter", keep)
            ours["adapter"] = str(keep)
        base = None if a.only == "ragtune" else run_baseline(data, data_dir, bsteps, a)
    result = {"device": "cpu", "threads": a.threads, "batch_size": a.batch_size, "max_seq_len": a.max_seq_len,
              "ragtune": ours, "baseline": base,
              "tokens_per_s_ratio": ours["tokens_per_s"] / base["tokens_per_s"]
              if ours and base and base["tokens_per_s"] else None}
    if a.json:
        print(json.dumps(result))
        return 0
    print(f"threads={a.threads} batch={a.batch_size} max_seq_len={a.max_seq_len} 4-bit NF4 on CPU")
    print(f"{'run':<22}{'steps':>6}{'s/step':>9}{'tokens/s':>10}{'peak RSS MB':>13}")
    rows = ([("ragtune (packed)", ours)] if ours else []) + ([(f"baseline ({base['padding']})", base)] if base else [])
    for name, r in rows:
        print(f"{name:<22}{r['steps']:>6}{r['s_per_step']:>9.2f}{r['tokens_per_s']:>10.1f}{r['peak_rss_mb']:>13.0f}")
    if ours:
        print(f"eval loss (ragtune): first {ours['first_eval_loss']:.4f} -> last {ours['last_eval_loss']:.4f} "
              f"(best {ours['best_eval_loss']:.4f}); 4-bit used: {ours['load_in_4bit']}")
    if result["tokens_per_s_ratio"]:
        print(f"tokens/s ratio ragtune / baseline: {result['tokens_per_s_ratio']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
