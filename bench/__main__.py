"""ragtune side by side with what users would write instead (LangChain, LlamaIndex, plain HF).

    python -m bench --quick                      # every section, small inputs (< 10 min idle)
    python -m bench                              # the shared corpora at their real size + a ~2,000-page copy
    python -m bench --full                       # + all SciFact/SQuAD queries
    python -m bench --only ingest,retrieval      # some sections (ingest, embedder, store,
                                                 #   retrieval, generation, finetune)

Prints one table and writes bench/results/LATEST.md (machine, versions, figures, ratios and a
MET/MISSED line per target). Each section's raw figures also go to bench/results/LATEST.json.
Timings on a shared machine are noisy: every ratio is measured in the same run, interleaved
where the section allows.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
SECTIONS = ("ingest", "embedder", "store", "retrieval", "generation", "finetune", "sec")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true", help="small inputs; every section")
    g.add_argument("--full", action="store_true", help="largest inputs (~2,000-page corpus, all queries)")
    p.add_argument("--only", help=f"comma-separated sections ({', '.join(SECTIONS)})")
    p.add_argument("--corpus", type=Path, help="PDF folder for the ingest section (default ../shared/data/pdfs)")
    p.add_argument("--out", type=Path, default=RESULTS / "LATEST.md", help="markdown report (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print the raw results as one JSON object")
    p.add_argument("--update", action="store_true",
                   help="with --only: keep the other sections of the existing report (same mode) and replace these")
    return p


# -- machine --------------------------------------------------------------------------------------
def machine() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    flags = next((ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("flags")), "").split()
    mem = next((int(ln.split()[1]) for ln in Path("/proc/meminfo").read_text().splitlines()
                if ln.startswith("MemTotal")), 0)
    vers = {}
    for pkg in ("torch", "transformers", "sentence-transformers", "faiss-cpu", "langchain-core", "langchain-community",
                "langchain-huggingface", "llama-index-core", "llama_cpp_python", "peft", "pypdf", "pypdfium2"):
        try:
            vers[pkg] = version(pkg)
        except PackageNotFoundError:
            vers[pkg] = "-"
    return {"cpu": cpu, "cores": os.cpu_count(), "ram_gb": round(mem / 2**20, 1),
            "cpu_flags": " ".join(f for f in flags if f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_int8")),
            "load_avg": os.getloadavg(), "python": platform.python_version(), "versions": vers}


# -- sections -------------------------------------------------------------------------------------
def quick_corpus(src: Path, dest: Path, max_pages: int = 60) -> Path:
    """The first files of ``src`` (sorted) up to ``max_pages`` PDFium pages, plus every odd file
    (encrypted, broken) so failure handling stays in the measurement."""
    import pypdfium2 as pdfium

    pages = 0
    for f in sorted(src.rglob("*.pdf")):
        try:
            doc = pdfium.PdfDocument(str(f))
            n = len(doc)
            doc.close()
        except Exception:  # noqa: BLE001
            n = 0
        if n and pages + n > max_pages:
            continue
        pages += n
        out = dest / f.relative_to(src)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, out)
    return dest


def run_ingest(mode: str, corpus: Path | None, log) -> dict:
    from bench import ingest_bench

    src = corpus or ingest_bench.PDFS
    out = {}
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        tmp = Path(tmp)
        if mode == "quick" and corpus is None:
            src = quick_corpus(src, tmp / "corpus")
        # Two interleaved rounds (each pipeline's faster run kept): one burst of load on this shared
        # machine once turned a 1.2x ratio into 2x (bench/ingest_bench.py ``rounds``).
        rounds = 1 if mode == "quick" else 2
        out["standard"] = ingest_bench.bench(src, tmp / "work", log=log, rounds=rounds)
        # Equal quality: every pipeline's own index of the SQuAD PDFs, scored on the shared questions.
        from bench.own_index_quality import SQUAD

        quality_variants = {k: ingest_bench.RAGTUNE_VARIANTS[k] for k in ("ragtune torch bf16",)}
        out["squad"] = ingest_bench.bench(SQUAD, tmp / "work-squad", log=log, variants=quality_variants,
                                          questions=SQUAD / "qa.jsonl")
        if mode != "quick":
            big = ingest_bench.replicated_corpus(src, tmp / "big", 2000)
            out["large"] = ingest_bench.bench(big, tmp / "work-big", no_dedup=True, log=log,
                                              variants=ingest_bench.LARGE_VARIANTS)
    return out


def run_store(mode: str, log) -> dict:
    path = RESULTS / "store.json"
    if path.exists():
        data = json.loads(path.read_text())
        data["_source"] = f"{path.relative_to(ROOT)} (bench/store_bench.py, written {time.ctime(path.stat().st_mtime)})"
        return data
    log("  store: no bench/results/store.json; running bench/store_bench.py --quick")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "store.json"
        subprocess.run([sys.executable, str(ROOT / "bench" / "store_bench.py"), "--quick", "--out", str(out)],
                       cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        data = json.loads(out.read_text())
    data["_source"] = "bench/store_bench.py --quick (this run)"
    return data


def run_retrieval(mode: str, log) -> dict:
    from bench import retrieval_bench as rb

    quick = mode == "quick"
    res = rb.bench(quick, "full" if mode == "full" else "first1000", log=log)
    # What each embedder runtime costs in quality (the gates of docs/embedders.md): the SciFact
    # subset and SQuAD sample re-embedded per runtime (all of SciFact and SQuAD with --full).
    res["runtimes"] = rb.runtimes_quality(mode != "full", log=log)
    return res


def run_sec(mode: str, log) -> dict:
    from bench import sec_bench

    res = sec_bench.bench(distractors=mode != "quick", ablation=mode == "full", log=log)
    (RESULTS / "sec.md").write_text(sec_bench.render(res), encoding="utf-8")
    (RESULTS / "sec.json").write_text(json.dumps(res, indent=1, default=list), encoding="utf-8")
    for t in res["targets"]:
        log(f"  {'MET' if t['met'] else 'MISSED'}: [{t['set']}] {t['target']}: {t['figure']}")
    return res


def run_generation(mode: str, log) -> dict:
    from bench import generation_bench

    return generation_bench.bench(64 if mode == "quick" else 128, 2 if mode == "quick" else 3, log=log)


def run_embedder(mode: str, log) -> dict:
    from bench import embedder_bench

    return embedder_bench.bench(64 if mode == "quick" else 256, 2 if mode == "quick" else 3, log=log)


def run_finetune(mode: str, log) -> dict:
    # Every core: the load average here is this benchmark's own earlier sections, which would make
    # finetune's automatic thread choice (idle cores only) pick one thread.
    cmd = [sys.executable, str(ROOT / "bench" / "finetune_bench.py"), "--json", "--threads", str(os.cpu_count() or 1)]
    cmd += ["--full"] if mode == "full" else ["--steps", "6" if mode == "quick" else "20"]
    log(f"  finetune: {' '.join(cmd[1:])}")
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if r.returncode != 0:
        raise RuntimeError(f"finetune_bench failed: {r.stderr[-1500:]}")
    return json.loads([ln for ln in r.stdout.splitlines() if ln.startswith("{")][-1])


def _write(out: Path, results: dict, render) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(results), encoding="utf-8")
    out.with_suffix(".json").write_text(json.dumps(results, indent=1, default=str), encoding="utf-8")


def _previous(out: Path, mode: str, rerun: list[str]) -> dict | None:
    """The existing report's results minus the sections about to be re-run (None if it is another mode)."""
    path = out.with_suffix(".json")
    if not path.exists():
        return None
    old = json.loads(path.read_text(encoding="utf-8"))
    if old.get("mode") != mode:
        print(f"--update: {path} holds a {old.get('mode')} run, not {mode}; starting a new report", file=sys.stderr)
        return None
    for key in ("sections", "errors", "seconds"):
        old.setdefault(key, {})
        for name in [*rerun, "total"]:
            old[key].pop(name, None)
    old.setdefault("updated", []).append({"sections": rerun, "at": time.ctime(), "load_avg": os.getloadavg()})
    return old


