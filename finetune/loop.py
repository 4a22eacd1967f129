"""Documents -> synthesised Q&A -> QLoRA adapter -> measured gain, as one resumable pipeline.

    # everything, in order (finished stages are skipped on the next run)
    python -m finetune.loop data/sample --out runs/loop
    python -m finetune.loop data/sample --out runs/loop --params params.yaml finetune.max_steps=200 eval.limit=100

    # one stage (what dvc.yaml calls; `dvc repro` re-runs only what changed)
    python -m finetune.loop --stage finetune --params params.yaml

Stages, each writing under OUT:

- ``ingest``: DOCS into ``OUT/index`` (the embedded store) through :class:`rag.RAG`.
- ``synthesise``: one or more questions per chunk (``extractive`` generator by default: no LLM;
  or any LLM spec, e.g. ``hf:smollm2`` / ``openai:gpt-4o-mini``) to ``OUT/qa.jsonl``, filtered
  (answer grounded in its golden passage, not a copy of a title or of the question, not too long,
  no duplicate question); kept/dropped counts by reason in ``OUT/synth_report.json``.
- ``split``: train / val / test **by document** (``OUT/split/*.jsonl``): test questions come from
  documents the adapter never saw.
- ``finetune``: training rows in the chain's own prompt (the question's real top-k passages,
  golden passage forced in, answer ``span [n]``), then :mod:`finetune.qlora` on train with val as
  its eval set; the adapter in ``OUT/adapter``, registered in MLflow.
- ``eval``: the base model and base + adapter in the same chain, with the same retrieved passages
  and prompt, on the test split (or ``eval.dataset``): EM/F1 with bootstrap 95% CIs, the paired
  difference, retrieval hit@5, in ``OUT/metrics.json``; the adapter's registry version gets the
  metrics as tags and the ``champion`` alias when it beats the current champion.

Each finished stage leaves ``OUT/.stages/NAME.json`` with a hash of its parameters, its inputs and
the stages before it; a changed parameter re-runs that stage and every later one.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import difflib
import hashlib
import json
import math
import os
import random
import re
import shutil
import sys
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rag.errors import ConfigError, DataError, RagtuneError, redact

__all__ = ["DEFAULTS", "STAGES", "build_parser", "load_params", "main", "run"]

STAGES = ("ingest", "synthesise", "split", "finetune", "eval")
DEFAULTS: dict[str, Any] = {
    "docs": None,                       # folder or file to ingest (DOCS on the command line)
    "out": None,                        # pipeline folder (--out)
    "ingest": {"chunk_size": 1000, "chunk_overlap": 200},
    "synthesise": {
        "generator": "extractive",      # extractive | an LLM spec (hf:..., gguf:..., openai:MODEL, smollm2)
        "per_chunk": 2,                 # questions per chunk at most
        "max_examples": 2000,
        "max_answer_words": 20,
        "seed": 42,
    },
    "split": {"val": 0.15, "test": 0.25, "seed": 42, "test_docs": [],
              "max_val": 40},           # val questions kept (eval loss runs over all of them each time)
    "retrieval": {"k": 3, "mode": "hybrid"},   # passages in the prompt, for training rows and eval
    "finetune": {"base": "smollm2", "max_steps": 100, "max_seq_len": 1024, "batch_size": 1,
                 "eval_every": 25, "lr": 2e-4, "rank": 16, "threads": 0},
    "eval": {"limit": 100, "max_new_tokens": 32, "threads": 0, "bootstrap": 1000, "seed": 0,
             "dataset": None},          # dataset: an eval-format JSONL instead of the test split
    "mlflow": {"enabled": True, "tracking_uri": None, "experiment": "ragtune-loop",
               "registered_model": "ragtune-loop-adapter", "champion_metric": "f1"},
}
_FREE_SECTIONS = {"finetune"}  # any QLoRAConfig key may go here; qlora validates them
# markup, clause debris ("What was X wrote Y, but it?") or a subordinate clause as the subject
_MALFORMED = re.compile(r"[#;|\[\]{}<>*]|\s[,:]|^\W|,\s*\w*\?$|,\?|\b(it|but|and|which|that)\?$|"
                        r"^what \w+ (although|while|when|because|if|since|after|before|as|though)\b", re.IGNORECASE)
_FRAGMENT = re.compile(r"^(of|to|and|but|or|that|which|than|for|by|with|as)\b", re.IGNORECASE)
_CITE = re.compile(r"\[\s*(?:passage\s*)?\d+(?:\s*[-,;]\s*\d+)*\s*\]", re.IGNORECASE)


def _log(msg: str) -> None:
    print(f"[loop] {msg}", file=sys.stderr, flush=True)


# --- parameters --------------------------------------------------------------------------------

def _merge(base: dict[str, Any], layer: Mapping[str, Any], origin: str, problems: list[str],
           prefix: str = "") -> None:
    for key, value in layer.items():
        name = f"{prefix}{key}"
        known = base.get(key, ...) if isinstance(base, dict) else ...
        free = prefix.rstrip(".") in _FREE_SECTIONS
        if key not in base and not free:
            close = difflib.get_close_matches(key, list(base), n=1)
            problems.append(f"{name}: unknown key (from {origin})" + (f"; did you mean '{prefix}{close[0]}'?"
                                                                   if close else ""))
            continue
        if isinstance(known, dict):
            if not isinstance(value, Mapping):
                problems.append(f"{name}: expected a mapping (from {origin})")
                continue
            _merge(known, value, origin, problems, f"{name}.")
        else:
            base[key] = value


def _parse_overrides(items: list[str]) -> dict[str, Any]:
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r}: expected key=value (e.g. finetune.max_steps=50)")
        value = yaml.safe_load(raw) if raw.strip() else None
        node = out
        *parents, last = key.strip().split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    return out


def load_params(path: str | Path | None = None, overrides: list[str] = (), *, docs: str | None = None,
                out: str | None = None) -> dict[str, Any]:
    """DEFAULTS < params file < DOCS / --out < ``section.key=value`` overrides.

    Raises:
        ConfigError: every unknown key and bad value, together.
    """
    import yaml

    params = copy.deepcopy(DEFAULTS)
    problems: list[str] = []
    if path:
        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except FileNotFoundError:
            raise ConfigError(f"params file not found: {path}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level")
        _merge(params, data, str(path), problems)
    _merge(params, {k: v for k, v in {"docs": docs, "out": out}.items() if v is not None}, "flags", problems)
    _merge(params, _parse_overrides(list(overrides)), "overrides", problems)
    s, sp = params["synthesise"], params["split"]
    if not params["docs"]:
        problems.append("docs: give DOCS (a folder or file to ingest) or `docs:` in the params file")
    if not params["out"]:
        problems.append("out: give --out DIR or `out:` in the params file")
    if not (isinstance(s["per_chunk"], int) and s["per_chunk"] >= 1):
        problems.append(f"synthesise.per_chunk: must be an integer >= 1 (got {s['per_chunk']!r})")
    for key in ("val", "test"):
        if not (isinstance(sp[key], (int, float)) and 0 <= sp[key] < 1):
            problems.append(f"split.{key}: must be in [0, 1) (got {sp[key]!r})")
    if isinstance(sp["test_docs"], str):
        sp["test_docs"] = [d.strip() for d in sp["test_docs"].split(",") if d.strip()]
    if not (isinstance(params["retrieval"]["k"], int) and params["retrieval"]["k"] >= 1):
        problems.append(f"retrieval.k: must be an integer >= 1 (got {params['retrieval']['k']!r})")
    if problems:
        raise ConfigError("invalid loop parameters:\n" + "\n".join(f"  {p}" for p in problems))
    return params


# --- stage bookkeeping -------------------------------------------------------------------------

def _sha(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _file_sha(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _docs_digest(docs: Path) -> list[tuple[str, str]]:
    files = [docs] if docs.is_file() else sorted(p for p in docs.rglob("*") if p.is_file()
                                                 and not any(part.startswith(".") for part in p.parts))
    return [(str(p.relative_to(docs) if docs.is_dir() else p.name), _file_sha(p)) for p in files]


def fingerprints(params: Mapping[str, Any]) -> dict[str, str]:
    """Each stage's hash: its params, its own inputs, and the hash of the stage before it."""
    docs = Path(params["docs"])
    if not docs.exists():
        raise ConfigError(f"docs: no such file or folder: {docs}")
    dataset = params["eval"]["dataset"]
    own = {
        "ingest": [_docs_digest(docs), params["ingest"]],
        "synthesise": [params["synthesise"]],
        "split": [params["split"]],
        "finetune": [params["finetune"], params["retrieval"]],
        "eval": [params["eval"], params["retrieval"], _file_sha(Path(dataset)) if dataset else None,
                 {k: v for k, v in params["mlflow"].items() if k != "enabled"}],
    }
    out, prev = {}, ""
    for stage in STAGES:
        prev = out[stage] = _sha([stage, prev, own[stage]])
    return out


