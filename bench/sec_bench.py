"""SEC 10-Q filings: does retrieval find the right filing, and the numbers the answer needs?

    python -m bench --only sec                 # through the umbrella
    python bench/sec_bench.py [--distractors] [--ablation] [--out bench/results/sec.md]

On ../shared/data/sec-10q (8 filings, 80 reviewed questions): for each method, source hit@5/@10
(a top-k passage comes from a filing the question's ``Source Docs`` glob matches) and answer-number
recall@5 (the share of the numbers in the reference answer, like ``127,101`` or ``12.5%``, found in
the top-5 passages; dates, years and small counts are left out), overall, by question type and by
table vs text questions. ``--distractors`` adds the shared PDFs (../shared/data/pdfs, OCR off) to
both indexes.

ragtune: the loader, splitter and context line ingest uses (``ingest.loaders.load`` ->
``rag.chunking.split_document`` -> re-split to the embedder's token limit), embedded by the
configured embedder, searched with ``rag.retrieval.Retriever`` over an in-memory store (dense,
BM25, hybrid exactly as the server runs them; hybrid also without the document prior of
rag/doc_prior.py, for comparison). ``--ablation`` re-chunks with each context-line part left out. ``--answers N`` also
has the default LLM answer the first N questions with figures through ``rag.chain`` over the
default mode's top-k passages, and scores the reference figures found in the generated answer
(citation markers removed) beside those in the passages it was shown. The naive pipeline is LangChain's documented one: PyPDFLoader (pypdf ``extract_text``
per page) + ``RecursiveCharacterTextSplitter(1000, 200)`` + MiniLM + a FAISS flat L2 index.
langchain-community is not installed here, so the same steps are written out with pypdf,
langchain_text_splitters and faiss; the vectors come from the same (cached) MiniLM embedder as
ragtune's.
"""

from __future__ import annotations

import argparse
import csv
import fnmatch
import json
import re
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SEC = ROOT.parent / "shared" / "data" / "sec-10q"
PDFS = ROOT.parent / "shared" / "data" / "pdfs"
CACHE = Path.home() / ".cache" / "ragtune-bench" / "sec"
TARGETS = {"hit@5": 0.95, "numbers@5": 0.30, "over_langchain": 0.10}

_MONTH = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[a-z]*\.?"
_NUM = re.compile(r"\d[\d,]*(?:\.\d+)?")


# -- questions and numbers ---------------------------------------------------------------------
def _norm(token: str) -> str:
    t = token.replace(",", "").rstrip(".")
    return t.removesuffix(".0")


def answer_numbers(text: str) -> set[str]:
    """The figures a reference answer states: no dates, years, form names or list numbers."""
    text = re.sub(rf"{_MONTH}\s+\d{{1,2}},?", " ", text)
    text = re.sub(r"\b(?:10-[QK]|8-K|Q[1-4])\b", " ", text)
    out = set()
    for tok in _NUM.findall(text):
        t = _norm(tok)
        if not t or re.fullmatch(r"(19|20)\d\d", t) or ("." not in t and len(t) < 2):
            continue
        out.add(t)
    return out


def passage_numbers(text: str) -> set[str]:
    return {_norm(t) for t in _NUM.findall(text)}


def questions() -> list[dict]:
    rows = []
    with (SEC / "qna_data.csv").open(newline="", encoding="utf-8") as fh:
        for r in csv.DictReader(fh):
            rows.append({"question": r["Question"].strip(), "globs": [g.strip() for g in r["Source Docs"].split(",")],
                         "type": r["Question Type"].strip(), "chunk": r["Source Chunk Type"].strip(),
                         "numbers": answer_numbers(r["Answer"])})
    return rows


def _files(distractors: bool) -> list[Path]:
    files = sorted((SEC / "docs").glob("*.pdf"))
    return files + (sorted(PDFS.rglob("*.pdf")) if distractors else [])


# -- an in-memory store, enough for rag.retrieval.Retriever -------------------------------------
class MemoryStore:
    def __init__(self, chunks, vectors: np.ndarray):
        self.chunks, self.vectors = chunks, vectors
        self.by_id = {c.id: c for c in chunks}

    def version(self):
        return len(self.chunks)

    def count(self) -> int:
        return len(self.chunks)

    def texts(self, with_collections: bool = False):
        out = [c.id for c in self.chunks], [c.text for c in self.chunks]
        return (*out, [getattr(c, "collection", "default") for c in self.chunks]) if with_collections else out

    def get(self, ids):
        return [self.by_id[i] for i in ids if i in self.by_id]

    def iter_chunks(self, batch_size: int = 1000):   # what rag.doc_prior reads the documents' identity from
        for i in range(0, len(self.chunks), batch_size):
            yield self.chunks[i:i + batch_size], self.vectors[i:i + batch_size]

    def search(self, vector, k, filter=None):
        from rag.types import Hit

        scores = self.vectors @ np.asarray(vector, dtype=np.float32)
        top = np.argsort(-scores)[:k]
        return [Hit.from_chunk(self.chunks[i], float(scores[i])) for i in top]


