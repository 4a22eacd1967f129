"""Stage ``teach`` (only with ``teacher.model``): a teacher LLM's answers become the training targets.

For each train / val question (``OUT/split``; test questions are never sent to the teacher, so the
test set is the one the template loop uses) the teacher answers from the golden passage among
``teacher.distractors`` passages retrieved for the question, in a seeded order
(:func:`finetune.teacher.raft_passages`, :func:`finetune.teacher.teacher_messages`). An answer is
kept when it cites the golden passage, is short and grounded in it
(:func:`finetune.teacher.filter_answer`); the reasons for the rest are counted. Kept rows get
``target`` (the answer without markers), which the ``finetune`` stage cites again where the golden
passage sits in the student's own prompt. With ``teacher.questions`` the teacher first writes the
question for the row's chunk (same filters as ``synthesise``).

Every reply is cached in ``OUT/teacher_cache.jsonl`` (append-only, flushed per reply; see
:class:`finetune.teacher.AnswerCache`), so a killed run resumes where it stopped and a re-run
generates nothing it already has. Writes ``OUT/teach/{train,val}.jsonl`` and ``OUT/teach_report.json``.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from loop.params import LoopParams, TeacherParams
from loop.stages import Context, open_rag
from loop.workdir import Paths, log, read_rows, write_rows
from rag.errors import DataError
from rag.settings import Settings

__all__ = ["open_teacher", "run", "write_off"]

PROMPT_MARGIN = 32  # tokens the chat template adds around the messages


def write_off(paths: Paths) -> None:
    """No teacher: empty outputs, so a ``dvc repro`` that lists the stage still finds them."""
    for name in ("train", "val"):
        write_rows(paths.teach / f"{name}.jsonl", [])
    paths.teach_report.write_text(json.dumps({"teacher": None}, indent=2))
    paths.teacher_cache.touch()  # dvc: an output of the stage (persisted, never deleted by a re-run)


def open_teacher(tp: TeacherParams, settings: Settings) -> Any:
    """The teacher LLM (``teacher.threads`` overrides ``llm.threads``)."""
    from rag.llms import open_llm

    if tp.threads:
        settings = settings.model_copy(update={"llm": settings.llm.model_copy(update={"threads": tp.threads})})
    return open_llm(str(tp.model), settings)


class _Teacher:
    """The teacher behind the cache: each reply generated at most once, counted and timed."""

    def __init__(self, llm: Any, spec: str, cache: Any):
        self.llm, self.spec, self.cache = llm, spec, cache
        self.counts: Counter[str] = Counter()
        self.tokens = 0
        self.seconds = 0.0

    def reply(self, kind: str, key: str, make: Callable[[], str], extra: dict[str, Any] | None = None) -> dict:
        row = self.cache.get(key)
        if row is not None:
            self.counts[f"{kind}_cached"] += 1
            return row
        t0 = time.perf_counter()
        text = str(make())
        seconds = time.perf_counter() - t0
        tokens = self.llm.count_tokens(text) if text else 0
        self.counts[f"{kind}_generated"] += 1
        self.tokens += tokens
        self.seconds += seconds
        return self.cache.put(key, {"kind": kind, "teacher": self.spec, "reply": text, "tokens": tokens,
                                    "seconds": round(seconds, 3), **(extra or {})})


def _fit(llm: Any, question: str, hits: list[Any], gold: Any, max_new: int) -> list[Any]:
    """Drop distractors (never the golden passage) until the prompt fits the teacher's window."""
    from finetune.teacher import teacher_messages

    budget = int(getattr(llm, "context_window", 0) or 0) - max_new - PROMPT_MARGIN
    while len(hits) > 1 and budget > 0 and \
            sum(llm.count_tokens(m["content"]) for m in teacher_messages(question, hits)) > budget:
        drop = next(i for i in range(len(hits) - 1, -1, -1) if hits[i] is not gold)
        hits = hits[:drop] + hits[drop + 1:]
    return hits


def _teacher_question(teacher: _Teacher, row: dict[str, Any], seen: set[str], params: LoopParams,
                      dropped: Counter[str]) -> dict[str, Any] | None:
    """The row with the teacher's question (and its reference answer) for the same chunk, or None."""
    from eval.metrics import normalize_answer
    from finetune.synth import LLMGenerator
    from finetune.teacher import QUESTION_VERSION, cache_key
    from loop.stages.synthesise import _drop_reason, _title_tokens

    key = cache_key(row["passage"], "", teacher.spec, QUESTION_VERSION)
    gen = LLMGenerator(lambda prompt: teacher.reply(
        "question", key, lambda: teacher.llm.complete(prompt, max_new_tokens=96, temperature=0.0))["reply"])
    qa = gen(row["passage"], row["source"])
    reason = "no_question" if qa is None else _drop_reason(
        qa, normalize_answer(row["passage"]), _title_tokens(row["source"], {}), seen, params.synthesise)
    if reason:
        dropped[f"question_{reason}"] += 1
        return None
    seen.add(normalize_answer(qa.question))
    return {**row, "question": qa.question, "answer": qa.answer.rstrip(". "), "template_question": row["question"],
            "evidence": qa.evidence}