class Paths:
    def __init__(self, out: str | Path):
        self.out = Path(out)
        self.index = self.out / "index"
        self.ingest_report = self.out / "ingest.json"
        self.qa = self.out / "qa.jsonl"
        self.synth_report = self.out / "synth_report.json"
        self.split = self.out / "split"
        self.train_rows = self.out / "finetune" / "train.jsonl"
        self.adapter = self.out / "adapter"
        self.metrics = self.out / "metrics.json"
        self.eval_rows = self.out / "eval_rows.jsonl"
        self.registry = self.out / "registry.json"
        self.stages = self.out / ".stages"

    def outputs(self, stage: str) -> list[Path]:
        return {"ingest": [self.index, self.ingest_report], "synthesise": [self.qa, self.synth_report],
                "split": [self.split / f"{n}.jsonl" for n in ("train", "val", "test")],
                "finetune": [self.adapter / "adapter_model.safetensors", self.train_rows],
                "eval": [self.metrics, self.eval_rows, self.registry]}[stage]

    def marker(self, stage: str) -> Path:
        return self.stages / f"{stage}.json"


def _done(paths: Paths, stage: str, fp: str) -> bool:
    m = paths.marker(stage)
    if not m.exists() or not all(p.exists() for p in paths.outputs(stage)):
        return False
    try:
        return json.loads(m.read_text())["hash"] == fp
    except (ValueError, KeyError):
        return False