# -- the two pipelines ---------------------------------------------------------------------------
def ragtune_docs(files: list[Path], settings, log) -> list:
    from ingest.loaders import LoadError, load

    docs = []
    for f in files:
        try:
            docs.append(load(f, settings.ingest))
        except LoadError as e:
            log(f"    ragtune skips {f.name}: {e}")
    return docs


def ragtune_chunks(docs, settings, emb, context: tuple[str, ...] | None):
    from rag.chunking import chunk_id, split_document
    from rag.types import Chunk

    s = settings.ingest
    kw = {} if context is None else {"context": context}
    out = []
    for doc in docs:
        pieces = split_document(doc, s.chunk_size, s.chunk_overlap, **kw)
        counts = emb.count_tokens([p.text for p in pieces]) if pieces else []
        if any(c > emb.max_tokens for c in counts):   # what ingest.pipeline._refit does
            pieces = split_document(doc, s.chunk_size, s.chunk_overlap, max_tokens=emb.max_tokens,
                                    count_tokens=emb.count_tokens, **kw)
        src = Path(doc.source).name
        out += [Chunk(chunk_id(src, i, p.text), p.text, src, p.page, i, "", dict(p.meta)) for i, p in enumerate(pieces)]
    return out


def naive_chunks(files: list[Path], log):
    import logging

    import pypdf
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    from rag.types import Chunk

    logging.getLogger("pypdf").setLevel(logging.ERROR)
    split = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200)
    out = []
    for f in files:
        try:
            reader = pypdf.PdfReader(str(f))
            if reader.is_encrypted:
                reader.decrypt("")
            pages = [(i + 1, p.extract_text() or "") for i, p in enumerate(reader.pages)]
        except Exception as e:  # noqa: BLE001 - PyPDFLoader raises too; the file is skipped
            log(f"    naive skips {f.name}: {e.__class__.__name__}")
            continue
        for page, text in pages:
            for t in split.split_text(text):
                out.append(Chunk(f"n{len(out)}", t, f.name, page))
    return out


def _hits_rag(chunks, emb, settings, qs, modes=("dense", "bm25", "hybrid")) -> dict[str, list[list]]:
    from rag.retrieval import Retriever

    vecs = emb.embed([c.text for c in chunks])
    store = MemoryStore(chunks, vecs)
    retr = Retriever(store, emb, settings.retrieval)
    out = {m: [retr.retrieve(q["question"], k=10, mode=m) for q in qs] for m in modes}
    if "hybrid" in modes and settings.retrieval.doc_prior > 0:   # what rag/doc_prior.py adds, same run
        off = Retriever(store, emb, settings.retrieval.model_copy(update={"doc_prior": 0.0}))
        out["hybrid (no doc prior)"] = [off.retrieve(q["question"], k=10, mode="hybrid") for q in qs]
    return out


def _hits_naive(chunks, emb, qs) -> list[list]:
    import faiss

    from rag.types import Hit

    index = faiss.IndexFlatL2(emb.dim)
    index.add(np.ascontiguousarray(emb.embed([c.text for c in chunks]), dtype=np.float32))
    qv = np.ascontiguousarray(np.stack([emb.embed_query(q["question"]) for q in qs]), dtype=np.float32)
    _, idx = index.search(qv, 10)
    return [[Hit.from_chunk(chunks[i], 0.0) for i in row if i >= 0] for row in idx]


# -- scoring -----------------------------------------------------------------------------------
def score(qs: list[dict], hits: list[list]) -> dict:
    def one(q, h):
        match = [any(fnmatch.fnmatch(x.source, g) for g in q["globs"]) for x in h]
        found = set().union(*(passage_numbers(x.text) for x in h[:5])) if h else set()
        rec = len(q["numbers"] & found) / len(q["numbers"]) if q["numbers"] else None
        return any(match[:5]), any(match[:10]), rec

    rows = [one(q, h) for q, h in zip(qs, hits)]

    def agg(sel):
        r = [rows[i] for i in sel]
        recs = [x[2] for x in r if x[2] is not None]
        return {"n": len(r), "hit@5": float(np.mean([x[0] for x in r])) if r else 0.0,
                "hit@10": float(np.mean([x[1] for x in r])) if r else 0.0,
                "numbers@5": float(np.mean(recs)) if recs else 0.0}

    out = {"all": agg(range(len(qs)))}
    for key in ("type", "chunk"):
        for v in sorted({q[key] for q in qs}):
            out[f"{key}={v}"] = agg([i for i, q in enumerate(qs) if q[key] == v])
    return out


