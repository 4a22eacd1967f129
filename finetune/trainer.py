"""The Trainer ragtune trains with: the LM head runs only where the loss looks.

The loss covers answer tokens only (the prompt and the passages are labelled -100), typically
5-15% of a RAFT example. A causal LM still projects every position onto the vocabulary
(SmolLM2: 576 x 49,152, a fifth of the model's multiply-adds per token) and keeps those logits,
4 x 512 x 49,152 floats per step, for the backward pass. transformers 5 takes a boolean
``logits_to_keep`` mask and projects only the kept positions, so the step does less work and holds
far less memory; the loss is the same cross-entropy over the same tokens.

:func:`training_arguments` turns a ``QLoRAConfig`` into the ``TrainingArguments`` the recipe runs with.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from transformers import Trainer, TrainingArguments

from finetune.config import QLoRAConfig

IGNORE = -100


def training_arguments(cfg: QLoRAConfig, output_dir: Path, *, optimizer: str, cuda: bool, has_eval: bool,
                       run_name: str) -> TrainingArguments:
    """The ``QLoRAConfig`` as transformers ``TrainingArguments``: checkpoints in ``output_dir``, the
    best one (lowest eval loss) kept and loaded at the end, mixed precision where the device has it."""
    bf16 = cfg.compute_dtype == "bfloat16" and (not cuda or torch.cuda.is_bf16_supported())
    return TrainingArguments(
        output_dir=str(output_dir), max_steps=cfg.max_steps, num_train_epochs=cfg.epochs,
        per_device_train_batch_size=cfg.batch_size, per_device_eval_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum, learning_rate=cfg.lr, lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup_ratio, weight_decay=cfg.weight_decay, max_grad_norm=cfg.max_grad_norm,
        optim=optimizer, bf16=bf16, fp16=cfg.compute_dtype == "float16" and cuda, use_cpu=not cuda,
        logging_steps=cfg.logging_steps, eval_strategy="steps" if has_eval else "no", eval_steps=cfg.eval_every,
        save_strategy="steps", save_steps=cfg.checkpoint_every, save_total_limit=cfg.keep_checkpoints,
        load_best_model_at_end=has_eval, metric_for_best_model="eval_loss", greater_is_better=False,
        seed=cfg.seed, data_seed=cfg.seed, report_to=["wandb"] if cfg.report_to == "wandb" else "none",
        run_name=run_name, remove_unused_columns=False, dataloader_num_workers=0,
        dataloader_pin_memory=False, disable_tqdm=True, ddp_find_unused_parameters=False,
    )


def scored_positions(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mask over positions whose *next* token is scored, those next tokens), for a causal LM."""
    nxt = labels[:, 1:]
    mask = torch.zeros_like(labels, dtype=torch.bool)
    mask[:, :-1] = nxt != IGNORE
    return mask, nxt[nxt != IGNORE]


class AnswerOnlyTrainer(Trainer):
    def compute_loss(self, model, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: torch.Tensor | int | None = None):
        labels = inputs["labels"]
        mask, targets = scored_positions(labels)
        outputs = model(**{k: v for k, v in inputs.items() if k != "labels"}, logits_to_keep=mask)
        logits = outputs.logits.float()  # (scored tokens, vocab)
        loss = F.cross_entropy(logits, targets, reduction="sum")
        if num_items_in_batch is not None:
            # Normalised over the whole accumulated batch, as transformers' own causal-LM loss does
            # when it is given num_items_in_batch (so gradient accumulation weighs tokens equally).
            self.loss_is_scaled_for_ga = True
            loss = loss / num_items_in_batch
            if self.args.average_tokens_across_devices:
                loss = loss * (self.accelerator.num_processes if self.args.n_gpu <= 1 else self.args.n_gpu)
        else:
            self.loss_is_scaled_for_ga = False
            loss = loss / max(1, targets.numel())
        return (loss, outputs) if return_outputs else loss
