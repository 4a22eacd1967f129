"""Run configurations over a reference set and score them.

A configuration is an LLM spec (or none: retrieval only) and a retrieval mode, with ``k``. The
command line builds the cross product of ``--llm`` and ``--retrieval``; a grid file (TOML or
YAML) can list them instead::

    # eval-grid.toml -- python -m eval data/eval/sample.jsonl --grid eval-grid.toml
    llm = ["", "hf:./models/merged"]      # cross product of these two lists ...
    retrieval = ["dense", "hybrid"]
    [[configs]]                           # ... plus any configuration spelled out
    name = "smol-bm25-k8"
    llm = ""
    retrieval = "bm25"
    k = 8

Each LLM is loaded once (one :class:`rag.RAG` per spec) and serves all retrieval modes it is
paired with; the embedder and store are opened once per spec as well.
"""

from __future__ import annotations

import sys
import time
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from eval import metrics as M
from eval.dataset import Example
from rag.errors import ConfigError

__all__ = [
    "DEFAULT_LLM_NAMES",
    "RETRIEVAL_DEPTH",
    "ConfigResult",
    "EvalConfig",
    "aggregate",
    "build_configs",
    "evaluate",
    "load_grid",
]

RETRIEVAL_DEPTH = 10          # passages scored for hit@k / MRR (MRR@10)
DEFAULT_LLM_NAMES = {"default", "smollm2-default"}  # spellings of the packaged model on the command line


@dataclass(slots=True)
class EvalConfig:
    """One row of the comparison."""

    name: str
    retrieval: str
    llm: str | None = None     # None = retrieval only; "" = the packaged default LLM
    k: int = 5

    @property
    def full(self) -> bool:
        return self.llm is not None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "llm": self.llm, "retrieval": self.retrieval, "k": self.k}


@dataclass
class ConfigResult:
    config: EvalConfig
    rows: list[dict[str, Any]]
    metrics: dict[str, float | None]
    ci: dict[str, list[float] | None]
    seconds: float
    warnings: list[str] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.rows)

    def values(self, metric: str) -> list[Any]:
        return [r["metrics"].get(metric) for r in self.rows]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.config.name, "llm": self.config.llm, "retrieval": self.config.retrieval,
                "k": self.config.k, "n": self.n, "metrics": self.metrics, "ci": self.ci,
                "seconds": round(self.seconds, 3), "warnings": self.warnings}


def _llm_label(spec: str | None) -> str:
    if spec is None:
        return "none"
    if spec == "":
        return "default"
    tail = spec.replace("\\", "/").rstrip("/").split("/")[-1]
    return tail if len(tail) <= 40 else tail[:37] + "..."


def _config_name(llm: str | None, mode: str, k: int, default_k: int) -> str:
    name = mode if llm is None else f"{_llm_label(llm)}/{mode}"
    return name if k == default_k else f"{name}/k{k}"


def _norm_llm(spec: str | None) -> str | None:
    if spec is None:
        return None
    return "" if spec.strip().lower() in DEFAULT_LLM_NAMES else spec.strip()


def build_configs(llms: Sequence[str] | None, modes: Sequence[str] | None, *, k: int,
                  default_mode: str) -> list[EvalConfig]:
    """The cross product of LLM specs (none = retrieval only) and retrieval modes."""
    specs: list[str | None] = [_norm_llm(s) for s in llms] if llms else [None]
    modes = list(dict.fromkeys(modes or [default_mode]))
    out, seen = [], set()
    for spec in dict.fromkeys(specs):
        for mode in modes:
            name = _config_name(spec, mode, k, k)
            if name in seen:
                continue
            seen.add(name)
            out.append(EvalConfig(name, mode, spec, k))
    return out