ABLATION = ("title", "identity", "section", "table")


def answer_numbers_in_answers(qs: list[dict], hits: list[list], settings, n: int, log, embed) -> dict:
    """The default LLM answers up to ``n`` questions with figures from their top-k passages
    (``settings.retrieval.k`` and the ``retrieval.sentences`` selection made with ``embed``: the
    chain exactly as ``rag ask`` runs it); per question, the share of the reference figures in the
    answer and in the passages the model was shown."""
    from eval.metrics import strip_citations
    from rag import chain
    from rag.llms import open_llm
    from rag.selection import select_sentences

    def select(question, top):
        return select_sentences(question, top, embed, settings.retrieval.sentences)

    llm = open_llm("", settings)
    k = settings.retrieval.k
    rows = []
    for q, h in [(q, h) for q, h in zip(qs, hits) if q["numbers"]][:n]:
        t0 = time.perf_counter()
        a = chain.answer(q["question"], retrieve=lambda _q, top=h[:k]: list(top), llm=llm, settings=settings,
                         select=select)
        shown = set().union(*(passage_numbers(s.text) for s in a.sources))
        said = passage_numbers(strip_citations(a.text))
        rows.append({"question": q["question"], "answer": a.text, "numbers": sorted(q["numbers"]),
                     "in_answer": len(q["numbers"] & said) / len(q["numbers"]),
                     "in_passages": len(q["numbers"] & shown) / len(q["numbers"]),
                     "any_in_answer": bool(q["numbers"] & said), "seconds": time.perf_counter() - t0})
        log(f"    answer {len(rows)}/{n}: {rows[-1]['in_answer']:.2f} of the figures ({rows[-1]['seconds']:.0f} s)")
    llm_name = getattr(llm, "name", "")
    if hasattr(llm, "close"):
        llm.close()

    def mean(key: str) -> float:
        return float(np.mean([r[key] for r in rows])) if rows else 0.0

    return {"llm": llm_name, "k": k, "sentences": settings.retrieval.sentences, "n": len(rows), "numbers_in_answer": mean("in_answer"),
            "any_number_in_answer": mean("any_in_answer"), "numbers_in_passages": mean("in_passages"),
            "median_s": float(np.median([r["seconds"] for r in rows])) if rows else 0.0, "rows": rows}


def bench(distractors: bool = False, ablation: bool = False, log=print, answers: int = 0) -> dict:
    from rag.api import RAG
    from rag.settings import load_settings

    settings = load_settings(env={}, overrides={"data_dir": str(CACHE)})
    rag = RAG(settings=settings)
    emb = rag.embedder
    qs = questions()
    runs: dict[str, dict] = {}
    sets = [("sec", False)] + ([("sec+pdfs", True)] if distractors else [])
    for name, extra in sets:
        files = _files(extra)
        settings.ingest.ocr = "off" if extra else settings.ingest.ocr
        t0 = time.perf_counter()
        docs = ragtune_docs(files, settings, log)
        log(f"  [{name}] ragtune parsed {len(docs)} files in {time.perf_counter() - t0:.0f} s")
        variants: list[tuple[str, tuple[str, ...] | None]] = [("", None)]
        if ablation and name == "sec":
            variants += [("no context", ())] + [(f"without {p}", tuple(x for x in ABLATION if x != p))
                                               for p in ABLATION]
        for label, ctx in variants:
            try:
                chunks = ragtune_chunks(docs, settings, emb, ctx)
            except TypeError:   # a splitter without context parts (measuring the code before them)
                if ctx is not None:
                    continue
                chunks = ragtune_chunks(docs, settings, emb, None)
            t0 = time.perf_counter()
            hits = _hits_rag(chunks, emb, settings, qs, ("hybrid",) if label else ("dense", "bm25", "hybrid"))
            for mode, h in hits.items():
                key = f"{name} ragtune {mode}" + (f" ({label})" if label else "")
                runs[key] = {"chunks": len(chunks), **score(qs, h)}
                log(f"    {key}: {_line(runs[key]['all'])} ({len(chunks)} chunks, {time.perf_counter() - t0:.0f} s)")
            if answers and name == "sec" and not label:
                generated = answer_numbers_in_answers(qs, hits[settings.retrieval.mode], settings, answers, log,
                                                      emb.embed)
        t0 = time.perf_counter()
        naive = naive_chunks(files, log)
        runs[f"{name} langchain"] = {"chunks": len(naive), **score(qs, _hits_naive(naive, emb, qs))}
        log(f"    {name} langchain: {_line(runs[f'{name} langchain']['all'])} ({len(naive)} chunks, "
            f"{time.perf_counter() - t0:.0f} s)")
    rag.close()
    return {"questions": len(qs), "with_numbers": sum(1 for q in qs if q["numbers"]),
            "default_mode": settings.retrieval.mode, "runs": runs, "targets": targets(runs, settings.retrieval.mode),
            **({"answers": generated} if answers else {})}


