"""Training data: JSONL rows -> chat-formatted token ids with answer-only labels, packed or padded.

Rows are either ``{"instruction": ..., "input": ..., "output": ...}`` (``input`` optional) or
``{"messages": [{"role": "system"|"user"|"assistant", "content": ...}, ...]}``. Other keys
(``id``, ``meta``) are ignored. Text is formatted with the base model's own chat template and
only the assistant turns (content plus the end-of-turn token) carry labels; every other label is
-100, so the loss is on the answers alone.

Packing puts several examples into one sequence of ``max_seq_len`` tokens. Position ids restart
at each example and no attention mask is passed, which makes transformers build a block-diagonal
causal mask: examples never attend to each other, and no compute is spent on padding.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rag.errors import DataError
from rag.jsonl import raise_problems, read_jsonl

__all__ = [
    "Example",
    "PackedCollator",
    "PaddedCollator",
    "Tokenized",
    "build_dataset",
    "data_hash",
    "load_jsonl",
    "pack",
    "split",
    "tokenize_all",
    "tokenize_example",
]

IGNORE_INDEX = -100
_ROLES = {"system", "user", "assistant"}
# Used only when a tokenizer has no chat template of its own.
CHATML_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@dataclass(slots=True)
class Example:
    """One conversation; the assistant turns are what the model learns to produce."""

    messages: list[dict[str, str]]
    line: int = 0


def _row_to_messages(row: Any, where: str) -> list[dict[str, str]]:
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}")
    if "messages" in row:
        msgs = row["messages"]
        if not isinstance(msgs, list) or not msgs:
            raise DataError(f"{where}: field 'messages' must be a non-empty list")
        out = []
        for i, m in enumerate(msgs):
            if not isinstance(m, dict):
                raise DataError(f"{where}: field 'messages[{i}]' must be an object with role and content")
            role, content = m.get("role"), m.get("content")
            if role not in _ROLES:
                raise DataError(f"{where}: field 'messages[{i}].role' must be one of "
                                f"{sorted(_ROLES)} (got {role!r})")
            if not isinstance(content, str):
                raise DataError(f"{where}: field 'messages[{i}].content' must be a string")
            out.append({"role": role, "content": content})
        if not any(m["role"] == "assistant" and m["content"].strip() for m in out):
            raise DataError(f"{where}: field 'messages' has no non-empty assistant turn to learn from")
        return out
    for key in ("instruction", "output"):
        if key not in row:
            raise DataError(f"{where}: field '{key}' is missing (rows need instruction, output and "
                            "optionally input, or a messages list)")
        if not isinstance(row[key], str) or not row[key].strip():
            raise DataError(f"{where}: field '{key}' must be a non-empty string")
    extra = row.get("input", "")
    if extra is None:
        extra = ""
    if not isinstance(extra, str):
        raise DataError(f"{where}: field 'input' must be a string")
    prompt = row["instruction"].strip() + (f"\n\n{extra.strip()}" if extra.strip() else "")
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": row["output"].strip()}]


def load_jsonl(path: str | Path) -> list[Example]:
    """Read and validate a training file.

    Raises:
        DataError: for a missing file, an empty file, or malformed rows; every bad row (up to 20)
            is listed as ``FILE:LINE: field 'NAME' ...``.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"training data not found: {path}")
    problems: list[str] = []
    examples = []
    for n, row, problem in read_jsonl(path):
        if problem:
            problems.append(problem)
            continue
        try:
            examples.append(Example(_row_to_messages(row, f"{path}:{n}"), n))
        except DataError as e:
            problems.append(str(e))
    raise_problems(path, problems, "row")
    if not examples:
        raise DataError(f"{path}: no training rows (expected JSON lines with instruction/output or messages)")
    return examples


def data_hash(examples: Sequence[Example]) -> str:
    """sha256 of the normalised conversations: the same data hashes the same in either row format."""
    h = hashlib.sha256()
    for ex in examples:
        h.update(json.dumps(ex.messages, sort_keys=True, ensure_ascii=False).encode())
        h.update(b"\n")
    return "sha256:" + h.hexdigest()


def split(examples: Sequence[Example], eval_fraction: float, seed: int) -> tuple[list[Example], list[Example]]:
    """Deterministic train / held-out split (at least one eval example when eval_fraction > 0)."""
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    n_eval = 0
    if eval_fraction > 0 and len(examples) >= 2:
        n_eval = min(len(examples) - 1, max(1, round(len(examples) * eval_fraction)))
    eval_idx = set(order[:n_eval])
    train = [ex for i, ex in enumerate(examples) if i not in eval_idx]
    held = [ex for i, ex in enumerate(examples) if i in eval_idx]
    return train, held


@dataclass(slots=True)
class Tokenized:
    input_ids: list[int]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.input_ids)


def ensure_chat_template(tokenizer: Any) -> bool:
    """Give a template-less tokenizer ChatML; returns True when it had to."""
    if getattr(tokenizer, "chat_template", None):
        return False
    tokenizer.chat_template = CHATML_TEMPLATE
    return True


def _render(tokenizer: Any, messages: list[dict[str, str]], generation_prompt: bool = False) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


