"""The closed loop's parameters: one typed section per stage, from ``params.yaml`` and overrides.

Precedence: field defaults < ``--params FILE`` < DOCS / ``--out`` < ``section.key=value`` overrides.
Values are converted and checked by the parser ``python -m finetune.qlora`` uses
(:func:`finetune.config.coerce_layers`), and every problem is reported at once. The ``finetune``
section takes any QLoRA key (``python -m finetune.qlora --help-config``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from finetune.config import QLoRAConfig, coerce_layers, param, parse_overrides, read_yaml
from rag.errors import ConfigError

__all__ = ["ALL_STAGES", "STAGES", "LoopParams", "load_params", "overrides_tree", "stage_order"]

STAGES = ("ingest", "synthesise", "split", "finetune", "eval")
# ``teach`` runs only with a teacher (``teacher.model``); without one the loop and its stage hashes
# are exactly those of STAGES.
ALL_STAGES = ("ingest", "synthesise", "split", "teach", "finetune", "eval")


@dataclass
class IngestParams:
    chunk_size: int = param(1000, "Characters per chunk.")
    chunk_overlap: int = param(200, "Characters shared by neighbouring chunks.")


@dataclass
class SynthesiseParams:
    generator: str | None = param("extractive", "extractive (no LLM) or an LLM spec: smollm2, hf:ID, gguf:PATH, "
                                  "openai:MODEL.")
    per_chunk: int = param(2, "Questions per chunk at most.")
    max_examples: int = param(2000, "Questions kept at most.")
    max_answer_words: int = param(20, "Longer answers are dropped (answer_too_long).")
    seed: int = param(42, "Seeds the chunk order.")


@dataclass
class SplitParams:
    val: float = param(0.15, "Fraction of the documents whose questions are the val set.")
    test: float = param(0.25, "Fraction of the documents held out for test (unless test_docs names them).")
    seed: int = param(42, "Seeds the document order.")
    test_docs: list[str] = param([], "Held-out documents by name, e.g. [gettysburg.pdf].")  # noqa: RUF009 - copied
    max_val: int | None = param(40, "Val questions kept (eval loss runs over all of them each time).")


@dataclass
class TeacherParams:
    model: str | None = param(None, "Teacher LLM spec (catalogue name, gguf:PATH, hf:ID, openai:MODEL); "
                              "null: train on the synthesised answers.")
    distractors: int = param(2, "Retrieved passages shown with the golden one in the teacher's prompt.")
    mode: str = param("hybrid", "Retrieval mode for the distractors.")
    max_words: int = param(30, "Longer teacher answers are dropped (too_long).")
    max_new_tokens: int = param(64, "Teacher answer tokens at most.")
    style: str = param("phrase", "Answer style the teacher is asked for: sentence (one short sentence) or "
                       "phrase (the bare answer span, as SQuAD's references are).")
    questions: bool = param(False, "The teacher also writes the training questions (same filters as synthesise).")
    attribute: bool = param(False, "Keep an uncited answer grounded in the golden passage (counted "
                            "'attributed'), as the chain does.")
    recite: bool = param(False, "Keep an answer that cites only other passages when it is grounded in the "
                         "golden passage (counted 'recited'; the student's target is cited at the golden "
                         "passage anyway).")
    limit: int | None = param(None, "Train (and val) questions the teacher answers at most (null: all).")
    threads: int = param(0, "CPU threads for the teacher; 0 = llm.threads from settings.")


@dataclass
class RetrievalParams:
    k: int = param(3, "Passages in the prompt, for training rows and eval.")
    mode: str = param("hybrid", "Retrieval mode for training rows and eval.")


FINETUNE_DEFAULTS: dict[str, Any] = {"base": "smollm2", "max_steps": 100, "max_seq_len": 1024, "batch_size": 1,
                                     "eval_every": 25, "lr": 2e-4, "rank": 16, "threads": 0}


@dataclass
class EvalParams:
    limit: int | None = param(100, "Test questions at most (0 or null: all).")
    max_new_tokens: int = param(32, "Answer tokens at most.")
    threads: int = param(0, "CPU threads for generation; 0 = llm.threads from settings.")
    bootstrap: int = param(1000, "Bootstrap resamples for the confidence intervals.")
    seed: int = param(0, "Seeds the bootstrap.")
    dataset: str | None = param(None, "An eval-format JSONL to use instead of the synthesised test split.")


@dataclass
class MlflowParams:
    enabled: bool = param(True, "Track the loop in MLflow and register the adapter.")
    tracking_uri: str | None = param(None, "Default sqlite:///DATA_DIR/mlflow.db (artifacts in DATA_DIR/mlartifacts).")
    experiment: str = param("ragtune-loop", "MLflow experiment.")
    registered_model: str = param("ragtune-loop-adapter", "Registered model the adapter becomes a version of.")
    champion_metric: str = param("f1", "Adapter metric on the test set that decides the `champion` alias.")


@dataclass
class LoopParams:
    """Everything one pipeline run needs; ``params.yaml`` lists every key."""

    docs: str | None = param(None, "Folder or file to ingest (DOCS on the command line).")
    out: str | None = param(None, "Pipeline folder (--out): everything the loop writes.")
    ingest: IngestParams = field(default_factory=IngestParams)
    synthesise: SynthesiseParams = field(default_factory=SynthesiseParams)
    split: SplitParams = field(default_factory=SplitParams)
    teacher: TeacherParams = field(default_factory=TeacherParams)
    retrieval: RetrievalParams = field(default_factory=RetrievalParams)
    finetune: dict[str, Any] = param(FINETUNE_DEFAULTS, "Any finetune.qlora key.",  # noqa: RUF009 - copied
                                     keys=QLoRAConfig)
    eval: EvalParams = field(default_factory=EvalParams)
    mlflow: MlflowParams = field(default_factory=MlflowParams)

    def problems(self) -> list[str]:
        """Range checks on top of the types (which :func:`load_params` has already checked)."""
        p = []
        if not self.docs:
            p.append("docs: give DOCS (a folder or file to ingest) or `docs:` in the params file")
        if not self.out:
            p.append("out: give --out DIR or `out:` in the params file")
        if self.synthesise.per_chunk < 1:
            p.append(f"synthesise.per_chunk: must be an integer >= 1 (got {self.synthesise.per_chunk!r})")
        for key in ("val", "test"):
            value = getattr(self.split, key)
            if not 0 <= value < 1:
                p.append(f"split.{key}: must be in [0, 1) (got {value!r})")
        if self.teacher.distractors < 0 or self.teacher.max_words < 1:
            p.append("teacher.distractors / teacher.max_words: must be >= 0 / >= 1 "
                     f"(got {self.teacher.distractors!r} / {self.teacher.max_words!r})")
        if self.teacher.style not in ("sentence", "phrase"):
            p.append(f"teacher.style: must be sentence or phrase (got {self.teacher.style!r})")
        if self.retrieval.k < 1:
            p.append(f"retrieval.k: must be an integer >= 1 (got {self.retrieval.k!r})")
        try:
            QLoRAConfig(**self.finetune)
        except ConfigError as e:
            p.extend(f"finetune.{line.strip()}" for line in str(e).splitlines()[1:])
        return p

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def stage_order(params: LoopParams) -> tuple[str, ...]:
    """The stages this run has: ``teach`` only when a teacher is set."""
    return ALL_STAGES if params.teacher.model else STAGES


def overrides_tree(items: Iterable[str]) -> dict[str, Any]:
    """``["finetune.lr=1e-4", "docs=x"]`` -> ``{"finetune": {"lr": "1e-4"}, "docs": "x"}``.

    Raises:
        ConfigError: an item that is not ``key=value``.
    """
    tree: dict[str, Any] = {}
    for dotted, value in parse_overrides(items).items():
        *parents, last = dotted.split(".")
        node = tree
        for part in parents:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[last] = value
    return tree


def load_params(path: str | Path | None = None, overrides: Iterable[str] = (), *, docs: str | None = None,
                out: str | None = None) -> LoopParams:
    """Defaults < params file < DOCS / ``--out`` < ``section.key=value`` overrides.

    Raises:
        ConfigError: every unknown key, wrong type and out-of-range value, together.
    """
    layers: list[tuple[str, Mapping[str, Any]]] = []
    if path:
        layers.append((str(path), read_yaml(Path(path), "params file")))
    layers.append(("flags", {k: v for k, v in {"docs": docs, "out": out}.items() if v is not None}))
    layers.append(("overrides", overrides_tree(overrides)))
    values, problems = coerce_layers(LoopParams, layers)
    params = LoopParams(**values)
    problems += params.problems()
    if problems:
        raise ConfigError("invalid loop parameters:\n" + "\n".join(f"  {p}" for p in problems))
    return params
