"""QLoRA fine-tuning recipe: setup (device, data, model, trainer) -> train -> save. Read it top to bottom.

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

    # a catalogue model as the base (its GGUF is dequantised once into DATA_DIR/models/)
    python -m finetune.qlora --base qwen2.5-coder-0.5b --data train.jsonl --output .ragtune/adapters/qwen

The adapter folder loads with ``--llm adapter:DIR`` from any folder (the base it records),
``--llm hf:BASE+adapter:DIR`` or ``PeftModel.from_pretrained(base, DIR)``; ``ragtune_adapter.json``
beside it records the base (catalogue name, hub id or absolute path), the resolved config, data hash,
versions and eval losses.
In Python: ``run(load_config(...), settings)``; torch and transformers load only once a run starts.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from finetune.config import QLoRAConfig, config_help, load_config
from rag.errors import ConfigError, DataError, redact
from rag.llms.adapter_meta import ADAPTER_META

if TYPE_CHECKING:
    from rag.settings import Settings

RUN_FILE = "ragtune_run.json"  # in OUTPUT/checkpoints: the MLflow run and data hash, for --resume
Split = Callable[[list[Any]], tuple[list[Any], list[Any]]]  # examples -> (train, held out)


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def last_complete_checkpoint(folder: Path) -> Path | None:
    """Newest ``checkpoint-N`` whose trainer_state.json exists (a kill mid-save leaves it out)."""
    if not folder.is_dir():
        return None
    done = [p for p in folder.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()
            and (p / "trainer_state.json").exists()]
    return max(done, key=lambda p: int(p.name.split("-")[-1]), default=None)


class QLoRARecipe:
    """One fine-tuning run, in the order it happens: :meth:`setup`, :meth:`train`, :meth:`save`.

    Args:
        cfg: the resolved config (``data`` or ``from_store``, and ``output``, must be set).
        settings: where the data directory and the default MLflow tracking URI come from.
        resume: continue from the last complete checkpoint under ``OUTPUT/checkpoints``.
        split: examples -> (train, held out); default a seeded random ``cfg.eval_split`` fraction.
    """

    def __init__(self, cfg: QLoRAConfig, settings: Settings, *, resume: bool = False, split: Split | None = None):
        cfg.check_runnable()
        self.cfg, self.resume, self.split = cfg, resume, split
        self.data_dir = Path(settings.data_dir)
        self.models_dir = settings.models_dir  # where a catalogue base's GGUF is assembled
        self.tracking_uri = cfg.tracking_uri or settings.tracking_uri
        self.out = Path(cfg.output)
        self.ckpt_dir = self.out / "checkpoints"
        self.is_main = int(os.environ.get("RANK", "0")) == 0  # the process that writes files under DDP
        self.tracker: Any = None

    # ---- 1. setup -----------------------------------------------------------------------------
    def setup(self) -> None:
        self._setup_device()
        self._setup_data()
        self._setup_model()
        self._setup_trainer()

    def _setup_device(self) -> None:
        """Where to resume from, seeds, CPU threads, the optimizer for this device."""
        cfg = self.cfg
        self.resume_from = last_complete_checkpoint(self.ckpt_dir) if self.resume else None
        if self.resume and self.resume_from is None:
            _log(f"no complete checkpoint under {self.ckpt_dir}: starting from scratch")
        if not self.resume and last_complete_checkpoint(self.ckpt_dir) is not None:
            raise ConfigError(f"{self.ckpt_dir} already holds checkpoints: pass --resume to continue that run, "
                              "or choose another --output")
        run_file = self.ckpt_dir / RUN_FILE
        self.run_info = json.loads(run_file.read_text()) if self.resume_from and run_file.exists() else {}

        import torch
        from transformers import set_seed

        set_seed(cfg.seed)  # python, numpy, torch (and CUDA) RNGs
        self.cuda = torch.cuda.is_available()
        if not self.cuda:
            from finetune.modeling import cpu_threads

            torch.set_num_threads(cpu_threads(cfg.threads))
            _log(f"cpu: {torch.get_num_threads()} torch thread(s)" + ("" if cfg.threads else " (auto, threads=N to set)"))
        self.optimizer = cfg.optimizer if cfg.optimizer != "auto" else ("paged_adamw_8bit" if self.cuda else "adamw_torch")

    def _setup_data(self) -> None:
        """JSONL (or Q&A synthesised from a store) -> answer-only-labelled sequences, packed or padded."""
        from finetune import data as D
        from finetune.modeling import load_tokenizer, resolve_base

        cfg = self.cfg
        self.data_path = Path(cfg.data) if cfg.data else self.out / "data" / "synth.jsonl"
        if cfg.from_store and not (self.resume_from and self.data_path.exists()):
            from finetune.synth import synthesize

            rep = synthesize(cfg.from_store, self.data_path, distractors=cfg.synth_distractors,
                             max_examples=cfg.synth_max_examples, seed=cfg.seed)
            _log(f"synthesised {rep.examples} Q&A examples from {rep.chunks} chunks -> {rep.path}")
        examples = D.load_jsonl(self.data_path)
        self.data_hash = D.data_hash(examples)
        if self.run_info.get("data_hash") and self.run_info["data_hash"] != self.data_hash:
            _log("warning: the training data changed since the checkpoint was written; resuming anyway")
        train_ex, eval_ex = self.split(examples) if self.split else D.split(examples, cfg.eval_split, cfg.seed)

        self.base_path = resolve_base(cfg.base, self.data_dir, self.models_dir)  # absolute, or a hub id
        self.tokenizer = load_tokenizer(self.base_path, cfg.trust_remote_code)
        train_tok, self.dropped = D.tokenize_all(self.tokenizer, train_ex, cfg.max_seq_len)
        eval_tok, _ = D.tokenize_all(self.tokenizer, eval_ex, cfg.max_seq_len)
        if not train_tok:
            raise DataError(f"no training example keeps any answer token within max_seq_len={cfg.max_seq_len}: "
                            "raise max_seq_len")
        if self.dropped:
            _log(f"warning: dropped {self.dropped} example(s) whose answer lies beyond max_seq_len={cfg.max_seq_len}")
        self.n_train, self.n_eval = len(train_tok), len(eval_tok)
        self.train_ds = D.build_dataset(train_tok, cfg.max_seq_len, cfg.packing)
        self.eval_ds = D.build_dataset(eval_tok, cfg.max_seq_len, cfg.packing) if eval_tok else None
        self.collator = (D.PackedCollator if cfg.packing else D.PaddedCollator)(self.tokenizer.pad_token_id)
        _log(f"data: {self.n_train} train / {self.n_eval} eval examples, {self.train_ds.tokens} train tokens in "
             f"{len(self.train_ds)} sequences ({'packed' if cfg.packing else 'padded per batch'}), "
             f"{self.data_hash[:19]}")

    def _setup_model(self) -> None:
        """The base in 4-bit NF4 when the device allows (dense otherwise, and said), LoRA on top."""
        from finetune.modeling import add_lora, load_base

        cfg = self.cfg
        self.base = load_base(self.base_path, load_in_4bit=cfg.load_in_4bit, compute_dtype=cfg.compute_dtype,
                              trust_remote_code=cfg.trust_remote_code)
        if self.base.note:
            _log(f"warning: {self.base.note}")
        self.model = add_lora(self.base, cfg)
        trainable = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        _log(f"model: {self.base_path} ({'4-bit NF4 + double quant' if self.base.in_4bit else 'unquantised'}), "
             f"LoRA r={cfg.rank} on {','.join(cfg.target_modules)}: {trainable:,} trainable parameters")

    def _setup_trainer(self) -> None:
        """Trainer, progress bar, early stopping, and the MLflow run (on the main process)."""
        from transformers import EarlyStoppingCallback
        from transformers.trainer_callback import PrinterCallback, ProgressCallback

        from finetune.callbacks import MLflowTracking, ProgressBar
        from finetune.trainer import AnswerOnlyTrainer, training_arguments

        cfg = self.cfg
        has_eval = self.eval_ds is not None
        if cfg.report_to == "wandb":
            import importlib.util

            if importlib.util.find_spec("wandb") is None:
                raise ConfigError("report_to=wandb but wandb is not installed: pip install wandb (or report_to=mlflow)")
            os.environ.setdefault("WANDB_PROJECT", cfg.experiment)
        targs = training_arguments(cfg, self.ckpt_dir, optimizer=self.optimizer, cuda=self.cuda, has_eval=has_eval,
                                   run_name=cfg.run_name or self.out.name)
        self.progress = ProgressBar(self.collator)
        callbacks: list[Any] = [self.progress]
        if has_eval and cfg.early_stopping_patience:
            callbacks.append(EarlyStoppingCallback(early_stopping_patience=cfg.early_stopping_patience))
        if cfg.report_to == "mlflow" and self.is_main:
            from finetune.tracking import Tracker, default_tracking_uri, flat_params

            uri = self.tracking_uri or default_tracking_uri(self.data_dir)
            self.tracker = Tracker(uri, cfg.experiment, self.data_dir / "mlartifacts")
            self.tracker.start(cfg.run_name or self.out.name, self.run_info.get("run_id"))
            self.tracker.log_params({**flat_params(cfg.to_dict()), "data_hash": self.data_hash,
                                     "base_path": self.base_path, "load_in_4bit_used": self.base.in_4bit,
                                     "optimizer_resolved": self.optimizer, "train_examples": self.n_train,
                                     "eval_examples": self.n_eval})
            callbacks.append(MLflowTracking(self.tracker, self.progress))
        self.trainer = AnswerOnlyTrainer(model=self.model, args=targs, train_dataset=self.train_ds,
                                         eval_dataset=self.eval_ds, data_collator=self.collator, callbacks=callbacks)
        self.trainer.remove_callback(PrinterCallback)
        self.trainer.remove_callback(ProgressCallback)
        if self.is_main:
            self.ckpt_dir.mkdir(parents=True, exist_ok=True)
            (self.ckpt_dir / RUN_FILE).write_text(json.dumps({"run_id": self.tracker.run_id if self.tracker else None,
                                                              "data_hash": self.data_hash}))

    # ---- 2. train -----------------------------------------------------------------------------
    def train(self) -> None:
        """Eval loss before training (step 0), the training run, and the eval losses it logged."""
        has_eval = self.eval_ds is not None
        first_eval = None
        if has_eval and self.resume_from is None:
            first_eval = self.trainer.evaluate()["eval_loss"]  # the untrained model's loss, logged at step 0
            _log(f"step 0: eval_loss {first_eval:.4f}")
        elif self.resume_from is not None:
            _log(f"resuming from {self.resume_from.name} (step {self.resume_from.name.split('-')[-1]})")
            state = json.loads((self.resume_from / "trainer_state.json").read_text())
            first_eval = next((h["eval_loss"] for h in state["log_history"] if "eval_loss" in h), None)
        try:
            self.result = self.trainer.train(resume_from_checkpoint=str(self.resume_from) if self.resume_from else None)
        except BaseException as e:
            if self.tracker:
                self.tracker.end("KILLED" if isinstance(e, KeyboardInterrupt) else "FAILED")
            raise
        evals = [h["eval_loss"] for h in self.trainer.state.log_history if "eval_loss" in h]
        if has_eval and not evals:  # the run ended before its first scheduled evaluation
            evals = [self.trainer.evaluate()["eval_loss"]]
        self.final_eval = evals[-1] if evals else None
        self.first_eval = first_eval if first_eval is not None or not evals else evals[0]

    # ---- 3. save ------------------------------------------------------------------------------
    def save(self) -> dict[str, Any]:
        """Adapter + tokenizer + ``ragtune_adapter.json`` in OUTPUT; the adapter logged and registered in MLflow.

        Returns:
            The metadata written, plus ``adapter`` (the folder).
        """
        from finetune.callbacks import peak_rss_mb
        from finetune.modeling import library_versions
        from rag.model_paths import base_identity

        cfg, state, out = self.cfg, self.trainer.state, self.out
        base = base_identity(cfg.base)
        metrics = {
            "global_step": state.global_step,
            "train_loss": self.result.training_loss,
            "first_eval_loss": self.first_eval,
            "final_eval_loss": self.final_eval,
            "best_eval_loss": state.best_metric if state.best_metric is not None else self.final_eval,
            "best_checkpoint": state.best_model_checkpoint,
            "tokens_per_s": self.progress.tokens_per_s,
            "s_per_step": self.progress.s_per_step,
            "train_tokens": self.train_ds.tokens,
            "peak_rss_mb": peak_rss_mb(),
        }
        meta = {
            "format": 1,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            # What loads the adapter from any folder: a catalogue name, hf:HUB_ID or an absolute path;
            # base_model_path (where these weights were read) is only a cache hint for the same machine.
            "base": base,
            "base_model": base if Path(base).is_absolute() else (cfg.base or "smollm2"),  # as asked
            "base_model_path": self.base_path,
            "load_in_4bit": self.base.in_4bit,
            "quantization_note": self.base.note,
            "config": {**cfg.to_dict(), "optimizer": self.optimizer,
                       "tracking_uri": redact(cfg.tracking_uri) if cfg.tracking_uri else None},
            "data": {"path": str(self.data_path), "hash": self.data_hash, "train_examples": self.n_train,
                     "eval_examples": self.n_eval, "dropped_examples": self.dropped, "from_store":
                     redact(cfg.from_store) if cfg.from_store else None},
            "metrics": metrics,
            "resumed_from_step": int(self.resume_from.name.split("-")[-1]) if self.resume_from else None,
            "versions": library_versions(),
            "device": "cuda" if self.cuda else "cpu",
            "mlflow": None,
        }
        if not self.is_main:
            return meta
        self.trainer.model.save_pretrained(out, safe_serialization=True)
        self.tokenizer.save_pretrained(out)
        if self.tracker:
            self.tracker.log_metrics({k: v for k, v in metrics.items() if isinstance(v, (int, float))
                                      and v is not None and not isinstance(v, bool)}, step=state.global_step)
            (out / ADAPTER_META).write_text(json.dumps(meta, indent=2))  # logged with the adapter just below
            meta["mlflow"] = self._register(meta)
        (out / ADAPTER_META).write_text(json.dumps(meta, indent=2))
        meta["adapter"] = str(out)
        return meta

    def _register(self, meta: dict[str, Any]) -> dict[str, Any]:
        """Log the adapter folder to the run, make it a registry version, end the run."""
        cfg, m = self.cfg, meta["metrics"]
        source = self.tracker.log_adapter(self.out)
        version = self.tracker.register(cfg.registered_model, source, {
            "base_model": meta["base_model"], "data_hash": self.data_hash, "adapter_dir": str(self.out.resolve()),
            "load_in_4bit": self.base.in_4bit, "best_eval_loss": m["best_eval_loss"],
            "final_eval_loss": m["final_eval_loss"], "train_loss": m["train_loss"], "created": meta["created"],
        }) if cfg.registered_model else None
        self.tracker.end("FINISHED")
        return {"tracking_uri": redact(self.tracker.uri), "run_id": self.tracker.run_id, "artifact": source,
                "registered_model": cfg.registered_model or None, "version": version}


def run(cfg: QLoRAConfig, settings: Settings, *, resume: bool = False, split: Split | None = None) -> dict[str, Any]:
    """Set up, train and save (see :class:`QLoRARecipe`); returns the adapter's metadata."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import warnings

    warnings.filterwarnings("ignore", message=r".*deprecated and will be removed in v6.*")
    recipe = QLoRARecipe(cfg, settings, resume=resume, split=split)
    recipe.setup()
    recipe.train()
    return recipe.save()


