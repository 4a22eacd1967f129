"""RAFT-style training data from an ingested store: question + golden passage + distractors -> answer.

For each chosen chunk a generator writes a question the chunk answers. The prompt shows that
golden passage among ``distractors`` passages from other chunks (preferably other files), in a
seeded random order, and the answer cites the golden passage as ``[n]``. Training on this teaches
the model to find and cite the right passage and ignore the rest (Zhang et al., 2024, RAFT).

Generators:
- ``ExtractiveGenerator`` (default): no LLM. Picks a factual sentence ("X is Y", "X has Y", a
  sentence with a number) and turns it into a question deterministically; the answer is a span of
  that sentence.
- ``LLMGenerator(llm)``: any plain callable ``prompt -> str`` or object with ``complete(prompt)``
  or ``generate(prompt)`` returning a JSON object ``{"question": ..., "answer": ...}``.

    python -m finetune.synth --from-store .ragtune/index --output train.jsonl --max-examples 500
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from rag.errors import ConfigError, DataError, RagtuneError, redact

if TYPE_CHECKING:
    from rag.settings import Settings

__all__ = [
    "QA",
    "RAFT_INSTRUCTION",
    "ExtractiveGenerator",
    "LLMGenerator",
    "SynthReport",
    "format_passages",
    "read_chunks",
    "synthesize",
]

RAFT_INSTRUCTION = ("Answer the question using only the numbered passages below, and cite the passage "
                    "you used as [n].")


@dataclass(slots=True)
class QA:
    question: str
    answer: str
    evidence: str = ""  # the sentence the answer comes from, when known


class Generator(Protocol):
    def __call__(self, text: str, source: str = "") -> QA | None: ...


_SENT = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")
_COPULA = re.compile(r"^(?P<subj>.{3,80}?)\s+(?P<verb>is|are|was|were|has|have|had|includes|include|"
                     r"contains|contain|requires|require|uses|use|means|costs|takes)\s+(?P<rest>.{2,240})$")
_DO_FORMS = {"has": ("does", "have"), "have": ("do", "have"), "had": ("did", "have"),
             "includes": ("does", "include"), "include": ("do", "include"),
             "contains": ("does", "contain"), "contain": ("do", "contain"),
             "requires": ("does", "require"), "require": ("do", "require"),
             "uses": ("does", "use"), "use": ("do", "use"), "means": ("does", "mean"),
             "costs": ("does", "cost"), "takes": ("does", "take")}
_DETERMINERS = {"the", "a", "an", "each", "every", "all", "most", "some", "our", "its", "their", "your"}
_BAD_SUBJECT = re.compile(r"^(it|this|that|these|those|there|they|he|she|we|you|i|which|what|in|on|at|by|for|"
                          r"with|from|after|before|during|of|to|when|if|as|so|and|but|or)\b|\b(there|which|who|that)\b",
                          re.IGNORECASE)


def sentences(text: str) -> list[str]:
    text = re.sub(r"\s+", " ", text).strip()
    return [s.strip() for s in _SENT.split(text) if s.strip()]


def _lower_first(s: str) -> str:
    # "The refund window" -> "the refund window"; keep acronyms ("API keys") as they are.
    first = s.split()[0]
    if len(first) > 1 and first[1:].islower() and first.lower() in _DETERMINERS:
        return s[0].lower() + s[1:]
    return s


class ExtractiveGenerator:
    """Deterministic question from a factual sentence; the answer is a span of that sentence.

    "The refund window is 30 days." -> "What is the refund window?" / "30 days".
    "Acme has 12 offices in Europe." -> "What does Acme have?" / "12 offices in Europe".
    A sentence with a number but no usable verb becomes a fill-in question about its last number.
    """

    def __init__(self, min_chars: int = 25, max_chars: int = 300):
        self.min_chars, self.max_chars = min_chars, max_chars

    def candidates(self, text: str) -> list[QA]:
        out = []
        for s in sentences(text):
            if not (self.min_chars <= len(s) <= self.max_chars) or not s.endswith((".", "!")) or "?" in s:
                continue
            body = s.rstrip(".!").strip()
            m = _COPULA.match(body)
            if m and not _BAD_SUBJECT.match(m["subj"]) and len(m["subj"].split()) <= 10:
                subj, verb, rest = _lower_first(m["subj"].strip()), m["verb"], m["rest"].strip(" ,;:")
                if verb in _DO_FORMS:
                    aux, base = _DO_FORMS[verb]
                    q = f"What {aux} {subj} {base}?"
                else:
                    q = f"What {verb} {subj}?"
                out.append(QA(q, rest, s))
                continue
            nums = list(re.finditer(r"\b\d[\d,.]*\b(?:\s*(?:%|percent|days|years|hours|minutes|km|kg))?", body))
            if nums:
                n = nums[-1]
                blank = body[: n.start()] + "____" + body[n.end():]
                out.append(QA(f'Fill in the blank: "{blank}."', n.group(0).strip(), s))
        return out

    def __call__(self, text: str, source: str = "") -> QA | None:
        cands = self.candidates(text)
        if not cands:
            return None
        # Deterministic pick that still varies across chunks.
        h = int(hashlib.sha256((source + text).encode()).hexdigest(), 16)
        return cands[h % len(cands)]


_LLM_PROMPT = """Write one question that the passage below answers, and its short answer taken from the passage.
Reply with only a JSON object: {{"question": "...", "answer": "..."}}

