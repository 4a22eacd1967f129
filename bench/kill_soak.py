"""Kill soak: ``kill -9`` an ingest at random points, many times; nothing may be lost or doubled.

    python bench/kill_soak.py                      # 20 trials over a small corpus, real MiniLM
    python bench/kill_soak.py --trials 50 --seed 7 --json

Each trial starts ``python -m ingest DOCS --data-dir D`` into a fresh data dir and SIGKILLs it:
a third of the kills after a random delay (uniform over a clean run's duration, so start-up,
parsing and embedding are hit), the rest once a random number of files is recorded done plus up
to 300 ms (so the kill lands among the store writes); a third of the trials kill the restarted
run a second time. Half the
trials start with the embedding cache of the clean run (then the kill lands among the store
writes more often), half cold. After the kills, one more run must exit 0, and:

- its chunk ids equal a clean ingest's, id for id (nothing missing, no duplicates, no orphans);
- every manifest row is ``done`` and its chunk count equals the store's count for that source;
- the store holds no (source, chunk_index) twice, and a FAISS search returns only stored rows.

Prints one line per trial and the totals; exit 1 when any trial failed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def make_corpus(folder: Path, n_files: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    base = (ROOT / "data" / "sample" / "acme_widget_faq.md").read_text()
    for i in range(n_files):
        (folder / f"doc{i:02d}.md").write_text(f"# Document {i}\n\n" + base.replace("Acme", f"Acme{i}"))
    for pdf in sorted((ROOT / "data" / "sample").glob("*.pdf"))[:2]:
        shutil.copy(pdf, folder / pdf.name)


def _cmd(docs: Path, data: Path) -> list[str]:
    return [sys.executable, "-m", "ingest", str(docs), "--data-dir", str(data), "--json", "--no-progress"]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAGTUNE_")}
    return {**env, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def store_ids(data: Path) -> list[str]:
    with sqlite3.connect(data / "index" / "chunks.sqlite") as con:
        return sorted(r[0] for r in con.execute("SELECT id FROM chunks"))


def manifest_state(data: Path) -> tuple[int, int]:
    """(done rows, other rows) in the manifest, (0, 0) when there is none yet."""
    db = data / "index" / "manifest.sqlite"
    if not db.exists():
        return 0, 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as con:
            done = con.execute("SELECT COUNT(*) FROM files WHERE status='done'").fetchone()[0]
            other = con.execute("SELECT COUNT(*) FROM files WHERE status!='done'").fetchone()[0]
            return done, other
    except sqlite3.Error:
        return 0, 0


def leftovers(marker: str) -> list[int]:
    """Processes whose command line mentions ``marker`` (parser workers / forkservers of a killed run)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if marker.encode() in (proc / "cmdline").read_bytes():
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


def check(data: Path, want: list[str]) -> list[str]:
    """What is wrong with a data dir after the completing run (empty = nothing)."""
    problems = []
    ids = store_ids(data)
    if ids != want:
        missing, extra = set(want) - set(ids), set(ids) - set(want)
        problems.append(f"chunk ids differ from a clean ingest: {len(missing)} missing, {len(extra)} extra, "
                        f"{len(ids) - len(set(ids))} duplicated")
    with sqlite3.connect(data / "index" / "chunks.sqlite") as con:
        per_source = dict(con.execute("SELECT source, COUNT(*) FROM chunks GROUP BY source"))
        dup = con.execute("SELECT COUNT(*) FROM (SELECT source, chunk_index FROM chunks "
                          "GROUP BY source, chunk_index HAVING COUNT(*) > 1)").fetchone()[0]
    if dup:
        problems.append(f"{dup} (source, chunk_index) pairs stored twice")
    with sqlite3.connect(data / "index" / "manifest.sqlite") as con:
        rows = con.execute("SELECT source, status, chunks FROM files").fetchall()
    not_done = [r for r in rows if r[1] != "done"]
    if not_done:
        problems.append(f"manifest rows not done: {not_done[:3]}")
    manifest = {r[0]: r[2] for r in rows if r[1] == "done"}
    if manifest != per_source:
        problems.append(f"manifest and store disagree: {sorted(set(manifest.items()) ^ set(per_source.items()))[:4]}")
    # the FAISS cache (rebuilt or caught up from SQLite) returns only stored rows
    import numpy as np

    from rag.stores.embedded import EmbeddedStore

    store = EmbeddedStore(str(data / "index"))
    try:
        rng = np.random.default_rng(0)
        for _ in range(5):
            q = rng.normal(size=384).astype(np.float32)
            hits = store.search(q / np.linalg.norm(q), 10)
            if len(hits) != min(10, len(ids)) or any(h.id not in set(ids) for h in hits):
                problems.append("a search returned a row that is not stored")
                break
    finally:
        store.close()
    return problems