def _mark(paths: Paths, stage: str, fp: str, seconds: float, info: Mapping[str, Any]) -> None:
    paths.stages.mkdir(parents=True, exist_ok=True)
    paths.marker(stage).write_text(json.dumps({"stage": stage, "hash": fp, "seconds": round(seconds, 2),
                                               "finished": datetime.now(UTC).isoformat(timespec="seconds"),
                                               **info}, indent=2))


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    tmp.replace(path)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _rag(params: Mapping[str, Any], paths: Paths, llm: str | None = None) -> Any:
    from rag import RAG

    p = params
    kw: dict[str, Any] = {"ingest__chunk_size": p["ingest"]["chunk_size"],
                          "ingest__chunk_overlap": p["ingest"]["chunk_overlap"],
                          "llm__max_new_tokens": p["eval"]["max_new_tokens"]}
    if p["eval"]["threads"]:
        kw["llm__threads"] = p["eval"]["threads"]
    return RAG(store=str(paths.index.resolve()), llm=llm, **kw)


# --- stages ------------------------------------------------------------------------------------

def stage_ingest(params: dict[str, Any], paths: Paths, ctx: dict[str, Any]) -> dict[str, Any]:
    if paths.index.exists():  # chunker settings or documents changed: rebuild rather than patch
        shutil.rmtree(paths.index)
    with _rag(params, paths) as rag:
        result = rag.ingest([params["docs"]])
        summary = result.summary()
        stats = rag.stats()
    report = {**summary, "files_in_index": stats["files"], "chunks_in_index": stats["chunks"]}
    if not stats["chunks"]:
        raise DataError(f"nothing was ingested from {params['docs']}: {summary.get('failed')}")
    paths.ingest_report.write_text(json.dumps(report, indent=2, default=str))
    return {"files": stats["files"], "chunks": stats["chunks"]}


def _title_tokens(source: str, metadata: Mapping[str, Any]) -> set[str]:
    from eval.metrics import normalize_answer

    words = re.sub(r"[_\-.]+", " ", Path(source).stem)
    for key, value in metadata.items():
        if "head" in key.lower() or "title" in key.lower():
            words += " " + (" ".join(map(str, value)) if isinstance(value, list) else str(value))
    return set(normalize_answer(words).split())


def _make_generator(spec: str) -> Any:
    from finetune.synth import ExtractiveGenerator, LLMGenerator

    if spec in ("", "extractive"):
        return ExtractiveGenerator()
    from rag.llms import open_llm
    from rag.settings import load_settings

    llm = open_llm("" if spec == "default" else spec, load_settings())
    return LLMGenerator(llm, max_new_tokens=96, temperature=0.0)


