"""The Trainer ragtune trains with: the LM head runs only where the loss looks.

The loss covers answer tokens only (the prompt and the passages are labelled -100), typically
5-15% of a RAFT example. A causal LM still projects every position onto the vocabulary
(SmolLM2: 576 x 49,152, a fifth of the model's multiply-adds per token) and keeps those logits,
4 x 512 x 49,152 floats per step, for the backward pass. transformers 5 takes a boolean
``logits_to_keep`` mask and projects only the kept positions, so the step does less work and holds
far less memory; the loss is the same cross-entropy over the same tokens.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from transformers import Trainer

IGNORE = -100


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