def run(trials: int, seed: int, n_files: int, log=print) -> dict:
    rng = random.Random(seed)
    tmp = Path(tempfile.mkdtemp(prefix="ragtune-kill-soak-"))
    docs = tmp / "docs"
    make_corpus(docs, n_files)
    env = _env()
    clean = tmp / "clean"
    t0 = time.perf_counter()
    subprocess.run(_cmd(docs, clean), check=True, env=env, capture_output=True, timeout=900)
    cold_s = time.perf_counter() - t0
    shutil.rmtree(clean / "index")
    t0 = time.perf_counter()
    subprocess.run(_cmd(docs, clean), check=True, env=env, capture_output=True, timeout=900)
    warm_s = time.perf_counter() - t0
    want = store_ids(clean)
    log(f"corpus: {n_files + 2} files, {len(want)} chunks; clean run {cold_s:.1f} s cold, {warm_s:.1f} s warm cache")

    rows, kills = [], 0
    for t in range(trials):
        data = tmp / f"trial{t:03d}"
        warm = t % 2 == 0
        if warm:
            shutil.copytree(clean / "cache", data / "cache")
        n_kills = 2 if rng.random() < 1 / 3 else 1
        at = []
        for _ in range(n_kills):
            data.mkdir(parents=True, exist_ok=True)
            # cwd = the trial's folder, so its worker processes can be found by it (leftovers())
            proc = subprocess.Popen(_cmd(docs, data), env=env, cwd=data, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            t_start = time.monotonic()
            if rng.random() < 1 / 3:
                # anywhere in the run: start-up, parsing, embedding, writing
                how = "at random"
                deadline = t_start + rng.uniform(0.05, 1.0) * (warm_s if warm else cold_s)
                while time.monotonic() < deadline and proc.poll() is None:
                    time.sleep(0.01)
            else:
                # among the writes: once a random number of files is done, plus up to 300 ms
                target = rng.randrange(0, n_files + 2)
                how = f"after {target} done"
                while manifest_state(data)[0] < target and proc.poll() is None:
                    time.sleep(0.005)
                time.sleep(rng.uniform(0, 0.3))
            done_rows, other = manifest_state(data)
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                kills += 1
                state = f"{how}, {time.monotonic() - t_start:.1f}s: {done_rows} done, {other} pending"
            else:
                state = "finished before the kill"
            at.append(state)
        done = subprocess.run(_cmd(docs, data), env=env, cwd=data, capture_output=True, text=True, timeout=900,
                              check=False)
        problems = []
        deadline = time.monotonic() + 10
        while (left := leftovers(str(data))) and time.monotonic() < deadline:
            time.sleep(0.2)
        if left:
            problems.append(f"{len(left)} processes of killed runs still alive: {left}")
            for pid in left:
                os.kill(pid, signal.SIGKILL)
        if done.returncode != 0:
            problems.append(f"completing run exited {done.returncode}: {done.stderr[-300:]}")
        else:
            report = json.loads(done.stdout)
            if report["failed"] or report["added"] + report["updated"] + report["unchanged"] != n_files + 2:
                problems.append(f"completing run: {report}")
            problems += check(data, want)
        rows.append({"trial": t, "cache": "warm" if warm else "cold", "kills": at, "problems": problems})
        log(f"trial {t:2d} ({'warm' if warm else 'cold'}): killed at {'; '.join(at)} -> "
            f"{'OK' if not problems else 'FAIL ' + ' | '.join(problems)}")
        shutil.rmtree(data, ignore_errors=True)
    shutil.rmtree(tmp, ignore_errors=True)
    failed = [r for r in rows if r["problems"]]
    hit_writes = sum(1 for r in rows for k in r["kills"] if k.endswith("pending") and not k.endswith(" 0 pending"))
    return {"trials": trials, "kills": kills, "kills_with_a_file_pending": hit_writes, "failed_trials": len(failed),
            "chunks": len(want), "files": n_files + 2, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--files", type=int, default=10, help="Markdown files in the corpus (plus 2 sample PDFs)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    log = (lambda m: print(m, file=sys.stderr, flush=True)) if args.json else (lambda m: print(m, flush=True))
    out = run(args.trials, args.seed, args.files, log)
    if args.json:
        print(json.dumps(out))
    else:
        print(f"{out['trials']} trials, {out['kills']} kill -9s ({out['kills_with_a_file_pending']} with a file "
              f"mid-write), {out['failed_trials']} failed; every completed run = the clean ingest's "
              f"{out['chunks']} chunks from {out['files']} files")
    return 1 if out["failed_trials"] else 0


if __name__ == "__main__":
    sys.exit(main())
