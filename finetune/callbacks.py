"""Trainer callbacks: a progress bar with loss and tokens/s, and MLflow tracking."""

from __future__ import annotations

import resource
import sys
import time
from typing import Any

from transformers import TrainerCallback

__all__ = ["MLflowTracking", "ProgressBar", "peak_rss_mb"]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # ru_maxrss is KiB on Linux


class ProgressBar(TrainerCallback):
    """tqdm on stderr: loss, learning rate and real (non-padding) tokens per second.

    Throughput counts only time inside optimizer steps, not evaluation or checkpoint saving.
    """

    def __init__(self, collator: Any):
        self.collator = collator
        self.bar = None
        self.step_time = 0.0
        self.step_tokens = 0
        self.steps = 0
        self._t0 = 0.0
        self._mark = 0        # collator.tokens_seen when the last step's batches had been counted
        self._this_step = 0
        self.first_step_time: float | None = None

    def on_train_begin(self, args, state, control, **kw):
        from tqdm.auto import tqdm

        self._mark = self.collator.tokens_seen
        self.bar = tqdm(total=state.max_steps, initial=state.global_step, desc="train", unit="step",
                        file=sys.stderr, dynamic_ncols=True)

    def on_step_begin(self, args, state, control, **kw):
        # Trainer collates every micro-batch of a step (grad_accum of them) before this hook.
        self._t0 = time.perf_counter()
        self._this_step = self.collator.tokens_seen - self._mark
        self._mark = self.collator.tokens_seen

    def on_evaluate(self, args, state, control, **kw):
        self._mark = self.collator.tokens_seen  # the eval batches went through the same collator

    def on_step_end(self, args, state, control, **kw):
        dt = time.perf_counter() - self._t0
        tokens = self._this_step
        if self.first_step_time is None:
            self.first_step_time = dt  # warm-up step, reported apart
        else:
            self.step_time += dt
            self.step_tokens += tokens
            self.steps += 1
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)

    @property
    def tokens_per_s(self) -> float:
        return self.step_tokens / self.step_time if self.step_time else 0.0

    @property
    def s_per_step(self) -> float:
        return self.step_time / self.steps if self.steps else (self.first_step_time or 0.0)

    def on_log(self, args, state, control, logs=None, **kw):
        if self.bar is None or not logs:
            return
        post = {}
        if "loss" in logs:
            post["loss"] = f"{logs['loss']:.3f}"
        if "eval_loss" in logs:
            post["eval"] = f"{logs['eval_loss']:.3f}"
            self.bar.write(f"step {state.global_step}: eval_loss {logs['eval_loss']:.4f}", file=sys.stderr)
        if "learning_rate" in logs:
            post["lr"] = f"{logs['learning_rate']:.2e}"
        if self.tokens_per_s:
            post["tok/s"] = f"{self.tokens_per_s:.0f}"
        self.bar.set_postfix(post, refresh=True)

    def on_train_end(self, args, state, control, **kw):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class MLflowTracking(TrainerCallback):
    """Per-step metrics to a started ``finetune.tracking.Tracker`` run (params are logged by the recipe)."""

    def __init__(self, tracker: Any, progress: ProgressBar | None = None):
        self.tracker, self.progress = tracker, progress

    def on_log(self, args, state, control, logs=None, **kw):
        if not logs:
            return
        metrics = {k: float(v) for k, v in logs.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if self.progress is not None and self.progress.tokens_per_s:
            metrics["tokens_per_s"] = self.progress.tokens_per_s
        metrics["peak_rss_mb"] = peak_rss_mb()
        self.tracker.log_metrics(metrics, step=state.global_step)
