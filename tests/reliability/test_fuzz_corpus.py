"""Replays the fuzzer's findings (tests/reliability/corpus/, written by bench/fuzz_pdf.py) and a
short seeded fuzz run through the real parser worker: every input ends as parsed or failed with a
one-line reason the loader chose; no worker crash, no hang, no unhandled exception.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.fuzz_pdf import classify
from ingest.pipeline import _Parser
from rag.settings import IngestSettings

CORPUS = Path(__file__).resolve().parent / "corpus"
FOUND = sorted(p for p in CORPUS.iterdir() if p.name != "README.md")  # KIND-SHA12.pdf, atheris-KIND-SHA1


@pytest.mark.skipif(not FOUND, reason="no fuzz findings saved in tests/reliability/corpus/")
def test_saved_findings_are_handled(tmp_path):
    copies = []
    for p in FOUND:  # the loader is chosen by extension; atheris names its artifacts without one
        copies.append(tmp_path / (p.stem + ".pdf"))
        copies[-1].write_bytes(p.read_bytes())
    settings = IngestSettings(ocr="off", max_pages=50, file_timeout_s=30, workers=1)
    outcomes = {Path(p).name: classify(*result) for p, result in _Parser(settings).run([str(p) for p in copies])}
    assert len(outcomes) == len(FOUND)
    assert {n: k for n, k in outcomes.items() if k not in ("ok", "failed")} == {}


def test_short_seeded_fuzz_run_finds_nothing():
    from bench.fuzz_pdf import run

    out = run(seconds=120, seed=0, timeout=30, max_kb=60, batch=16, save=False, log=lambda m: None, max_inputs=32)
    assert out["inputs"] >= 32 and out["findings"] == {}, out["findings"]
