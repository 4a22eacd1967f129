"""Cold ingest and re-ingest: ragtune against what a LangChain or LlamaIndex user would write.

    python -m bench --only ingest              # through the umbrella (table + LATEST.md)
    python -m bench.ingest_bench --worker langchain --corpus DIR --data-dir TMP   # one pipeline
    python -m bench.ingest_bench --pipelines ragtune,llamaindex --no-variants      # a quick check, JSON out

Each pipeline runs in its own subprocess, so its peak RSS is its own; the parent samples the
RSS of the whole process tree (ragtune parses in a worker process) every 50 ms. Seconds are the
subprocess wall time: interpreter start, imports, model load, parse, split, embed, index.
Pages/s use the same denominator for every pipeline (pages PDFium can open in the corpus).

ragtune also runs with each embedder runtime and core split in ``RAGTUNE_VARIANTS`` (settings
overrides); the OpenVINO exports they load are built before any timing (``warm_exports``: a
one-time cost per model, like installing it). A baseline whose packages are missing is reported
as not run instead of failing the section.

Text each pipeline embeds vs truncates is counted afterwards (outside the timing) with the
embedder's own tokenizer: MiniLM reads 256 word pieces and silently drops the rest.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PDFS = ROOT.parent / "shared" / "data" / "pdfs"
PIPELINES = ("ragtune", "langchain", "llamaindex")
EXPORTS_HOME = Path.home() / ".cache" / "ragtune-bench" / "models"   # bench/embedder_bench.py's exports
# ragtune again with other embedder runtimes / a different split of the 2 cores (settings overrides);
# "ragtune" itself runs with the default settings (embedder runtime "auto": OpenVINO int8 where the
# extra is installed, as here).
ALL_VARIANTS = {
    "ragtune torch bf16": {"embedder_backend": "torch", "embedder_quantization": "none"},
    "ragtune openvino bf16": {"embedder_backend": "openvino", "embedder_quantization": "none"},
    "ragtune openvino int8, embedder threads 1": {"embedder_backend": "openvino", "embedder_quantization": "int8",
                                                  "embedder_threads": 1},
    "ragtune openvino int8, parse inline": {"embedder_backend": "openvino", "embedder_quantization": "int8",
                                            "ingest.workers": 0},
}
# Baselines again with settings their docs point to, so they do the same work as ragtune: MiniLM
# reads 256 word pieces and silently drops the rest of LlamaIndex's default 1,024-token chunks
# (59% of the text on the standard corpus); 200-token chunks (LlamaIndex counts tiktoken tokens,
# which are fewer than MiniLM's word pieces) keep every word embedded.
BASELINE_VARIANTS = {"llamaindex, equal work": ("llamaindex", {"chunk_size": 200, "chunk_overlap": 20})}
# The default list: the previous default (torch bf16) and OpenVINO bf16 beside the default int8.
# The core-split variants were measured once (docs/embedders.md) and change little.
RAGTUNE_VARIANTS = {k: ALL_VARIANTS[k] for k in ("ragtune torch bf16", "ragtune openvino bf16")}
LARGE_VARIANTS: dict = {}


# -- corpus ---------------------------------------------------------------------------------------
def count_pages(folder: Path) -> int:
    """Pages PDFium can open under ``folder`` (files it refuses count 0)."""
    import pypdfium2 as pdfium

    total = 0
    for f in sorted(folder.rglob("*.pdf")):
        try:
            doc = pdfium.PdfDocument(str(f))
            total += len(doc)
            doc.close()
        except Exception:  # noqa: BLE001 - encrypted/broken files are part of the corpus on purpose
            pass
    return total


def replicated_corpus(src: Path, dest: Path, min_pages: int) -> Path:
    """Copies of ``src`` under renamed folders (copy0/, copy1/, ...) until ``min_pages`` is reached."""
    per = max(1, count_pages(src))
    copies = -(-min_pages // per)
    for i in range(copies):
        for f in sorted(src.rglob("*.pdf")):
            out = dest / f"copy{i}" / f.relative_to(src).parent / f"c{i}-{f.name}"
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, out)
    return dest


# -- the pipelines (each runs in a fresh subprocess) ----------------------------------------------
def _token_stats(texts: list[str]) -> dict:
    from transformers import AutoTokenizer

    from rag.model_paths import resolve_embedder

    tok = AutoTokenizer.from_pretrained(resolve_embedder("all-MiniLM-L6-v2"))
    limit = 256
    counts = [len(ids) for ids in tok(texts, add_special_tokens=True, truncation=False, verbose=False)["input_ids"]] if texts else []
    total = sum(counts)
    dropped = sum(max(0, c - limit) for c in counts)
    return {"chunks": len(texts), "over_limit": sum(c > limit for c in counts), "tokens": total,
            "truncated_tokens": dropped, "truncated_share": dropped / total if total else 0.0}


def _ragtune(corpus: Path, data_dir: Path, no_dedup: bool, overrides: dict | None = None):
    from rag.api import RAG
    from rag.settings import load_settings

    if no_dedup:
        # The replicated corpus repeats every text; the content-addressed cache would embed each
        # once. Bypass the lookup so the figure is what a corpus without duplicates costs.
        from rag.embedders.cache import CachedEmbedder

        CachedEmbedder.embed = lambda self, texts: self.inner.embed(texts)
    over = {"data_dir": str(data_dir), "models_dir": str(EXPORTS_HOME), **(overrides or {})}
    rag = RAG(settings=load_settings(env={}, overrides=over))
    res = rag.ingest([str(corpus)])
    out = {"pages_read": sum(f.pages for f in res.files), "chunks": res.chunks, "failed": len(res.failed),
           "embedded": res.embedded}
    from bench.own_index_quality import ragtune_search

    return out, (lambda: rag.store.texts()[1]), ragtune_search(rag)


def _langchain(corpus: Path, data_dir: Path, no_dedup: bool):
    from langchain_community.document_loaders import PyPDFLoader
    from langchain_community.vectorstores import FAISS
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    try:
        from langchain_huggingface import HuggingFaceEmbeddings
    except ImportError:  # the same class, older home: langchain-huggingface pins huggingface_hub < 2
        from langchain_community.embeddings import HuggingFaceEmbeddings

    from rag.model_paths import resolve_embedder

    docs, failed = [], 0
    for f in sorted(corpus.rglob("*.pdf")):
        try:
            docs += PyPDFLoader(str(f)).load()
        except Exception:  # noqa: BLE001 - what a user would do: skip files the loader can't open
            failed += 1
    chunks = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200).split_documents(docs)
    emb = HuggingFaceEmbeddings(model_name=resolve_embedder("all-MiniLM-L6-v2"))
    store = FAISS.from_documents(chunks, emb)
    store.save_local(str(data_dir / "faiss"))
    from bench.own_index_quality import langchain_search

    return ({"pages_read": len(docs), "chunks": len(chunks), "failed": failed},
            (lambda: [c.page_content for c in chunks]), langchain_search(store))


def _llamaindex(corpus: Path, data_dir: Path, no_dedup: bool, overrides: dict | None = None):
    from llama_index.core import SimpleDirectoryReader, StorageContext, VectorStoreIndex
    from llama_index.core.node_parser import SentenceSplitter
    from llama_index.core.readers.base import BaseReader
    from llama_index.core.schema import Document
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding

    from rag.model_paths import resolve_embedder

    class PypdfReader(BaseReader):
        """One Document per page, like llama-index-readers-file's PDFReader (not installed: it
        downgrades pypdf), so SimpleDirectoryReader does not read PDFs as bytes."""

        def load_data(self, file, extra_info=None, fs=None):
            from pypdf import PdfReader

            reader = PdfReader(str(file))
            return [Document(text=page.extract_text() or "", metadata={"file_name": Path(file).name, "page_label": i + 1,
                                                                       **(extra_info or {})})
                    for i, page in enumerate(reader.pages)]

    # PDFs only, like the other pipelines (a corpus folder may also hold a MANIFEST.tsv or qa.jsonl).
    reader = SimpleDirectoryReader(str(corpus), recursive=True, required_exts=[".pdf"],
                                   file_extractor={".pdf": PypdfReader()}, raise_on_error=False)
    docs = reader.load_data()
    nodes = SentenceSplitter(**(overrides or {})).get_nodes_from_documents(docs)  # overrides: BASELINE_VARIANTS
    index = VectorStoreIndex(nodes, embed_model=HuggingFaceEmbedding(model_name=resolve_embedder("all-MiniLM-L6-v2")))
    index.storage_context.persist(str(data_dir / "llamaindex"))
    files = len(list(corpus.rglob("*.pdf")))
    got = len({d.metadata.get("file_path") for d in docs})
    from bench.own_index_quality import llamaindex_search

    return ({"pages_read": len(docs), "chunks": len(nodes), "failed": files - got},
            (lambda: [n.get_content() for n in nodes]), llamaindex_search(index))


def worker(name: str, corpus: Path, data_dir: Path, no_dedup: bool, overrides: dict | None = None,
           questions: Path | None = None) -> dict:
    t0 = time.perf_counter()
    fn = {"ragtune": _ragtune, "langchain": _langchain, "llamaindex": _llamaindex}[name]
    out, texts, search = fn(corpus, data_dir, no_dedup, overrides) if overrides else fn(corpus, data_dir, no_dedup)
    out["seconds_inside"] = time.perf_counter() - t0
    out.update(_token_stats(texts()))  # after the timing
    if questions:  # after the timing too: the quality of this pipeline's own index
        from bench.own_index_quality import hit_at_k, load_questions

        out["quality"] = hit_at_k(search, load_questions(questions))
    return out


# -- the parent: run a pipeline subprocess, sample its tree's RSS --------------------------------
def _tree_rss(proc) -> int:
    import psutil

    try:
        p = psutil.Process(proc.pid)
        procs = [p] + p.children(recursive=True)
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for q in procs:
        try:
            total += q.memory_info().rss
        except psutil.Error:
            pass
    return total


def run_pipeline(name: str, corpus: Path, data_dir: Path, *, no_dedup: bool = False, env: dict | None = None,
                 overrides: dict | None = None, questions: Path | None = None) -> dict:
    cmd = [sys.executable, "-m", "bench.ingest_bench", "--worker", name, "--corpus", str(corpus),
           "--data-dir", str(data_dir)] + (["--no-dedup"] if no_dedup else [])
    cmd += ["--overrides", json.dumps(overrides)] if overrides else []
    cmd += ["--questions", str(questions)] if questions else []
    return _timed(cmd, env)


def _timed(cmd: list[str], env: dict | None = None) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONWARNINGS": "ignore",
           **(env or {})}
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=err)
        peak = 0
        while proc.poll() is None:
            peak = max(peak, _tree_rss(proc))
            time.sleep(0.05)
        wall = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        text, errs = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    lines = [ln for ln in text.splitlines() if ln.startswith("{")]
    if proc.returncode not in (0, 1) or not lines:
        raise RuntimeError(f"{' '.join(cmd[:5])} exited {proc.returncode}: {errs[-2000:]}")
    line = lines[-1]
    data = json.loads(line)
    return {**data, "reported_seconds": data.get("seconds"), "seconds": wall, "peak_rss_mb": peak / 2**20}


def reingest(corpus: Path, data_dir: Path) -> dict:
    """The unchanged corpus again, through the real CLI: ``python -m ingest DIR --json``."""
    r = _timed([sys.executable, "-m", "ingest", str(corpus), "--data-dir", str(data_dir), "--json"],
               {"RAGTUNE_MODELS_DIR": str(EXPORTS_HOME)})
    return {"seconds": r["seconds"], "cli_seconds": r["reported_seconds"], "unchanged": r.get("unchanged"),
            "added": r.get("added"), "updated": r.get("updated"), "peak_rss_mb": r["peak_rss_mb"]}


def warm_exports(log=print) -> None:
    """Build the OpenVINO exports the ragtune runs use before any timing (a one-time cost per
    model, like installing it; calibrated on the shipped passages, as the quality gates were)."""
    from rag.embedders import open_embedder

    for quant in ("none", "int8"):
        emb = open_embedder("all-MiniLM-L6-v2", backend="openvino", quantization=quant,
                            cache_dir=EXPORTS_HOME / "exports", log=log)
        emb.load(calibration=None)


def bench(corpus: Path, work: Path, *, pipelines=PIPELINES, no_dedup: bool = False, log=print,
          variants: dict | None = None, questions: Path | None = None, rounds: int = 1) -> dict:
    """Cold ingest of ``corpus`` by every pipeline (and ragtune variant), then ragtune's re-ingest;
    with ``questions``, each pipeline's own index is also scored (bench/own_index_quality.py).

    ``rounds`` > 1 runs the whole list that many times, interleaved (A B C A B C), and keeps each
    pipeline's fastest run: on a shared machine a burst of load then hits one run of each, not
    all runs of one pipeline (every round's seconds are kept in ``round_seconds``)."""
    pages = count_pages(corpus)
    out: dict = {"corpus": str(corpus), "pages": pages, "files": len(list(corpus.rglob("*.pdf"))), "runs": {},
                 "rounds": rounds}
    variants = RAGTUNE_VARIANTS if variants is None else variants
    warm_exports(log)
    baselines = [(n, o) for n, (w, o) in BASELINE_VARIANTS.items() if w in pipelines]
    runs = ([(name, None) for name in pipelines] + baselines + list(variants.items())) * max(1, rounds)
    for name, overrides in runs:
        d = work / name.replace(" ", "_").replace(",", "")
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        log(f"  ingest: {name} over {out['files']} files / {pages} pages ...")
        worker_name = (BASELINE_VARIANTS[name][0] if name in BASELINE_VARIANTS
                       else "ragtune" if name.startswith("ragtune") else name)
        try:
            r = run_pipeline(worker_name, corpus, d, no_dedup=no_dedup and worker_name == "ragtune",
                             overrides=overrides, questions=questions)
        except (RuntimeError, IndexError) as e:  # a baseline whose packages are missing here
            out.setdefault("failed_pipelines", {})[name] = str(e)[-300:]
            log(f"    {name} failed: {str(e)[-300:]}")
            continue
        r["pages_per_s"] = pages / r["seconds"]
        r["chunks_per_s"] = r["chunks"] / r["seconds"]
        prev = out["runs"].get(name)
        r["round_seconds"] = (prev["round_seconds"] if prev else []) + [r["seconds"]]
        if prev and prev["seconds"] <= r["seconds"]:
            prev["round_seconds"] = r["round_seconds"]
            log(f"    {r['seconds']:.1f} s (round {len(r['round_seconds'])}; the faster {prev['seconds']:.1f} s is kept)")
            continue
        out["runs"][name] = r
        log(f"    {r['seconds']:.1f} s, {r['pages_per_s']:.1f} pages/s, {r['chunks']} chunks, "
            f"peak {r['peak_rss_mb']:.0f} MB, {r['over_limit']} chunks over 256 word pieces"
            + (f", hit@5 {r['quality']['hit@5']:.3f}" if "quality" in r else ""))
        if name == "ragtune" and "reingest" not in out:
            out["reingest"] = reingest(corpus, d)
            log(f"    re-ingest {out['reingest']['seconds']:.2f} s")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--worker", choices=PIPELINES, help="run one pipeline in this process, print one JSON object")
    p.add_argument("--corpus", type=Path, default=PDFS)
    p.add_argument("--data-dir", type=Path)
    p.add_argument("--no-dedup", action="store_true", help="ragtune: bypass the embedding cache lookups")
    p.add_argument("--overrides", type=json.loads, help="ragtune: settings overrides as a JSON object; "
                                                        "llamaindex: SentenceSplitter arguments")
    p.add_argument("--questions", type=Path, help="score the pipeline's own index on these questions (qa.jsonl)")
    p.add_argument("--pipelines", default=",".join(PIPELINES),
                   help="without --worker: the pipelines to run (their BASELINE_VARIANTS come along)")
    p.add_argument("--no-variants", action="store_true", help="without --worker: no ragtune runtime variants")
    a = p.parse_args(argv)
    if a.worker:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        print(json.dumps(worker(a.worker, a.corpus, a.data_dir or Path(tempfile.mkdtemp()), a.no_dedup, a.overrides,
                                a.questions)))
        return 0
    with tempfile.TemporaryDirectory(prefix="ingest-bench-") as tmp:
        print(json.dumps(bench(a.corpus, Path(tmp), pipelines=tuple(a.pipelines.split(",")),
                               variants={} if a.no_variants else None, log=lambda m: print(m, file=sys.stderr)),
                         indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