RUNNERS = {"ingest": run_ingest, "embedder": run_embedder, "store": run_store, "retrieval": run_retrieval,
           "generation": run_generation, "finetune": run_finetune, "sec": run_sec}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    only = [s.strip() for s in args.only.split(",")] if args.only else list(SECTIONS)
    unknown = [s for s in only if s not in SECTIONS]
    if unknown:
        print(f"error: unknown section(s) {', '.join(unknown)} (known: {', '.join(SECTIONS)})", file=sys.stderr)
        return 2
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.path.insert(0, str(ROOT))
    from bench.report import render, table

    mode = "quick" if args.quick else "full" if args.full else "standard"

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    results: dict = {"mode": mode, "machine": machine(), "sections": {}, "errors": {}, "seconds": {}}
    if args.update:
        results = _previous(args.out, mode, only) or results
    for name in only:
        log(f"[{name}]")
        t0 = time.perf_counter()
        try:
            kwargs = {"corpus": args.corpus} if name == "ingest" else {}
            results["sections"][name] = RUNNERS[name](mode, log=log, **kwargs)
        except Exception as e:  # noqa: BLE001 - one failing section must not hide the others
            results["errors"][name] = f"{e.__class__.__name__}: {e}"
            log(f"  FAILED: {results['errors'][name]}")
        results["seconds"][name] = time.perf_counter() - t0
        _write(args.out, results, render)  # after every section: a long run interrupted keeps what it measured
    results["seconds"]["total"] = sum(v for k, v in results["seconds"].items() if k != "total")
    _write(args.out, results, render)
    if args.json:
        print(json.dumps(results, default=str))
    else:
        print(table(results))
        print(f"\nwrote {args.out}")
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