def _line(r: dict) -> str:
    return f"hit@5 {r['hit@5']:.3f}  hit@10 {r['hit@10']:.3f}  numbers@5 {r['numbers@5']:.3f}"


def targets(runs: dict, mode: str) -> list[dict]:
    out = []
    for name in ("sec", "sec+pdfs"):
        rt, lc = runs.get(f"{name} ragtune {mode}"), runs.get(f"{name} langchain")
        if not rt or not lc:
            continue
        a, b = rt["all"], lc["all"]
        out += [{"set": name, "target": f"source hit@5 >= {TARGETS['hit@5']} ({mode})", "met": a["hit@5"] >= TARGETS["hit@5"],
                 "figure": f"{a['hit@5']:.3f}"},
                {"set": name, "target": f"number recall@5 >= {TARGETS['numbers@5']} ({mode})",
                 "met": a["numbers@5"] >= TARGETS["numbers@5"], "figure": f"{a['numbers@5']:.3f}"},
                {"set": name, "target": "hit@5 >= LangChain + 0.10", "met": a["hit@5"] >= b["hit@5"] + TARGETS["over_langchain"],
                 "figure": f"{a['hit@5']:.3f} vs {b['hit@5']:.3f} ({a['hit@5'] - b['hit@5']:+.3f})"}]
    return out


def render(res: dict) -> str:
    L = ["# SEC 10-Q retrieval (`python bench/sec_bench.py`)", "",
         (f"{res['questions']} questions ({res['with_numbers']} with figures in the reference answer) over "
          "../shared/data/sec-10q; `sec+pdfs` adds the 55 shared PDFs as distractors. Source hit@k: a top-k passage "
          "comes from a filing the question's `Source Docs` matches; numbers@5: share of the reference answer's "
          "figures found in the top-5 passages."), "", "## Targets", ""]
    for t in res["targets"]:
        L.append(f"- {'MET' if t['met'] else 'MISSED'}: [{t['set']}] {t['target']}: {t['figure']}")
    L += ["", "## All questions", "", "| run | chunks | hit@5 | hit@10 | numbers@5 |", "| --- | ---: | ---: | ---: | ---: |"]
    for name, r in res["runs"].items():
        a = r["all"]
        L.append(f"| {name} | {r['chunks']} | {a['hit@5']:.3f} | {a['hit@10']:.3f} | {a['numbers@5']:.3f} |")
    if res.get("answers"):
        g = res["answers"]
        L += ["", "## Figures in the generated answer", "",
              (f"The default LLM (`{g['llm']}`) answered the first {g['n']} questions with figures through the chain "
               f"over the {res['default_mode']} top {g['k']} passages (citation markers removed; median "
               f"{g['median_s']:.1f} s per answer). Share of the reference figures in the answer: "
               f"**{g['numbers_in_answer']:.3f}**; answers with at least one of them: {g['any_number_in_answer']:.3f}; "
               f"share in the passages it was shown: {g['numbers_in_passages']:.3f}.")]
    groups = [k for k in next(iter(res["runs"].values())) if "=" in k]
    L += ["", "## By question type and source chunk type (hit@5 / numbers@5)", "",
          "| run | " + " | ".join(f"{g.split('=')[1]} (n={next(iter(res['runs'].values()))[g]['n']})" for g in groups) + " |",
          "| --- |" + " ---: |" * len(groups)]
    for name, r in res["runs"].items():
        if "(" in name:
            continue
        L.append(f"| {name} | " + " | ".join(f"{r[g]['hit@5']:.2f} / {r[g]['numbers@5']:.2f}" for g in groups) + " |")
    return "\n".join(L) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--distractors", action="store_true", help="also ingest ../shared/data/pdfs beside the filings")
    p.add_argument("--ablation", action="store_true", help="re-chunk without each context-line part")
    p.add_argument("--answers", type=int, default=0, metavar="N",
                   help="the default LLM answers the first N questions with figures (0: retrieval only)")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "sec.md")
    a = p.parse_args(argv)
    res = bench(a.distractors, a.ablation, log=lambda m: print(m, file=sys.stderr, flush=True), answers=a.answers)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(render(res), encoding="utf-8")
    a.out.with_suffix(".json").write_text(json.dumps(res, indent=1, default=list), encoding="utf-8")
    print(render(res))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