def _teach_row(teacher: _Teacher, rag: Any, row: dict[str, Any], tp: TeacherParams,
               dropped: Counter[str], notes: Counter[str]) -> dict[str, Any] | None:
    """The row with the teacher's ``target``, or None when the filter drops the answer."""
    from finetune.teacher import PROMPT_VERSION, cache_key, filter_answer, raft_passages, teacher_messages
    from rag.types import Hit

    question = row["question"]
    gold = Hit(row["chunk_id"], row["passage"], row["source"], int(row["page"] or 0), 0.0)
    layout: dict[str, Any] = {}

    def ask() -> str:
        # a few extra: the golden chunk and neighbours holding the same evidence are not distractors
        retrieved = rag.retrieve(question, k=tp.distractors + 3, mode=tp.mode) if tp.distractors else []
        hits, _ = raft_passages(gold, retrieved, tp.distractors, row["id"], row.get("evidence") or "")
        hits = _fit(teacher.llm, question, hits, gold, tp.max_new_tokens)
        layout.update(gold_n=hits.index(gold) + 1, passages=[h.id for h in hits])
        return teacher.llm.generate(teacher_messages(question, hits, tp.style), max_new_tokens=tp.max_new_tokens,
                                    temperature=0.0)

    # the prompt's identity: its version and every setting that changes the reply
    prompt_id = f"{PROMPT_VERSION};distractors={tp.distractors};mode={tp.mode};max_new_tokens={tp.max_new_tokens}"
    if tp.style != "sentence":  # appended only for other styles, so the sentence replies already cached stay valid
        prompt_id += f";style={tp.style}"
    key = cache_key(row["passage"], question, teacher.spec, prompt_id)
    # the golden passage's number is stored with the reply (ask() fills `layout` before it is written):
    # a cached reply keeps the layout it was written in
    rec = teacher.reply("answer", key, ask, extra=layout)
    verdict = filter_answer(rec["reply"], rec["gold_n"], row["passage"], tp.max_words, attribute=tp.attribute,
                            recite=tp.recite)
    if verdict.reason:
        dropped[verdict.reason] += 1
        return None
    notes["attributed"] += verdict.attributed
    notes["extra_citations"] += verdict.extra_citations
    notes["recited"] += verdict.recited
    return {**row, "target": verdict.target, "teacher": {"reply": rec["reply"], "gold_n": rec["gold_n"],
                                                         "attributed": verdict.attributed}}


def run(params: LoopParams, paths: Paths, ctx: Context) -> dict[str, Any]:
    from finetune.teacher import PROMPT_VERSION, AnswerCache

    tp = params.teacher
    llm = open_teacher(tp, ctx.settings)
    dropped: Counter[str] = Counter()
    notes: Counter[str] = Counter()
    seen: set[str] = set()
    splits: dict[str, dict[str, int]] = {}
    with AnswerCache(paths.teacher_cache) as cache, open_rag(params, paths, ctx.settings) as rag:
        teacher = _Teacher(llm, str(tp.model), cache)
        log(f"teach: teacher {tp.model}, {len(cache)} cached replies in {paths.teacher_cache}")
        for name in ("train", "val"):
            rows = read_rows(paths.split / f"{name}.jsonl")[: tp.limit or None]
            kept = []
            for i, row in enumerate(rows, 1):
                if tp.questions:
                    row = _teacher_question(teacher, row, seen, params, dropped)
                if row is not None:
                    taught = _teach_row(teacher, rag, row, tp, dropped, notes)
                    if taught is not None:
                        kept.append(taught)
                if i % 25 == 0:
                    log(f"teach {name}: {i}/{len(rows)}, {len(kept)} kept, {dict(teacher.counts)}")
            write_rows(paths.teach / f"{name}.jsonl", kept)
            splits[name] = {"asked": len(rows), "kept": len(kept)}
    c = teacher.counts
    generated = c["answer_generated"] + c["question_generated"]
    report = {
        "teacher": str(tp.model), "prompt_version": PROMPT_VERSION, "style": tp.style,
        "questions_by": "teacher" if tp.questions else "synthesise",
        "asked": sum(s["asked"] for s in splits.values()), "kept": sum(s["kept"] for s in splits.values()),
        "dropped": dict(sorted(dropped.items())), "attributed": notes["attributed"],
        "extra_citations": notes["extra_citations"], "recited": notes["recited"], "splits": splits,
        "generated": generated, "cached": c["answer_cached"] + c["question_cached"],
        "answers": {"generated": c["answer_generated"], "cached": c["answer_cached"]},
        "questions": {"generated": c["question_generated"], "cached": c["question_cached"]},
        "tokens_generated": teacher.tokens, "generate_seconds": round(teacher.seconds, 2),
        "tokens_per_s": round(teacher.tokens / teacher.seconds, 2) if teacher.seconds else None,
        "s_per_generation": round(teacher.seconds / generated, 2) if generated else None,
    }
    paths.teach_report.write_text(json.dumps(report, indent=2))
    if not splits["train"]["kept"]:
        raise DataError(f"no teacher answer survived the filter (dropped: {dict(dropped)}); see "
                        f"{paths.teacher_cache} for the replies, or try teacher.attribute=true / another teacher")
    return {k: report[k] for k in ("kept", "generated", "cached", "tokens_per_s")}