# ---- command line ---------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m finetune.qlora", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Fine-tune a causal LM with QLoRA (4-bit base + LoRA adapters) on JSONL or on Q&A "
                    "synthesised from an ingested store.",
        epilog="example:\n  python -m finetune.qlora --base smollm2 --data train.jsonl --output "
               ".ragtune/adapters/qa --max-steps 200 lr=1e-4\n\nkey=value overrides set any config field "
               "(list them with --help-config).")
    p.add_argument("--base", help="A catalogue name: '' or smollm2 (packaged SmolLM2-135M-Instruct, the default), "
                                  "qwen2.5-coder-0.5b (python -m rag models list); hf:MODEL_ID; or a local folder.")
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


def config_from_args(args: argparse.Namespace) -> QLoRAConfig:
    """Defaults < ``--config`` YAML < flags < ``key=value`` overrides (raises ConfigError listing every problem)."""
    flags = {"base": args.base, "data": args.data, "from_store": args.from_store, "output": args.output,
             "max_steps": args.max_steps, "epochs": args.epochs, "lr": args.lr, "rank": args.rank}
    return load_config(args.config, flags, args.overrides)


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.help_config:
        print(config_help())
        return 0
    from rag.cli import guarded
    from rag.settings import load_settings

    result: dict[str, Any] = {}

    def train() -> int:
        result.update(run(config_from_args(args), load_settings(), resume=args.resume))
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


if __name__ == "__main__":
    sys.exit(main())