def stage_synthesise(params: dict[str, Any], paths: Paths, ctx: dict[str, Any]) -> dict[str, Any]:
    """Q&A per chunk, filtered; the report counts what was kept and why the rest was dropped."""
    from eval.metrics import normalize_answer
    from finetune.synth import _read_chunks

    sp = params["synthesise"]
    gen = _make_generator(str(sp["generator"] or "extractive"))
    chunks = _read_chunks(str(paths.index.resolve()), 1_000_000)
    rng = random.Random(sp["seed"])
    rng.shuffle(chunks)
    dropped: Counter[str] = Counter()
    seen: set[str] = set()
    rows: list[dict[str, Any]] = []
    candidates = 0
    for chunk in chunks:
        if len(rows) >= sp["max_examples"]:
            break
        if hasattr(gen, "candidates"):
            qas = gen.candidates(chunk.text)
            start = int(hashlib.sha256(chunk.id.encode()).hexdigest(), 16) % max(1, len(qas))
            qas = (qas[start:] + qas[:start])[: sp["per_chunk"]]
        else:
            qa = gen(chunk.text, chunk.source)
            qas = [qa] if qa else []
        if not qas:
            dropped["no_question"] += 1
            continue
        gold = normalize_answer(chunk.text)
        title = _title_tokens(chunk.source, chunk.metadata)
        for qa in qas:
            candidates += 1
            ans = normalize_answer(qa.answer)
            q_norm = normalize_answer(qa.question)
            ans_tokens = set(ans.split())
            if not ans or not q_norm:
                reason = "empty"
            elif f" {ans} " not in f" {gold} ":
                reason = "not_grounded"          # the answer is not a span of its golden passage
            elif _MALFORMED.search(qa.question) or len(qa.question) > 300:
                reason = "malformed_question"    # markup or clause debris in the subject
            elif _FRAGMENT.match(qa.answer.strip()):
                reason = "fragment_answer"       # a clause tail, not an answer ("of technology, ...")
            elif ans_tokens <= title:
                reason = "answer_in_title"       # copying the document title answers it
            elif ans_tokens <= set(q_norm.split()):
                reason = "answer_in_question"
            elif len(ans.split()) > sp["max_answer_words"]:
                reason = "answer_too_long"
            elif q_norm in seen:
                reason = "duplicate_question"
            else:
                reason = ""
            if reason:
                dropped[reason] += 1
                continue
            seen.add(q_norm)
            rows.append({"id": f"q{len(rows):05d}", "question": qa.question, "answer": qa.answer.rstrip(". "),
                         "source": chunk.source, "page": chunk.page, "chunk_id": chunk.id,
                         "evidence": qa.evidence, "passage": chunk.text})
            if len(rows) >= sp["max_examples"]:
                break
    if not rows:
        raise DataError(f"no question survived synthesis from {len(chunks)} chunks (dropped: {dict(dropped)})")
    _write_jsonl(paths.qa, rows)
    report = {"generator": str(sp["generator"] or "extractive"), "chunks": len(chunks), "candidates": candidates,
              "kept": len(rows), "dropped": dict(sorted(dropped.items())),
              "documents": dict(Counter(r["source"] for r in rows))}
    paths.synth_report.write_text(json.dumps(report, indent=2))
    return {"kept": len(rows), "dropped": sum(dropped.values())}


def _match_doc(source: str, names: list[str]) -> bool:
    return any(source == n or Path(source).name == Path(n).name or source.endswith("/" + n) for n in names)


def stage_split(params: dict[str, Any], paths: Paths, ctx: dict[str, Any]) -> dict[str, Any]:
    """Whole documents go to train, val or test, so no test question comes from a trained-on document."""
    sp = params["split"]
    rows = _read_jsonl(paths.qa)
    docs = sorted({r["source"] for r in rows})
    if len(docs) < 2:
        raise DataError(f"a split by document needs at least 2 documents with questions (got {len(docs)})")
    rng = random.Random(sp["seed"])
    order = docs[:]
    rng.shuffle(order)
    if sp["test_docs"]:
        test = [d for d in order if _match_doc(d, sp["test_docs"])]
        if not test:
            raise ConfigError(f"split.test_docs: none of {sp['test_docs']} has questions (documents: {docs})")
        rest = [d for d in order if d not in test]
    else:
        n_test = min(len(docs) - 1, max(1, round(len(docs) * sp["test"])))
        test, rest = order[:n_test], order[n_test:]
    n_val = min(len(rest) - 1, round(len(docs) * sp["val"])) if sp["val"] > 0 else 0
    n_val = max(n_val, 1 if sp["val"] > 0 and len(rest) >= 2 else 0)
    val, train = rest[:n_val], rest[n_val:]
    if not train:
        raise DataError("no document left for training after the test/val split")
    groups = {"train": train, "val": val, "test": test}
    counts = {}
    for name, names in groups.items():
        part = [r for r in rows if r["source"] in names]
        if name == "val" and sp["max_val"] and len(part) > sp["max_val"]:
            part = sorted(random.Random(sp["seed"]).sample(part, sp["max_val"]), key=lambda r: r["id"])
        _write_jsonl(paths.split / f"{name}.jsonl", part)
        counts[name] = {"documents": sorted(names), "questions": len(part)}
    (paths.split / "split.json").write_text(json.dumps(counts, indent=2))
    return {k: v["questions"] for k, v in counts.items()}