def load_grid(path: str | Path, *, k: int, default_mode: str) -> list[EvalConfig]:
    """Configurations from a TOML or YAML grid file (see the module docstring).

    Raises:
        ConfigError: unreadable file, or entries without a retrieval mode / with bad fields.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such grid file: {path}")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            data = tomllib.loads(text)
    except Exception as e:
        raise ConfigError(f"{path}: cannot parse grid file: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a table with 'llm' / 'retrieval' lists or [[configs]]")
    k = int(data.get("k", k))
    as_list = lambda v: v if isinstance(v, list) else [v]
    configs: list[EvalConfig] = []
    if "llm" in data or "retrieval" in data:
        llms = as_list(data["llm"]) if "llm" in data else None
        modes = as_list(data.get("retrieval", default_mode))
        configs += build_configs(llms, modes, k=k, default_mode=default_mode)
    problems = []
    for i, entry in enumerate(data.get("configs", []) or []):
        if not isinstance(entry, dict) or "retrieval" not in entry and "llm" not in entry:
            problems.append(f"configs[{i}]: expected a table with 'retrieval' and/or 'llm'")
            continue
        unknown = set(entry) - {"name", "llm", "retrieval", "k"}
        if unknown:
            problems.append(f"configs[{i}]: unknown field(s) {', '.join(sorted(unknown))} "
                            "(known: name, llm, retrieval, k)")
            continue
        spec = _norm_llm(entry.get("llm"))
        mode = entry.get("retrieval", default_mode)
        ck = int(entry.get("k", k))
        configs.append(EvalConfig(entry.get("name") or _config_name(spec, mode, ck, k), mode, spec, ck))
    if problems:
        raise ConfigError(f"{path}: invalid grid:\n  " + "\n  ".join(problems))
    names = [c.name for c in configs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"{path}: duplicate configuration name(s): {', '.join(dupes)}")
    if not configs:
        raise ConfigError(f"{path}: no configurations (give 'retrieval' / 'llm' lists or [[configs]])")
    return configs


# --- running ---------------------------------------------------------------------------------

def _ask(rag: Any, question: str, k: int, mode: str) -> Any:
    """``rag.ask``; until the chain is wired into ``RAG.ask``, the same chain called directly."""
    try:
        return rag.ask(question, k=k, mode=mode)
    except NotImplementedError:
        from rag import chain

        return chain.answer(question, retrieve=partial(rag.retrieve, k=k, mode=mode), llm=rag.llm,
                            settings=rag.settings)


def _score_row(ex: Example, config: EvalConfig, hits: Sequence[Any], prediction: str | None,
               contexts: Sequence[str] | None) -> dict[str, Any]:
    """Per-question metrics; ``contexts`` = passage texts the answer was generated from."""
    m: dict[str, Any] = M.retrieval_scores(hits, ex.sources, config.k)
    ctx = list(contexts) if contexts is not None else [h.text for h in hits[:config.k]]
    m["answer_recall"] = M.answer_recall(ex.answers, ctx)
    if prediction is not None:
        m.update(M.answer_scores(prediction, ex.answers))
        m["groundedness_lexical"] = M.groundedness_lexical(prediction, ctx)
    return m


def evaluate(examples: Sequence[Example], configs: Sequence[EvalConfig], settings: Any, *,
             rag_factory: Callable[..., Any] | None = None, judge: str | None = None,
             n_boot: int = 1000, seed: int = 0, log: Callable[[str], None] | None = None) -> list[ConfigResult]:
    """Run every configuration over the examples.

    Args:
        examples: the reference set (:func:`eval.dataset.load_dataset`).
        configs: what to compare (:func:`build_configs` / :func:`load_grid`).
        settings: the settings tree; each LLM spec gets ``RAG(settings=settings, llm=spec)``.
        rag_factory: replaces :class:`rag.RAG` (tests).
        judge: an LLM spec (or catalogue name) grading each answer (:class:`eval.judge.Judge`): adds
            ``judge_correct``, ``judge_grounded``, ``judge_unparsed`` and ``judge_kappa_f1``; off if None.
        n_boot, seed: bootstrap resamples and seed for the confidence intervals.
        log: progress lines (default: stderr).

    Returns:
        One :class:`ConfigResult` per configuration, in order.
    """
    if rag_factory is None:
        from rag import RAG as rag_factory
    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    by_llm: dict[str | None, list[EvalConfig]] = {}
    for c in configs:
        by_llm.setdefault(c.llm, []).append(c)
    results: dict[str, ConfigResult] = {}
    judge_llm = None
    for spec, group in by_llm.items():
        rag = rag_factory(settings=settings, llm=spec) if spec is not None else rag_factory(settings=settings)
        try:
            warnings = []
            try:
                if rag.store.count() == 0:
                    warnings.append(f"the index at {rag.settings.store_uri} is empty: every retrieval metric "
                                    "will be 0 (ingest first, e.g. with --ingest PATH)")
                    log("warning: " + warnings[-1])
            except Exception as e:  # noqa: BLE001 - a store without count() is still usable
                log(f"note: could not count the index ({e.__class__.__name__}); continuing")
            if judge and judge_llm is None:
                from eval.judge import Judge
                from rag.llms import open_llm

                judge_llm = Judge(open_llm(_norm_llm(judge) or "", settings))
            for config in group:
                results[config.name] = _run_one(rag, examples, config, judge_llm, n_boot, seed, log)
                results[config.name].warnings += warnings
        finally:
            close = getattr(rag, "close", None)
            if close:
                close()
    return [results[c.name] for c in configs]


def _run_one(rag: Any, examples: Sequence[Example], config: EvalConfig, judge_llm: Any, n_boot: int,
             seed: int, log: Callable[[str], None]) -> ConfigResult:
    log(f"[{config.name}] {len(examples)} questions, retrieval={config.retrieval}, k={config.k}, "
        f"llm={'none' if config.llm is None else (config.llm or 'default')}")
    t_start = time.perf_counter()
    depth = max(config.k, RETRIEVAL_DEPTH)
    rows: list[dict[str, Any]] = []
    predictions: list[str | None] = []
    every = max(50, len(examples) // 10)
    # Load the models before timing: the first question would otherwise carry the load time.
    if examples:
        rag.retrieve(examples[0].question, k=config.k, mode=config.retrieval)
    if config.full:
        _ = rag.llm
    for i, ex in enumerate(examples, 1):
        t0 = time.perf_counter()
        hits = rag.retrieve(ex.question, k=depth, mode=config.retrieval)
        t_ret = time.perf_counter() - t0
        latency: dict[str, float] = {"retrieval_s": t_ret, "latency_s": t_ret}
        prediction = contexts = None
        tokens = None
        if config.full:
            t0 = time.perf_counter()
            ans = _ask(rag, ex.question, config.k, config.retrieval)
            total = time.perf_counter() - t0
            timings = getattr(ans, "timings", None) or {}
            prediction = ans.text
            contexts = [s.text for s in ans.sources]
            latency = {"retrieval_s": float(timings.get("retrieve_s", t_ret)),
                       "generation_s": float(timings.get("generate_s", total - timings.get("retrieve_s", 0.0))),
                       "latency_s": float(timings.get("total_s", total))}
            tokens = (getattr(ans, "tokens", None) or {}).get("completion")
            if tokens is None:
                tokens = len(prediction.split())
        m = _score_row(ex, config, hits, prediction, contexts)
        if config.full and hasattr(ans, "sources") and hasattr(ans, "flags"):
            m.update(M.citation_scores(ans, ex.sources))
        verdict = None
        if config.full and judge_llm is not None:
            verdict = judge_llm.grade(ex.question, ex.answers, prediction, contexts)
            m["judge_correct"], m["judge_grounded"] = verdict.correct, verdict.grounded
        m.update(latency)
        if tokens is not None:
            m["tokens_generated"] = float(tokens)
        row = {"config": config.name, "id": ex.id, "question": ex.question, "references": ex.answers,
               "sources": [{"source": r.source, "page": r.page, **({"pages": list(r.pages)} if r.pages else {})}
                           for r in ex.sources],
               "retrieved": [{"source": h.source, "page": h.page, "score": round(float(h.score), 6)}
                             for h in hits],
               "metrics": m}
        if config.full:
            row["prediction"] = prediction
            row["context_sources"] = [{"source": s.source, "page": s.page} for s in ans.sources]
        if verdict is not None:
            row["judge"] = {"replies": verdict.replies, "unparsed": verdict.unparsed}
        rows.append(row)
        predictions.append(prediction)
        if i % every == 0 and i < len(examples):
            log(f"[{config.name}] {i}/{len(examples)}")
    if config.full:
        _add_semantic(rag, examples, rows, predictions)
    metrics, ci = aggregate(rows, n_boot=n_boot, seed=seed)
    if config.full and judge_llm is not None:
        _add_judge_summary(rows, metrics, ci)
    seconds = time.perf_counter() - t_start
    log(f"[{config.name}] done in {seconds:.1f}s")
    return ConfigResult(config, rows, metrics, ci, seconds)


def _add_semantic(rag: Any, examples: Sequence[Example], rows: list[dict[str, Any]],
                  predictions: Sequence[str | None]) -> None:
    """Cosine similarity of each prediction with its closest reference, in the configured embedder."""
    emb = rag.embedder
    preds = [p or "" for p in predictions]
    refs = [a for ex in examples for a in ex.answers]
    pv = emb.embed(preds)
    rv = emb.embed(refs)
    j = 0
    for row, ex, p, vec in zip(rows, examples, preds, pv):
        n = len(ex.answers)
        row["metrics"]["semantic"] = M.cosine_best(vec, rv[j:j + n]) if p.strip() else 0.0
        j += n


def _add_judge_summary(rows: Sequence[dict[str, Any]], metrics: dict[str, float | None],
                       ci: dict[str, list[float] | None]) -> None:
    """Run-level judge figures (no bootstrap interval): replies without a verdict word, and
    Cohen's kappa between the judge's correctness and F1 >= 0.5 (None when undefined)."""
    from eval.judge import cohen_kappa

    metrics["judge_unparsed"] = int(sum(r.get("judge", {}).get("unparsed", 0) for r in rows))
    f1_ok = [None if r["metrics"].get("f1") is None else r["metrics"]["f1"] >= 0.5 for r in rows]
    judged = [None if r["metrics"].get("judge_correct") is None else r["metrics"]["judge_correct"] == 1.0
              for r in rows]
    metrics["judge_kappa_f1"] = cohen_kappa(judged, f1_ok)
    ci["judge_unparsed"] = ci["judge_kappa_f1"] = None


def aggregate(rows: Sequence[dict[str, Any]], *, n_boot: int = 1000, seed: int = 0
              ) -> tuple[dict[str, float | None], dict[str, list[float] | None]]:
    """Means over questions (None values skipped) and bootstrap 95% intervals per metric."""
    names: list[str] = []
    for r in rows:
        names += [k for k in r["metrics"] if k not in names]
    metrics: dict[str, float | None] = {}
    ci: dict[str, list[float] | None] = {}
    for name in names:
        vals = [r["metrics"].get(name) for r in rows]
        metrics[name] = M.mean(vals)
        interval = M.bootstrap_ci(vals, n_boot=n_boot, seed=seed)
        ci[name] = [interval[0], interval[1]] if interval else None
    return metrics, ci
