"""Stage ``synthesise``: questions per chunk from a generator, filtered, to ``OUT/qa.jsonl``.

Generators: ``extractive`` (default: deterministic, no LLM) or any LLM spec through
:class:`finetune.synth.LLMGenerator`. The filter keeps a question when its answer is a span of its
golden passage, is not a copy of the document's title or of the question, is short, and the
question is well formed and new; ``OUT/synth_report.json`` counts what was dropped, by reason.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from loop.params import LoopParams, SynthesiseParams
from loop.stages import Context
from loop.workdir import Paths, write_rows
from rag.errors import DataError
from rag.settings import Settings

# markup, clause debris ("What was X wrote Y, but it?") or a subordinate clause as the subject
_MALFORMED = re.compile(r"[#;|\[\]{}<>*]|\s[,:]|^\W|,\s*\w*\?$|,\?|\b(it|but|and|which|that)\?$|"
                        r"^what \w+ (although|while|when|because|if|since|after|before|as|though)\b", re.IGNORECASE)
_FRAGMENT = re.compile(r"^(of|to|and|but|or|that|which|than|for|by|with|as)\b", re.IGNORECASE)


def _title_tokens(source: str, metadata: Mapping[str, Any]) -> set[str]:
    from eval.metrics import normalize_answer

    words = re.sub(r"[_\-.]+", " ", Path(source).stem)
    for key, value in metadata.items():
        if "head" in key.lower() or "title" in key.lower():
            words += " " + (" ".join(map(str, value)) if isinstance(value, list) else str(value))
    return set(normalize_answer(words).split())


def make_generator(spec: str, settings: Settings) -> Any:
    """``extractive`` (or '') -> the extractive generator; anything else is an LLM spec."""
    from finetune.synth import ExtractiveGenerator, LLMGenerator

    if spec in ("", "extractive"):
        return ExtractiveGenerator()
    from rag.llms import open_llm

    llm = open_llm("" if spec == "default" else spec, settings)
    return LLMGenerator(llm, max_new_tokens=96, temperature=0.0)


def _questions(gen: Any, chunk: Any, per_chunk: int) -> list[Any]:
    if hasattr(gen, "candidates"):  # several per chunk, starting at a place the chunk id picks
        qas = gen.candidates(chunk.text)
        start = int(hashlib.sha256(chunk.id.encode()).hexdigest(), 16) % max(1, len(qas))
        return (qas[start:] + qas[:start])[:per_chunk]
    qa = gen(chunk.text, chunk.source)
    return [qa] if qa else []


def _drop_reason(qa: Any, gold: str, title: set[str], seen: set[str], sp: SynthesiseParams) -> str:
    """Why the question is dropped ('' = kept); ``gold`` is the normalised golden passage."""
    from eval.metrics import normalize_answer

    ans = normalize_answer(qa.answer)
    q_norm = normalize_answer(qa.question)
    ans_tokens = set(ans.split())
    if not ans or not q_norm:
        return "empty"
    if f" {ans} " not in f" {gold} ":
        return "not_grounded"          # the answer is not a span of its golden passage
    if _MALFORMED.search(qa.question) or len(qa.question) > 300:
        return "malformed_question"    # markup or clause debris in the subject
    if _FRAGMENT.match(qa.answer.strip()):
        return "fragment_answer"       # a clause tail, not an answer ("of technology, ...")
    if ans_tokens <= title:
        return "answer_in_title"       # copying the document title answers it
    if ans_tokens <= set(q_norm.split()):
        return "answer_in_question"
    if len(ans.split()) > sp.max_answer_words:
        return "answer_too_long"
    if q_norm in seen:
        return "duplicate_question"
    return ""


def run(params: LoopParams, paths: Paths, ctx: Context) -> dict[str, Any]:
    """Q&A per chunk, filtered; the report counts what was kept and why the rest was dropped."""
    from eval.metrics import normalize_answer
    from finetune.synth import read_chunks

    sp = params.synthesise
    gen = make_generator(str(sp.generator or "extractive"), ctx.settings)
    chunks = read_chunks(str(paths.index.resolve()), 1_000_000)
    random.Random(sp.seed).shuffle(chunks)
    dropped: Counter[str] = Counter()
    seen: set[str] = set()
    rows: list[dict[str, Any]] = []
    candidates = 0
    for chunk in chunks:
        if len(rows) >= sp.max_examples:
            break
        qas = _questions(gen, chunk, sp.per_chunk)
        if not qas:
            dropped["no_question"] += 1
            continue
        gold = normalize_answer(chunk.text)
        title = _title_tokens(chunk.source, chunk.metadata)
        for qa in qas:
            candidates += 1
            reason = _drop_reason(qa, gold, title, seen, sp)
            if reason:
                dropped[reason] += 1
                continue
            seen.add(normalize_answer(qa.question))
            rows.append({"id": f"q{len(rows):05d}", "question": qa.question, "answer": qa.answer.rstrip(". "),
                         "source": chunk.source, "page": chunk.page, "chunk_id": chunk.id,
                         "evidence": qa.evidence, "passage": chunk.text})
            if len(rows) >= sp.max_examples:
                break
    if not rows:
        raise DataError(f"no question survived synthesis from {len(chunks)} chunks (dropped: {dict(dropped)})")
    write_rows(paths.qa, rows)
    report = {"generator": str(sp.generator or "extractive"), "chunks": len(chunks), "candidates": candidates,
              "kept": len(rows), "dropped": dict(sorted(dropped.items())),
              "documents": dict(Counter(r["source"] for r in rows))}
    paths.synth_report.write_text(json.dumps(report, indent=2))
    return {"kept": len(rows), "dropped": sum(dropped.values())}
