"""QLoRA fine-tuning recipe: args -> data -> model -> train -> save. Read it top to bottom.

Examples:
    # packaged SmolLM2 on your own Q&A pairs
    python -m finetune.qlora --base smollm2 --data train.jsonl --output .ragtune/adapters/qa --max-steps 200

    # RAFT-style Q&A synthesised from an ingested store, recipe file + overrides
    python -m finetune.qlora --config finetune/configs/smollm2-qlora.yaml \\
        --from-store .ragtune/index --output .ragtune/adapters/docs lr=1e-4 rank=8

    # continue after an interruption (from OUTPUT/checkpoints)
    python -m finetune.qlora --base smollm2 --data train.jsonl --output .ragtune/adapters/qa --resume

    # several GPUs (DDP; see docs/finetune.md for FSDP and DeepSpeed)
    accelerate launch -m finetune.qlora --base hf:HuggingFaceTB/SmolLM2-1.7B-Instruct --data train.jsonl --output out

The adapter folder loads with ``PeftModel.from_pretrained(base, DIR)`` or ``--llm hf:BASE+adapter:DIR``;
``ragtune_adapter.json`` beside it records the resolved config, data hash, versions and eval losses.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from finetune.config import config_help, load_config
from rag.cli import guarded
from rag.errors import ConfigError, DataError, redact

METADATA_FILE = "ragtune_adapter.json"
RUN_FILE = "ragtune_run.json"  # in OUTPUT/checkpoints: the MLflow run and data hash, for --resume


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m finetune.qlora", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Fine-tune a causal LM with QLoRA (4-bit base + LoRA adapters) on JSONL or on Q&A "
                    "synthesised from an ingested store.",
        epilog="example:\n  python -m finetune.qlora --base smollm2 --data train.jsonl --output "
               ".ragtune/adapters/qa --max-steps 200 lr=1e-4\n\nkey=value overrides set any config field "
               "(list them with --help-config).")
    p.add_argument("--base", help="'' or smollm2 (packaged SmolLM2-135M-Instruct), hf:MODEL_ID, or a local folder.")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--data", metavar="FILE.jsonl", help="Rows {instruction, input?, output} or {messages: [...]}.")
    src.add_argument("--from-store", metavar="URI", help="Synthesise RAFT-style Q&A from this store's chunks.")
    p.add_argument("--output", metavar="DIR", help="Adapter folder (checkpoints in DIR/checkpoints).")
    p.add_argument("--max-steps", type=int, help="Optimizer steps (overrides --epochs).")
    p.add_argument("--epochs", type=float, help="Passes over the data.")
    p.add_argument("--lr", type=float, help="Peak learning rate.")
    p.add_argument("--rank", type=int, help="LoRA rank.")
    p.add_argument("--resume", action="store_true", help="Continue from the last checkpoint in DIR/checkpoints.")
    p.add_argument("--config", metavar="YAML", help="Recipe file, e.g. finetune/configs/smollm2-qlora.yaml.")
    p.add_argument("--json", action="store_true", help="Print the result as one JSON object on stdout.")
    p.add_argument("--help-config", action="store_true", help="List every config key with its default and exit.")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="Override any config key, e.g. lr=1e-4.")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.help_config:
        print(config_help())
        return 0
    result: dict[str, Any] = {}

    def train() -> int:
        result.update(run(args))
        return 0

    rc = guarded(train, resume="add --resume to the same command to continue from the last checkpoint")
    if rc:
        return rc
    if args.json:
        print(json.dumps(result))
    else:
        m = result["metrics"]
        print(f"adapter: {result['adapter']}")
        print(f"base: {result['base_model']} ({'4-bit NF4' if result['load_in_4bit'] else 'unquantised'})")
        print(f"steps: {m['global_step']}  train loss: {_fmt(m['train_loss'])}  eval loss: "
              f"{_fmt(m['first_eval_loss'])} -> {_fmt(m['final_eval_loss'])} (best {_fmt(m['best_eval_loss'])})")
        print(f"throughput: {m['tokens_per_s']:.0f} tokens/s, {m['s_per_step']:.2f} s/step, "
              f"peak RSS {m['peak_rss_mb']:.0f} MB")
        if result.get("quantization_note"):
            print(f"note: {result['quantization_note']}")
    return 0


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def last_complete_checkpoint(folder: Path) -> Path | None:
    """Newest ``checkpoint-N`` whose trainer_state.json exists (a kill mid-save leaves it out)."""
    if not folder.is_dir():
        return None
    done = [p for p in folder.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()
            and (p / "trainer_state.json").exists()]
    return max(done, key=lambda p: int(p.name.split("-")[-1]), default=None)


def run(args: argparse.Namespace) -> dict[str, Any]:
    # ---- 1. args -> config --------------------------------------------------------------------
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import warnings

    warnings.filterwarnings("ignore", message=r".*deprecated and will be removed in v6.*")
    from rag.settings import load_settings

    flags = {"base": args.base, "data": args.data, "from_store": args.from_store, "output": args.output,
             "max_steps": args.max_steps, "epochs": args.epochs, "lr": args.lr, "rank": args.rank}
    cfg = load_config(args.config, flags, args.overrides)
    cfg.check_runnable()
    settings = load_settings()
    data_dir = Path(settings.data_dir)
    out = Path(cfg.output)
    ckpt_dir = out / "checkpoints"
    resume_from = last_complete_checkpoint(ckpt_dir) if args.resume else None
    if args.resume and resume_from is None:
        _log(f"no complete checkpoint under {ckpt_dir}: starting from scratch")
    if not args.resume and last_complete_checkpoint(ckpt_dir) is not None:
        raise ConfigError(f"{ckpt_dir} already holds checkpoints: pass --resume to continue that run, "
                          "or choose another --output")
    run_info = json.loads((ckpt_dir / RUN_FILE).read_text()) if resume_from and (ckpt_dir / RUN_FILE).exists() else {}

    import torch
    from transformers import set_seed

    set_seed(cfg.seed)  # python, numpy, torch (and CUDA) RNGs
    cuda = torch.cuda.is_available()
    if not cuda:
        from finetune.modeling import cpu_threads

        torch.set_num_threads(cpu_threads(cfg.threads))
        _log(f"cpu: {torch.get_num_threads()} torch thread(s)" + ("" if cfg.threads else " (auto, threads=N to set)"))
    optimizer = cfg.optimizer if cfg.optimizer != "auto" else ("paged_adamw_8bit" if cuda else "adamw_torch")

    # ---- 2. data ------------------------------------------------------------------------------
    from finetune import data as D

    data_path = Path(cfg.data) if cfg.data else out / "data" / "synth.jsonl"
    if cfg.from_store and not (resume_from and data_path.exists()):
        from finetune.synth import synthesize

        rep = synthesize(cfg.from_store, data_path, distractors=cfg.synth_distractors,
                         max_examples=cfg.synth_max_examples, seed=cfg.seed)
        _log(f"synthesised {rep.examples} Q&A examples from {rep.chunks} chunks -> {rep.path}")
    examples = D.load_jsonl(data_path)
    dhash = D.data_hash(examples)
    if run_info.get("data_hash") and run_info["data_hash"] != dhash:
        _log("warning: the training data changed since the checkpoint was written; resuming anyway")
    train_ex, eval_ex = D.split(examples, cfg.eval_split, cfg.seed)

    from finetune.modeling import add_lora, library_versions, load_base, load_tokenizer, resolve_base

    base_path = resolve_base(cfg.base, data_dir)
    tokenizer = load_tokenizer(base_path, cfg.trust_remote_code)
    train_tok, dropped = D.tokenize_all(tokenizer, train_ex, cfg.max_seq_len)
    eval_tok, _ = D.tokenize_all(tokenizer, eval_ex, cfg.max_seq_len)
    if not train_tok:
        raise DataError(f"no training example keeps any answer token within max_seq_len={cfg.max_seq_len}: "
                        "raise max_seq_len")
    if dropped:
        _log(f"warning: dropped {dropped} example(s) whose answer lies beyond max_seq_len={cfg.max_seq_len}")
    train_ds = D.build_dataset(train_tok, cfg.max_seq_len, cfg.packing)
    eval_ds = D.build_dataset(eval_tok, cfg.max_seq_len, cfg.packing) if eval_tok else None
    Collator = D.PackedCollator if cfg.packing else D.PaddedCollator
    collator = Collator(tokenizer.pad_token_id)
    _log(f"data: {len(train_tok)} train / {len(eval_tok)} eval examples, {train_ds.tokens} train tokens in "
         f"{len(train_ds)} sequences ({'packed' if cfg.packing else 'padded per batch'}), {dhash[:19]}")

    # ---- 3. model -----------------------------------------------------------------------------
    base = load_base(base_path, load_in_4bit=cfg.load_in_4bit, compute_dtype=cfg.compute_dtype,
                     trust_remote_code=cfg.trust_remote_code)
    if base.note:
        _log(f"warning: {base.note}")
    model = add_lora(base, cfg)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    _log(f"model: {base_path} ({'4-bit NF4 + double quant' if base.in_4bit else 'unquantised'}), "
         f"LoRA r={cfg.rank} on {','.join(cfg.target_modules)}: {trainable:,} trainable parameters")

    # ---- 4. train -----------------------------------------------------------------------------
    from transformers import EarlyStoppingCallback, TrainingArguments
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from finetune.callbacks import MLflowTracking, ProgressBar, peak_rss_mb
    from finetune.trainer import AnswerOnlyTrainer

    has_eval = eval_ds is not None
    if cfg.report_to == "wandb":
        import importlib.util

        if importlib.util.find_spec("wandb") is None:
            raise ConfigError("report_to=wandb but wandb is not installed: pip install wandb (or report_to=mlflow)")
        os.environ.setdefault("WANDB_PROJECT", cfg.experiment)
    bf16 = cfg.compute_dtype == "bfloat16" and (not cuda or torch.cuda.is_bf16_supported())
    targs = TrainingArguments(
        output_dir=str(ckpt_dir), max_steps=cfg.max_steps, num_train_epochs=cfg.epochs,
        per_device_train_batch_size=cfg.batch_size, per_device_eval_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum, learning_rate=cfg.lr, lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup_ratio, weight_decay=cfg.weight_decay, max_grad_norm=cfg.max_grad_norm,
        optim=optimizer, bf16=bf16, fp16=cfg.compute_dtype == "float16" and cuda, use_cpu=not cuda,
        logging_steps=cfg.logging_steps, eval_strategy="steps" if has_eval else "no", eval_steps=cfg.eval_every,
        save_strategy="steps", save_steps=cfg.checkpoint_every, save_total_limit=cfg.keep_checkpoints,
        load_best_model_at_end=has_eval, metric_for_best_model="eval_loss", greater_is_better=False,
        seed=cfg.seed, data_seed=cfg.seed, report_to=["wandb"] if cfg.report_to == "wandb" else "none",
        run_name=cfg.run_name or out.name, remove_unused_columns=False, dataloader_num_workers=0,
        dataloader_pin_memory=False, disable_tqdm=True, ddp_find_unused_parameters=False,
    )
    progress = ProgressBar(collator)
    callbacks: list[Any] = [progress]
    if has_eval and cfg.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=cfg.early_stopping_patience))
    is_main = int(os.environ.get("RANK", "0")) == 0
    tracker = None
    if cfg.report_to == "mlflow" and is_main:
        from finetune.tracking import Tracker, default_tracking_uri, flat_params

        uri = cfg.tracking_uri or settings.tracking_uri or default_tracking_uri(data_dir)
        tracker = Tracker(uri, cfg.experiment, data_dir / "mlartifacts")
        tracker.start(cfg.run_name or out.name, run_info.get("run_id"))
        tracker.log_params({**flat_params(cfg.to_dict()), "data_hash": dhash, "base_path": base_path,
                            "load_in_4bit_used": base.in_4bit, "optimizer_resolved": optimizer,
                            "train_examples": len(train_tok), "eval_examples": len(eval_tok)})
        callbacks.append(MLflowTracking(tracker, progress))
    trainer = AnswerOnlyTrainer(model=model, args=targs, train_dataset=train_ds, eval_dataset=eval_ds,
                                data_collator=collator, callbacks=callbacks)
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    if is_main:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        (ckpt_dir / RUN_FILE).write_text(json.dumps({"run_id": tracker.run_id if tracker else None,
                                                     "data_hash": dhash}))

    first_eval = None
    if has_eval and resume_from is None:
        first_eval = trainer.evaluate()["eval_loss"]  # the untrained model's loss, logged at step 0
        _log(f"step 0: eval_loss {first_eval:.4f}")
    elif resume_from is not None:
        _log(f"resuming from {resume_from.name} (step {resume_from.name.split('-')[-1]})")
        first_eval = next((h["eval_loss"] for h in json.loads((resume_from / "trainer_state.json").read_text())
                           ["log_history"] if "eval_loss" in h), None)
    try:
        result = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    except BaseException as e:
        if tracker:
            tracker.end("KILLED" if isinstance(e, KeyboardInterrupt) else "FAILED")
        raise
    state = trainer.state
    evals = [h["eval_loss"] for h in state.log_history if "eval_loss" in h]
    if has_eval and not evals:  # the run ended before its first scheduled evaluation
        evals = [trainer.evaluate()["eval_loss"]]
    final_eval = evals[-1] if evals else None
    if first_eval is None and evals:
        first_eval = evals[0]

    # ---- 5. save ------------------------------------------------------------------------------
    metrics = {
        "global_step": state.global_step,
        "train_loss": result.training_loss,
        "first_eval_loss": first_eval,
        "final_eval_loss": final_eval,
        "best_eval_loss": state.best_metric if state.best_metric is not None else final_eval,
        "best_checkpoint": state.best_model_checkpoint,
        "tokens_per_s": progress.tokens_per_s,
        "s_per_step": progress.s_per_step,
        "train_tokens": train_ds.tokens,
        "peak_rss_mb": peak_rss_mb(),
    }
    meta = {
        "format": 1,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "base_model": cfg.base or "smollm2",
        "base_model_path": base_path,
        "load_in_4bit": base.in_4bit,
        "quantization_note": base.note,
        "config": {**cfg.to_dict(), "optimizer": optimizer,
                   "tracking_uri": redact(cfg.tracking_uri) if cfg.tracking_uri else None},
        "data": {"path": str(data_path), "hash": dhash, "train_examples": len(train_tok),
                 "eval_examples": len(eval_tok), "dropped_examples": dropped, "from_store":
                 redact(cfg.from_store) if cfg.from_store else None},
        "metrics": metrics,
        "resumed_from_step": int(resume_from.name.split("-")[-1]) if resume_from else None,
        "versions": library_versions(),
        "device": "cuda" if cuda else "cpu",
        "mlflow": None,
    }
    if not is_main:
        return meta
    trainer.model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    if tracker:
        tracker.log_metrics({k: v for k, v in metrics.items() if isinstance(v, (int, float)) and v is not None
                             and not isinstance(v, bool)}, step=state.global_step)
        (out / METADATA_FILE).write_text(json.dumps(meta, indent=2))
        source = tracker.log_adapter(out)
        version = tracker.register(cfg.registered_model, source, {
            "base_model": meta["base_model"], "data_hash": dhash, "adapter_dir": str(out.resolve()),
            "load_in_4bit": base.in_4bit, "best_eval_loss": metrics["best_eval_loss"],
            "final_eval_loss": final_eval, "train_loss": metrics["train_loss"], "created": meta["created"],
        }) if cfg.registered_model else None
        meta["mlflow"] = {"tracking_uri": redact(tracker.uri), "run_id": tracker.run_id, "artifact": source,
                          "registered_model": cfg.registered_model or None, "version": version}
        tracker.end("FINISHED")
    (out / METADATA_FILE).write_text(json.dumps(meta, indent=2))
    meta["adapter"] = str(out)
    return meta


if __name__ == "__main__":
    sys.exit(main())