def _training_rows(rag: Any, rows: list[dict[str, Any]], k: int, mode: str, seed: int) -> list[dict[str, Any]]:
    """Chain-format chat rows: the question's real top-k passages with the golden one forced in."""
    from rag import chain
    from rag.types import Hit

    rng = random.Random(seed)
    out = []
    for r in rows:
        hits = rag.retrieve(r["question"], k=k, mode=mode)
        pos = next((i for i, h in enumerate(hits) if h.id == r["chunk_id"]), None)
        if pos is None:  # RAFT: the golden passage among retrieved distractors, at a seeded position
            gold = Hit(r["chunk_id"], r["passage"], r["source"], int(r["page"] or 0), 0.0)
            hits = hits[: max(0, k - 1)]
            pos = rng.randint(0, len(hits))
            hits.insert(pos, gold)
        messages = chain.build_messages(r["question"], hits)
        messages.append({"role": "assistant", "content": f"{r['answer']} [{pos + 1}]"})
        out.append({"messages": messages, "meta": {"id": r["id"], "source": r["source"], "golden": pos + 1}})
    return out


@contextlib.contextmanager
def _fixed_split(n_train: int) -> Iterator[None]:
    """Make qlora's held-out split our val documents (rows after the first ``n_train``), not a random 10%."""
    import finetune.data as D

    original = D.split
    D.split = lambda examples, fraction, seed: (list(examples[:n_train]), list(examples[n_train:]))
    try:
        yield
    finally:
        D.split = original


def stage_finetune(params: dict[str, Any], paths: Paths, ctx: dict[str, Any]) -> dict[str, Any]:
    from finetune import qlora

    rp, fp = params["retrieval"], dict(params["finetune"])
    train, val = _read_jsonl(paths.split / "train.jsonl"), _read_jsonl(paths.split / "val.jsonl")
    with _rag(params, paths) as rag:
        rows = _training_rows(rag, train, rp["k"], rp["mode"], 0) + _training_rows(rag, val, rp["k"], rp["mode"], 1)
    _write_jsonl(paths.train_rows, rows)
    if paths.adapter.exists():
        shutil.rmtree(paths.adapter)
    base = str(fp.pop("base", "smollm2") or "smollm2")
    ml = params["mlflow"]
    fp.setdefault("eval_split", 0.1 if val else 0.0)
    if ml["enabled"]:
        fp.update(report_to="mlflow", experiment=ml["experiment"], registered_model=ml["registered_model"],
                  run_name=f"{paths.out.name}-finetune")
        if ml["tracking_uri"]:
            fp["tracking_uri"] = ml["tracking_uri"]
    else:
        fp["report_to"] = "none"
    argv = ["--base", base, "--data", str(paths.train_rows), "--output", str(paths.adapter),
            *[f"{k}={','.join(map(str, v)) if isinstance(v, list) else v}" for k, v in fp.items()]]
    _log(f"finetune: {len(train)} train / {len(val)} val questions -> python -m finetune.qlora {' '.join(argv)}")
    args = qlora.build_parser().parse_args(argv)
    with _fixed_split(len(train)):
        meta = qlora.run(args)
    shutil.rmtree(paths.adapter / "checkpoints", ignore_errors=True)  # the best weights are saved above
    m = meta["metrics"]
    info = {"base": base, "steps": m["global_step"], "train_loss": m["train_loss"],
            "first_eval_loss": m["first_eval_loss"], "best_eval_loss": m["best_eval_loss"],
            "s_per_step": m["s_per_step"], "mlflow": meta.get("mlflow")}
    if ctx.get("tracker") and meta.get("mlflow"):
        ctx["tracker"].adopt(meta["mlflow"]["run_id"])
    return info


def _strip_citations(text: str) -> str:
    return " ".join(_CITE.sub(" ", text).split())


def _test_examples(params: Mapping[str, Any], paths: Paths) -> tuple[list[Any], int]:
    """The test split as eval Examples (or ``eval.dataset``), and how many come from trained-on documents."""
    from eval.dataset import Example, Reference, load_dataset

    limit = params["eval"]["limit"] or None
    if params["eval"]["dataset"]:
        examples = load_dataset(params["eval"]["dataset"], limit=limit)
    else:
        rows = _read_jsonl(paths.split / "test.jsonl")[:limit]
        examples = [Example(r["id"], r["question"], [r["answer"]], [Reference(r["source"], int(r["page"] or 0))])
                    for r in rows]
    seen = json.loads((paths.split / "split.json").read_text())
    trained = seen["train"]["documents"] + seen["val"]["documents"]
    leaked = sum(1 for ex in examples if any(_match_doc(s.source, trained) for s in ex.sources))
    return examples, leaked