def tokenize_example(tokenizer: Any, messages: list[dict[str, str]], max_seq_len: int) -> Tokenized:
    """Token ids of the chat-formatted conversation; labels only on assistant turns.

    Each assistant span is found by rendering the conversation up to that turn with and without
    the turn (chat templates are prefix-consistent), so the span includes the end-of-turn token
    the model must learn to emit. Tokens are mapped to spans through character offsets.
    """
    full = _render(tokenizer, messages)
    spans = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        start = len(_render(tokenizer, messages[:i], generation_prompt=True)) if i else 0
        end = len(_render(tokenizer, messages[: i + 1]))
        spans.append((start, end))
    enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    labels = [IGNORE_INDEX] * len(ids)
    s = 0
    for j, (a, b) in enumerate(offsets):
        while s < len(spans) and a >= spans[s][1]:
            s += 1
        if s < len(spans) and spans[s][0] <= a < spans[s][1] and b > a:
            labels[j] = ids[j]
    return Tokenized(ids[:max_seq_len], labels[:max_seq_len])


def tokenize_all(tokenizer: Any, examples: Sequence[Example], max_seq_len: int) -> tuple[list[Tokenized], int]:
    """Tokenize every example; drops (and counts) those whose answer is cut off entirely by max_seq_len."""
    out, dropped = [], 0
    for ex in examples:
        t = tokenize_example(tokenizer, ex.messages, max_seq_len)
        if any(label != IGNORE_INDEX for label in t.labels[1:]):
            out.append(t)
        else:
            dropped += 1
    return out, dropped


def pack(lengths: Sequence[int], max_seq_len: int) -> list[list[int]]:
    """First-fit-decreasing bin packing of example indices into sequences of <= max_seq_len tokens.

    Deterministic: ties are broken by index. Bins come out in order of their first example.
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    bins: list[list[int]] = []
    room: list[int] = []
    for i in order:
        n = lengths[i]
        for b, free in enumerate(room):
            if n <= free:
                bins[b].append(i)
                room[b] -= n
                break
        else:
            bins.append([i])
            room.append(max_seq_len - n)
    return sorted(bins, key=min)


class SequenceDataset:
    """A list of feature dicts (what Trainer's dataloader indexes)."""

    def __init__(self, rows: list[dict[str, list[int]]]):
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, list[int]]:
        return self.rows[i]

    @property
    def tokens(self) -> int:
        return sum(len(r["input_ids"]) for r in self.rows)


def build_dataset(items: Sequence[Tokenized], max_seq_len: int, packing: bool) -> SequenceDataset:
    """Rows of input_ids / labels (+ position_ids restarting per example when packed)."""
    if not packing:
        return SequenceDataset([{"input_ids": t.input_ids, "labels": t.labels} for t in items])
    rows = []
    for b in pack([len(t) for t in items], max_seq_len):
        ids, labels, pos = [], [], []
        for i in b:
            ids += items[i].input_ids
            labels += items[i].labels
            pos += range(len(items[i]))
        rows.append({"input_ids": ids, "labels": labels, "position_ids": pos})
    return SequenceDataset(rows)


@dataclass
class _Counting:
    pad_id: int
    tokens_seen: int = 0       # real (non-padding) tokens handed out so far
    padded_tokens: int = 0     # positions including padding
    batches: int = 0
    last_tokens: int = field(default=0)

    def _pad(self, features: list[dict[str, list[int]]], extra) -> dict[str, Any]:
        """Pad ids (pad_id) and labels (ignored) to the longest row; ``extra(f, n, pad)`` adds
        one more per-row field (position ids or an attention mask) and counts the batch."""
        import torch

        width = max(len(f["input_ids"]) for f in features)
        ids, labels, more = [], [], []
        real = 0
        for f in features:
            n = len(f["input_ids"])
            real += n
            pad = width - n
            ids.append(f["input_ids"] + [self.pad_id] * pad)
            labels.append(f["labels"] + [IGNORE_INDEX] * pad)
            more.append(extra(f, n, pad))
        self.tokens_seen += real
        self.padded_tokens += width * len(features)
        self.batches += 1
        self.last_tokens = real
        return {"input_ids": torch.tensor(ids), "labels": torch.tensor(labels), "_extra": torch.tensor(more)}


class PackedCollator(_Counting):
    """Pads packed rows to the longest in the batch; padding is its own segment with label -100.

    No attention_mask is returned on purpose: with position_ids alone transformers derives a
    block-diagonal causal mask from the restarts, so packed examples stay independent.
    """

    def __call__(self, features: list[dict[str, list[int]]]) -> dict[str, Any]:
        out = self._pad(features, lambda f, n, pad: list(f.get("position_ids", range(n))) + list(range(pad)))
        out["position_ids"] = out.pop("_extra")
        return out


class PaddedCollator(_Counting):
    """Dynamic padding to the longest row, with an attention mask (packing=false)."""

    def __call__(self, features: list[dict[str, list[int]]]) -> dict[str, Any]:
        out = self._pad(features, lambda f, n, pad: [1] * n + [0] * pad)
        out["attention_mask"] = out.pop("_extra")
        return out