Passage:
{text}
"""


class LLMGenerator:
    """Questions written by an LLM: a callable ``prompt -> str`` or an object with ``complete``/``generate``."""

    def __init__(self, llm: Any, prompt: str = _LLM_PROMPT, **gen_kwargs: Any):
        if callable(getattr(llm, "complete", None)):
            self._call: Callable[[str], str] = lambda p: llm.complete(p, **gen_kwargs)
        elif callable(getattr(llm, "generate", None)):
            self._call = lambda p: llm.generate(p, **gen_kwargs)
        elif callable(llm):
            self._call = llm
        else:
            raise ConfigError(f"LLMGenerator needs a callable or an object with complete()/generate(), "
                              f"got {type(llm).__name__}")
        self.prompt = prompt

    def __call__(self, text: str, source: str = "") -> QA | None:
        reply = self._call(self.prompt.format(text=text.strip()[:4000]))
        reply = getattr(reply, "text", reply)
        m = re.search(r"\{.*\}", str(reply), re.DOTALL)
        if not m:
            return None
        try:
            obj = json.loads(m.group(0))
        except json.JSONDecodeError:
            return None
        q, a = str(obj.get("question", "")).strip(), str(obj.get("answer", "")).strip()
        return QA(q, a) if q and a else None


def format_passages(passages: list[tuple[str, str, int]]) -> str:
    """``[(text, source, page)]`` -> numbered passages as the prompt shows them."""
    blocks = []
    for n, (text, source, page) in enumerate(passages, start=1):
        where = Path(source).name if source else "unknown"
        if page:
            where += f", p. {page}"
        flat = re.sub(r"\s+", " ", text).strip()
        blocks.append(f"[{n}] ({where}) {flat}")
    return "\n\n".join(blocks)


@dataclass(slots=True)
class SynthReport:
    path: str
    examples: int
    chunks: int
    skipped: int


def read_chunks(uri: str, limit: int) -> list[Any]:
    """Up to ``limit`` non-empty chunks of the store at ``uri``, in store order."""
    from rag.stores import open_store

    store = open_store(uri)
    try:
        chunks: list[Any] = []
        for batch, _vectors in store.iter_chunks():
            chunks.extend(c for c in batch if c.text and c.text.strip())
            if len(chunks) >= limit:
                break
        return chunks[:limit]
    finally:
        store.close()


def synthesize(uri: str, output: str | Path, *, generator: Generator | None = None, distractors: int = 2,
               max_examples: int = 2000, seed: int = 42, max_chunks: int = 20000,
               progress: Callable[[int, int], None] | None = None) -> SynthReport:
    """Write RAFT-style rows (instruction, input, output, meta) to ``output`` as JSONL.

    Raises:
        DataError: the store holds no chunks or no chunk yielded a question.
    """
    generator = generator or ExtractiveGenerator()
    chunks = read_chunks(uri, max_chunks)
    if not chunks:
        raise DataError(f"the store at {redact(uri)} holds no chunks: ingest documents first "
                        "(python -m ingest PATH --store URI)")
    rng = random.Random(seed)
    order = list(range(len(chunks)))
    rng.shuffle(order)
    out_path = Path(output)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + ".tmp")
    written = skipped = 0
    with tmp.open("w", encoding="utf-8") as f:
        for done, i in enumerate(order, start=1):
            if written >= max_examples:
                break
            gold = chunks[i]
            qa = generator(gold.text, gold.source)
            if progress:
                progress(done, len(order))
            if qa is None:
                skipped += 1
                continue
            others = [j for j in order if j != i and chunks[j].source != gold.source] or \
                     [j for j in order if j != i]
            picked = rng.sample(others, min(distractors, len(others)))
            passages = [gold] + [chunks[j] for j in picked]
            rng.shuffle(passages)
            n = passages.index(gold) + 1
            row = {
                "instruction": f"{RAFT_INSTRUCTION}\n\nQuestion: {qa.question}",
                "input": format_passages([(c.text, c.source, c.page) for c in passages]),
                "output": f"{qa.answer.rstrip('.')} [{n}]",
                "meta": {"source": gold.source, "page": gold.page, "chunk_id": gold.id, "golden": n,
                         "distractors": [chunks[j].id for j in picked], "evidence": qa.evidence},
            }
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            written += 1
    if not written:
        tmp.unlink(missing_ok=True)
        raise DataError(f"no question could be synthesised from the {len(chunks)} chunk(s) in {redact(uri)} "
                        "(the extractive generator needs full sentences; try an LLM generator)")
    tmp.replace(out_path)
    return SynthReport(str(out_path), written, len(chunks), skipped)


def _resolve_llm(spec: str, settings: Settings) -> Any:
    """An LLM object from ``rag.llms`` (optional: the chain's LLM registry may not exist yet)."""
    try:
        from rag import llms
    except ImportError as e:
        raise ConfigError(f"--llm {spec!r} needs rag.llms, which is not available: {e}") from e
    if not callable(getattr(llms, "open_llm", None)):
        raise ConfigError("rag.llms has no open_llm factory: pass an LLM object to LLMGenerator in Python")
    return llms.open_llm(spec, settings)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m finetune.synth", description=__doc__.split("\n\n")[0],
                                epilog="example: python -m finetune.synth --from-store .ragtune/index "
                                       "--output train.jsonl --max-examples 500",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--from-store", required=True, metavar="URI", help="Store to read chunks from.")
    p.add_argument("--output", required=True, metavar="FILE.jsonl", help="Where to write the rows.")
    p.add_argument("--distractors", type=int, default=2, help="Distractor passages per question.")
    p.add_argument("--max-examples", type=int, default=2000, help="Stop after this many rows.")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--llm", metavar="SPEC", help="Write questions with this LLM (default: extractive, no LLM).")
    p.add_argument("--json", action="store_true", help="Print the summary as one JSON object.")
    return p


def main(argv: Iterable[str] | None = None) -> int:
    args = build_parser().parse_args(list(argv) if argv is not None else None)
    try:
        if args.llm:
            from rag.settings import load_settings

            gen = LLMGenerator(_resolve_llm(args.llm, load_settings()))
        else:
            gen = ExtractiveGenerator()
        rep = synthesize(args.from_store, args.output, generator=gen, distractors=args.distractors,
                         max_examples=args.max_examples, seed=args.seed)
    except RagtuneError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"path": rep.path, "examples": rep.examples, "chunks": rep.chunks, "skipped": rep.skipped}))
    else:
        print(f"wrote {rep.examples} examples from {rep.chunks} chunks to {rep.path} ({rep.skipped} skipped)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
