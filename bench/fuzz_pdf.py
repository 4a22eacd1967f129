"""Fuzz the PDF loader with mutations of real PDFs, for a bounded time.

    python bench/fuzz_pdf.py --seconds 120                 # what was run for docs/reliability.md
    python bench/fuzz_pdf.py --seconds 600 --seed 3 --max-seed-kb 200
    python bench/fuzz_pdf.py --engine atheris --seconds 300          # coverage-guided (pip install atheris)

Seeds are the small PDFs of ../shared/data/pdfs and data/sample plus the hand-written hostile
ones of tests/reliability/hostile.py. Each input is a seeded random mutation (bit flips,
"interesting" numbers, PDF tokens such as ``<<`` / ``R`` / ``/Length 99999999`` inserted, byte
ranges deleted, duplicated or spliced from another seed, truncation) parsed by the real
pipeline's parser (``ingest.pipeline._Parser``: ``_parse`` in a worker process with a timeout),
with OCR off. ``--engine atheris`` runs coverage-guided libFuzzer (``pip install atheris``) over
``ingest.loaders.pdf.load_pdf`` in-process instead (a crash there ends the fuzzer, not just a
worker, so the default engine is the one that keeps going).

A finding is an input that
- kills the worker (``crash``: PDFium segfault, abort, out-of-memory kill),
- hangs past ``--timeout`` (``hang``),
- raises an exception the loader does not turn into a one-line reason (``unhandled``: the
  pipeline still fails just that file, as "parser error: ..."), or
- yields a reason that is not one line (``badreason``).
Findings are saved to tests/reliability/corpus/KIND-SHA12.pdf (atheris: atheris-KIND-SHA1), and
tests/reliability/test_fuzz_corpus.py replays every file there on each test run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
CORPUS = ROOT / "tests" / "reliability" / "corpus"
SHARED = ROOT.parent / "shared" / "data" / "pdfs"

TOKENS = [b"<<", b">>", b"[", b"]", b"(", b")", b"obj", b"endobj", b"stream\n", b"\nendstream", b" 0 R", b"R",
          b"/Length 99999999", b"/Length -1", b"/Count 2147483647", b"/Kids [1 0 R]", b"/Parent 2 0 R",
          b"/Filter /FlateDecode", b"/Filter [/FlateDecode /LZWDecode /ASCII85Decode]", b"/Type /Pages",
          b"xref", b"trailer", b"startxref", b"%%EOF", b"/Encrypt 1 0 R", b"\x00", b"\xff" * 4, b"999999999",
          b"-2147483649", b"1e308", b"/W [1 2 1]", b"/Prev 0", b"/ObjStm", b"/N 1000000"]
INTERESTING = [b"0", b"-1", b"1", b"65535", b"2147483647", b"4294967296", b"99999999999999999999"]


def seeds(max_kb: int) -> list[tuple[str, bytes]]:
    from tests.reliability import hostile

    out = []
    for folder in (SHARED, ROOT / "data" / "sample"):
        if folder.is_dir():
            for p in sorted(folder.rglob("*.pdf")):
                if 0 < p.stat().st_size <= max_kb * 1024:
                    out.append((p.name, p.read_bytes()))
    out += [("cyclic", hostile.cyclic_pages_pdf()), ("self_parent", hostile.self_parent_pdf()),
            ("nested", hostile.nested_arrays_pdf(300)), ("refloop", hostile.reference_loop_pdf()),
            ("badpage", hostile.damaged_page_pdf())]
    return out


def mutate(data: bytes, pool: list[tuple[str, bytes]], rng: random.Random) -> bytes:
    b = bytearray(data)
    for _ in range(rng.choice([1, 1, 2, 3, 5, 8])):
        if not b:
            b = bytearray(b"%PDF-1.7\n")
        op = rng.randrange(8)
        i = rng.randrange(len(b))
        if op == 0:                                   # flip bits
            for _ in range(rng.randint(1, 16)):
                j = rng.randrange(len(b))
                b[j] ^= 1 << rng.randrange(8)
        elif op == 1:                                 # an interesting number over a digit run
            j = i
            while j < len(b) and 48 <= b[j] <= 57:
                j += 1
            b[i:max(j, i + 1)] = rng.choice(INTERESTING)
        elif op == 2:                                 # insert a PDF token
            b[i:i] = rng.choice(TOKENS)
        elif op == 3:                                 # delete a range
            del b[i:i + rng.randint(1, 512)]
        elif op == 4:                                 # duplicate a range
            n = rng.randint(1, 2048)
            b[i:i] = b[i:i + n] * rng.randint(1, 4)
        elif op == 5:                                 # splice from another seed
            other = rng.choice(pool)[1]
            if other:
                k = rng.randrange(len(other))
                b[i:i + rng.randint(0, 1024)] = other[k:k + rng.randint(1, 4096)]
        elif op == 6:                                 # truncate
            del b[rng.randint(9, max(9, len(b))):]
        else:                                         # random bytes
            b[i:i + rng.randint(1, 64)] = rng.randbytes(rng.randint(1, 64))
    return bytes(b)


def classify(status: str, payload) -> str:
    if status == "ok":
        return "ok"
    reason = str(payload)
    if "\n" in reason or not reason.strip() or len(reason) > 500:
        return "badreason"
    if reason.startswith("the parser crashed"):
        return "crash"
    if reason.startswith("parsing took over"):
        return "hang"
    if reason.startswith("parser error"):
        return "unhandled"
    return "failed"


def run(seconds: float, seed: int, timeout: float, max_kb: int, batch: int = 16, save: bool = True,
        log=print, max_inputs: int | None = None) -> dict:
    from ingest.pipeline import _Parser
    from rag.settings import IngestSettings

    rng = random.Random(seed)
    pool = seeds(max_kb)
    settings = IngestSettings(ocr="off", max_pages=50, file_timeout_s=timeout, workers=1)
    counts: Counter[str] = Counter()
    findings: dict[str, str] = {}
    reasons: Counter[str] = Counter()
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ragtune-fuzz-") as tmp:
        while time.monotonic() - t0 < seconds and (max_inputs is None or sum(counts.values()) < max_inputs):
            paths = {}
            for n in range(batch):
                _, data = rng.choice(pool)
                blob = mutate(data, pool, rng)
                path = Path(tmp) / f"in{n:03d}.pdf"
                path.write_bytes(blob)
                paths[str(path)] = blob
            for path, (status, payload) in _Parser(settings).run(list(paths)):
                kind = classify(status, payload)
                counts[kind] += 1
                if kind == "failed":
                    reasons[str(payload).split(":")[0][:60]] += 1
                if kind not in ("ok", "failed"):
                    digest = hashlib.sha256(paths[path]).hexdigest()[:12]
                    findings[f"{kind}-{digest}.pdf"] = str(payload)[:300]
                    if save:
                        CORPUS.mkdir(parents=True, exist_ok=True)
                        (CORPUS / f"{kind}-{digest}.pdf").write_bytes(paths[path])
                    log(f"finding: {kind}: {str(payload)[:200]}")
    elapsed = time.monotonic() - t0
    total = sum(counts.values())
    return {"inputs": total, "seconds": round(elapsed, 1), "per_second": round(total / max(elapsed, 1e-9), 1),
            "seeds": len(pool), "outcomes": dict(counts), "top_failure_reasons": dict(reasons.most_common(8)),
            "findings": findings}


def run_atheris(seconds: float, seed: int, timeout: float, max_kb: int) -> int:
    """Coverage-guided fuzzing with atheris (libFuzzer) over ``load_pdf`` in this process.

    pypdf, pdfplumber/pdfminer and ``ingest.loaders`` are instrumented (PDFium is C and is not).
    An input that raises anything but ``LoadError``, crashes, or runs past ``timeout`` is written
    to tests/reliability/corpus/atheris-{crash,timeout,oom}-SHA1 by libFuzzer, and the run stops.
    """
    import atheris

    with atheris.instrument_imports(include=["pypdf", "pdfminer", "pdfplumber", "ingest"]):
        import pdfminer  # noqa: F401
        import pypdf  # noqa: F401

        from ingest.loaders import LoadError
        from ingest.loaders.pdf import load_pdf
    from rag.settings import IngestSettings

    settings = IngestSettings(ocr="off", max_pages=50)
    work = Path(tempfile.mkdtemp(prefix="ragtune-atheris-"))
    seed_dir = work / "seeds"
    seed_dir.mkdir()
    for i, (_, data) in enumerate(seeds(max_kb)):
        (seed_dir / f"seed{i:03d}.pdf").write_bytes(data)
    target = work / "input.pdf"
    CORPUS.mkdir(parents=True, exist_ok=True)

    def one_input(data: bytes) -> None:
        target.write_bytes(data)
        try:
            load_pdf(target, settings)
        except LoadError:
            pass

    import atexit
    import shutil

    atexit.register(shutil.rmtree, work, True)
    atheris.Setup([sys.argv[0], f"-max_total_time={int(seconds)}", f"-timeout={int(timeout)}", f"-seed={seed + 1}",
                   f"-max_len={max_kb * 1024}", "-rss_limit_mb=4096", f"-artifact_prefix={CORPUS}/atheris-",
                   "-print_final_stats=1", str(seed_dir)], one_input)
    atheris.Fuzz()  # exits the process when the time is up or on the first finding
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=60, help="time budget (default 60)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=20, help="per-input parse timeout in seconds (default 20)")
    p.add_argument("--max-seed-kb", type=int, default=120, help="seed PDFs up to this size (default 120)")
    p.add_argument("--inputs", type=int, help="stop after this many inputs (default: only the time limit)")
    p.add_argument("--no-save", action="store_true", help="do not write findings to tests/reliability/corpus/")
    p.add_argument("--engine", choices=["mutate", "atheris"], default="mutate",
                   help="mutate: seeded mutations through the pipeline's parser worker (default); atheris: "
                        "coverage-guided libFuzzer in-process (pip install atheris), stops at the first finding")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.engine == "atheris":
        return run_atheris(args.seconds, args.seed, args.timeout, args.max_seed_kb)
    log = (lambda m: print(m, file=sys.stderr, flush=True)) if args.json else (lambda m: print(m, flush=True))
    out = run(args.seconds, args.seed, args.timeout, args.max_seed_kb, save=not args.no_save, log=log,
              max_inputs=args.inputs)
    if args.json:
        print(json.dumps(out))
    else:
        print(f"{out['inputs']} mutated PDFs from {out['seeds']} seeds in {out['seconds']} s "
              f"({out['per_second']}/s): {out['outcomes']}")
        print(f"most common failure reasons: {out['top_failure_reasons']}")
        print(f"{len(out['findings'])} findings" + (" saved to tests/reliability/corpus/" if out["findings"]
                                                    and not args.no_save else ""))
    return 1 if out["findings"] else 0


if __name__ == "__main__":
    sys.exit(main())