def stage_eval(params: dict[str, Any], paths: Paths, ctx: dict[str, Any]) -> dict[str, Any]:
    from eval import metrics as M
    from rag import chain
    from rag.llms import open_llm

    ep, rp = params["eval"], params["retrieval"]
    k, mode = rp["k"], rp["mode"]
    examples, leaked = _test_examples(params, paths)
    if not examples:
        raise DataError("no test questions: the test documents yielded none (add documents or set split.test_docs)")
    if leaked:
        _log(f"warning: {leaked} test question(s) come from documents used in training")
    base = str(params["finetune"].get("base") or "smollm2")
    base_spec = "hf:" + base.removeprefix("hf:")
    specs = {"base": base_spec, "adapter": f"{base_spec}+adapter:{paths.adapter.resolve()}"}
    rows: list[dict[str, Any]] = []
    with _rag(params, paths) as rag:
        retrieved = [rag.retrieve(ex.question, k=max(5, k), mode=mode) for ex in examples]
        for ex, hits in zip(examples, retrieved):
            rows.append({"id": ex.id, "question": ex.question, "references": ex.answers,
                         "sources": [{"source": s.source, "page": s.page} for s in ex.sources],
                         "retrieved": [{"source": h.source, "page": h.page} for h in hits[:5]],
                         "metrics": {"hit@5": M.retrieval_scores(hits, ex.sources, k)["hit@5"]}})
        for name, spec in specs.items():
            llm = open_llm(spec, rag.settings)
            t0 = time.perf_counter()
            for i, (ex, hits, row) in enumerate(zip(examples, retrieved, rows), 1):
                ans = chain.answer(ex.question, retrieve=lambda _q, h=hits: h[:k], llm=llm, settings=rag.settings)
                pred = _strip_citations(ans.text)
                s = M.answer_scores(pred, ex.answers)
                row[name] = ans.text
                row["metrics"][f"{name}_em"], row["metrics"][f"{name}_f1"] = s["em"], s["f1"]
                if i % 25 == 0:
                    _log(f"eval {name}: {i}/{len(examples)} ({(time.perf_counter() - t0) / i:.1f} s/question)")
            _log(f"eval {name}: {len(examples)} questions in {time.perf_counter() - t0:.0f} s")
            del llm
    nb, seed = ep["bootstrap"], ep["seed"]

    def stat(metric: str) -> dict[str, float | None]:
        vals = [r["metrics"][metric] for r in rows]
        ci = M.bootstrap_ci(vals, n_boot=nb, seed=seed)
        return {"mean": M.mean(vals), "ci_low": ci[0] if ci else None, "ci_high": ci[1] if ci else None}

    def diff(metric: str) -> dict[str, float | None]:
        d = M.paired_bootstrap_diff([r["metrics"][f"adapter_{metric}"] for r in rows],
                                    [r["metrics"][f"base_{metric}"] for r in rows], n_boot=nb, seed=seed)
        return {"mean": d[0], "ci_low": d[1], "ci_high": d[2]} if d else {"mean": None, "ci_low": None,
                                                                          "ci_high": None}

    report = json.loads(paths.synth_report.read_text())
    metrics = {
        "n": len(rows), "k": k, "retrieval_mode": mode, "generator": report["generator"],
        "test_source": "dataset" if ep["dataset"] else "synthesised test split", "leaked_questions": leaked,
        "base": {"em": stat("base_em"), "f1": stat("base_f1")},
        "adapter": {"em": stat("adapter_em"), "f1": stat("adapter_f1")},
        "gain": {"em": diff("em"), "f1": diff("f1")},
        "retrieval": {"hit@5": stat("hit@5")},
        "specs": {"base": base_spec, "adapter": f"{base_spec}+adapter:{paths.adapter}"},
        "synth": {"kept": report["kept"], "dropped": sum(report["dropped"].values())},
    }
    _write_jsonl(paths.eval_rows, rows)
    paths.metrics.write_text(json.dumps(metrics, indent=2))
    registry: dict[str, Any] = {"registered": False}
    if ctx.get("tracker"):
        registry = ctx["tracker"].finish_eval(metrics, paths)
    paths.registry.write_text(json.dumps(registry, indent=2))
    g = metrics["gain"]["f1"]
    _log(f"F1 base {metrics['base']['f1']['mean']:.3f} -> adapter {metrics['adapter']['f1']['mean']:.3f} "
         f"(gain {g['mean']:+.3f}, 95% CI [{g['ci_low']:+.3f}, {g['ci_high']:+.3f}]), "
         f"hit@5 {metrics['retrieval']['hit@5']['mean']}")
    return {"n": len(rows), "f1_gain": g["mean"], "champion": registry.get("champion")}


RUNNERS = {"ingest": stage_ingest, "synthesise": stage_synthesise, "split": stage_split,
           "finetune": stage_finetune, "eval": stage_eval}


# --- MLflow ------------------------------------------------------------------------------------

def _flat(d: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = redact(",".join(map(str, v)) if isinstance(v, list) else str(v))[:500]
    return out


class LoopTracker:
    """One parent MLflow run per pipeline configuration; stage runs nest under it.

    The parent's id is kept in ``OUT/.stages/mlflow.json`` with the configuration's hash, so the
    separate processes ``dvc repro`` starts share it, and a changed parameter starts a new parent.
    """

    def __init__(self, params: Mapping[str, Any], paths: Paths, fp: str):
        from finetune.tracking import Tracker, default_tracking_uri
        from rag.settings import load_settings

        settings = load_settings()
        data_dir = Path(settings.data_dir)
        ml = params["mlflow"]
        self.uri = ml["tracking_uri"] or settings.tracking_uri or default_tracking_uri(data_dir)
        self.base = Tracker(self.uri, ml["experiment"], data_dir / "mlartifacts")
        self.client = self.base.client
        self.name = ml["registered_model"]
        self.metric = ml["champion_metric"]
        state_file = paths.stages / "mlflow.json"
        state = json.loads(state_file.read_text()) if state_file.exists() else {}
        self.parent = state.get("parent_run_id") if state.get("hash") == fp else None
        if self.parent:
            try:
                self.client.get_run(self.parent)
            except Exception:  # noqa: BLE001 - the tracking store was replaced: start again
                self.parent = None
        if not self.parent:
            run = self.client.create_run(self.base.experiment_id, run_name=f"loop-{paths.out.name}",
                                         tags={"ragtune.kind": "loop", "ragtune.out": str(paths.out.resolve())})
            self.parent = run.info.run_id
            self.base.run_id = self.parent
            self.base.log_params(_flat({k: v for k, v in params.items() if k != "mlflow"}))
            paths.stages.mkdir(parents=True, exist_ok=True)
            state_file.write_text(json.dumps({"hash": fp, "parent_run_id": self.parent}))

    def child(self, stage: str, info: Mapping[str, Any]) -> None:
        run = self.client.create_run(self.base.experiment_id, run_name=stage,
                                     tags={"mlflow.parentRunId": self.parent, "ragtune.kind": f"loop.{stage}"})
        nums = {k: float(v) for k, v in info.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if nums:
            self.base.run_id = run.info.run_id
            self.base.log_metrics(nums, step=0)
        self.client.set_terminated(run.info.run_id)

    def adopt(self, run_id: str) -> None:
        """Nest a run made elsewhere (the qlora recipe's) under the parent."""
        self.client.set_tag(run_id, "mlflow.parentRunId", self.parent)
        self.client.set_tag(self.parent, "ragtune.finetune_run", run_id)

    def finish_eval(self, metrics: Mapping[str, Any], paths: Paths) -> dict[str, Any]:
        """Metrics on the parent and on the adapter's registry version; move ``champion`` if it is better."""
        flat = {f"{side}_{m}": metrics[side][m]["mean"] for side in ("base", "adapter") for m in ("em", "f1")}
        flat.update({f"gain_{m}": metrics["gain"][m]["mean"] for m in ("em", "f1")})
        flat.update({f"gain_{m}_ci_low": metrics["gain"][m]["ci_low"] for m in ("em", "f1")})
        flat["hit_at_5"] = metrics["retrieval"]["hit@5"]["mean"]
        flat = {k: v for k, v in flat.items() if v is not None}
        self.base.run_id = self.parent
        self.base.log_metrics(flat, step=0)
        for f in (paths.metrics, paths.synth_report, paths.split / "split.json"):
            self.client.log_artifact(self.parent, str(f), artifact_path="loop")
        marker = json.loads(paths.marker("finetune").read_text())
        ml = marker.get("mlflow") or {}
        version = ml.get("version")
        result: dict[str, Any] = {"registered": bool(version), "model": self.name, "version": version,
                                  "tracking_uri": redact(self.uri), "parent_run_id": self.parent}
        if not version:
            self.client.set_terminated(self.parent)
            return result
        for key, value in flat.items():
            self.client.set_model_version_tag(self.name, version, f"eval_{key}", str(value))
        self.client.set_model_version_tag(self.name, version, "eval_n", str(metrics["n"]))
        self.client.set_model_version_tag(self.name, version, "generator", metrics["generator"])
        score = metrics["adapter"][self.metric]["mean"]
        current, current_score = None, None
        with contextlib.suppress(Exception):  # no champion yet
            mv = self.client.get_model_version_by_alias(self.name, "champion")
            current = str(mv.version)
            current_score = float(mv.tags.get(f"eval_adapter_{self.metric}", "nan"))
        # a champion without a score (or NaN) loses to any scored version
        promote = current is None or current == version or math.isnan(current_score) or score > current_score
        if promote:
            self.client.set_registered_model_alias(self.name, "champion", version)
        result.update(champion=version if promote else current, promoted=promote,
                      previous_champion=current, previous_score=current_score, score=score,
                      metric=f"adapter {self.metric}")
        self.client.set_tag(self.parent, "ragtune.model_version", f"{self.name}/{version}")
        self.client.set_terminated(self.parent)
        return result


# --- driver ------------------------------------------------------------------------------------

def run(params: dict[str, Any], *, only: str | None = None, force: bool = False) -> dict[str, Any]:
    """Run the stages in order (or ``only`` one), skipping those whose marker hash still matches.

    Returns:
        ``{"out", "stages": {name: "ran" | "skipped"}, "metrics"}``.
    """
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    paths = Paths(params["out"])
    paths.out.mkdir(parents=True, exist_ok=True)
    fps = fingerprints(params)
    todo = [only] if only else list(STAGES)
    if only:
        before = STAGES[: STAGES.index(only)]
        missing = [s for s in before if not _done(paths, s, fps[s])]
        if missing:
            raise ConfigError(f"stage {only!r} needs {', '.join(missing)} first (finished with these parameters): "
                              f"python -m finetune.loop --stage {missing[0]} ...")
    status: dict[str, str] = {}
    ctx: dict[str, Any] = {}
    stale = False
    for stage in todo:
        if not force and not stale and _done(paths, stage, fps[stage]):
            status[stage] = "skipped"
            _log(f"{stage}: up to date, skipped")
            continue
        stale = True  # a stage that runs makes every later one run too
        if params["mlflow"]["enabled"] and "tracker" not in ctx:
            ctx["tracker"] = LoopTracker(params, paths, fps["eval"])
        paths.marker(stage).unlink(missing_ok=True)
        _log(f"{stage}: running")
        t0 = time.perf_counter()
        info = RUNNERS[stage](params, paths, ctx)
        seconds = time.perf_counter() - t0
        _mark(paths, stage, fps[stage], seconds, info)
        if ctx.get("tracker") and stage != "finetune":
            ctx["tracker"].child(stage, {**info, "seconds": seconds})
        _log(f"{stage}: done in {seconds:.1f} s {json.dumps(info, default=str)}")
        status[stage] = "ran"
    metrics = json.loads(paths.metrics.read_text()) if paths.metrics.exists() else None
    return {"out": str(paths.out), "stages": status, "metrics": metrics}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m finetune.loop", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Documents -> synthesised Q&A -> QLoRA adapter -> measured gain (stages: "
                    + ", ".join(STAGES) + ").",
        epilog="example:\n  python -m finetune.loop data/sample --out runs/loop --params params.yaml "
               "finetune.max_steps=50 eval.limit=40\n\nkey=value overrides use dotted keys "
               "(section.key); see params.yaml for every key.")
    p.add_argument("docs", nargs="?", metavar="DOCS", help="Folder or file to ingest (default: `docs` in --params).")
    p.add_argument("--out", metavar="DIR", help="Pipeline folder (default: `out` in --params).")
    p.add_argument("--params", metavar="YAML", help="Parameters file, e.g. params.yaml.")
    p.add_argument("--stage", choices=STAGES, help="Run this stage only (its predecessors must be finished).")
    p.add_argument("--force", action="store_true", help="Re-run the stages even when their markers match.")
    p.add_argument("--json", action="store_true", help="Print the result as one JSON object.")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. finetune.max_steps=50 retrieval.k=2")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_intermixed_args(argv)
    # "DOCS key=value" and "key=value" alone both parse: a DOCS containing '=' is an override.
    if args.docs and "=" in args.docs and not Path(args.docs).exists():
        args.overrides.insert(0, args.docs)
        args.docs = None
    try:
        params = load_params(args.params, args.overrides, docs=args.docs, out=args.out)
        result = run(params, only=args.stage, force=args.force)
    except ConfigError as e:
        if os.environ.get("RAGTUNE_DEBUG") == "1":
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (RagtuneError, FileNotFoundError) as e:
        if os.environ.get("RAGTUNE_DEBUG") == "1":
            raise
        print(f"error: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result, default=str))
    else:
        print(" ".join(f"{k}:{v}" for k, v in result["stages"].items()))
        m = result["metrics"]
        if m and not args.stage or (m and args.stage == "eval"):
            for side in ("base", "adapter"):
                em, f1 = m[side]["em"], m[side]["f1"]
                print(f"{side:<8} EM {em['mean']:.3f} [{em['ci_low']:.3f}, {em['ci_high']:.3f}]  "
                      f"F1 {f1['mean']:.3f} [{f1['ci_low']:.3f}, {f1['ci_high']:.3f}]")
            g = m["gain"]["f1"]
            print(f"F1 gain {g['mean']:+.3f} [{g['ci_low']:+.3f}, {g['ci_high']:+.3f}] on {m['n']} questions; "
                  f"hit@5 {m['retrieval']['hit@5']['mean']}; generator {m['generator']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
