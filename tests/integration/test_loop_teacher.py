"""The closed loop with a teacher (``python -m loop DOCS --teacher SPEC``) on data/sample, reduced.

The packaged SmolLM2-135M stands in for the teacher (issue 19 asks for a CI-sized stand-in; the real
teachers are the Qwen catalogue models, measured in bench/closed_loop.py). It rarely cites the right
passage, so these runs set ``teacher.attribute=true`` (an uncited answer grounded in the golden
passage is kept, as the chain credits one) and shows it one distractor (with two, 1 of the 10
training answers survived: too few to rely on); every other filter is as shipped. The documents are
ingested, synthesised and split once per module (about 30 s); each test copies that folder, and the
loop skips those finished stages.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from loop.workdir import read_rows

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "data" / "sample"
REDUCED = ["ingest.chunk_size=400", "ingest.chunk_overlap=50", "retrieval.k=2", "finetune.max_steps=2",
           "finetune.max_seq_len=384", "finetune.eval_every=1", "finetune.rank=4", "finetune.threads=1",
           "split.max_val=4", "eval.limit=4", "eval.max_new_tokens=8", "eval.threads=1", "eval.bootstrap=200",
           "mlflow.enabled=false"]
TEACHER = ["--teacher", "smollm2-135m", "teacher.attribute=true", "teacher.threads=1", "teacher.max_new_tokens=40",
           "teacher.distractors=1"]


def _main(argv) -> int:
    from loop.__main__ import main

    return main([str(a) for a in argv])


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """OUT with ingest, synthesise and split finished (no model but the embedder)."""
    from loop.params import load_params
    from loop.pipeline import run
    from rag.settings import Settings

    base = tmp_path_factory.mktemp("teach")
    shutil.copytree(SAMPLE, base / "docs")
    params = load_params(None, REDUCED, docs=str(base / "docs"), out=str(base / "run"))
    settings = Settings(data_dir=base / ".ragtune")
    for stage in ("ingest", "synthesise", "split"):
        run(params, settings, only=stage)
    return base


def _copy(prepared: Path, tmp_path: Path) -> tuple[Path, Path]:
    shutil.copytree(prepared / "run", tmp_path / "run")
    return prepared / "docs", tmp_path / "run"


def _cache_keys(out: Path) -> list[str]:
    path = out / "teacher_cache.jsonl"
    if not path.exists():
        return []
    return [json.loads(line)["key"] for line in path.read_text().splitlines(keepends=True) if line.endswith("\n")]


@pytest.mark.slow
def test_loop_with_teacher_trains_on_cited_teacher_answers(prepared, tmp_path, capsys):
    docs, out = _copy(prepared, tmp_path)
    args = [docs, "--out", out, *REDUCED, *TEACHER]
    assert _main(args) == 0
    printed = capsys.readouterr().out
    assert "ingest:skipped synthesise:skipped split:skipped teach:ran finetune:ran eval:ran" in printed
    assert "F1 gain" in printed and (out / "adapter" / "adapter_model.safetensors").exists()
    assert json.loads((out / "metrics.json").read_text())["n"] == 4

    report = json.loads((out / "teach_report.json").read_text())
    assert report["teacher"] == "smollm2-135m" and report["kept"] >= 1
    split = json.loads((out / "split" / "split.json").read_text())
    assert report["kept"] + sum(report["dropped"].values()) == report["asked"] == \
        split["train"]["questions"] + split["val"]["questions"]                    # test questions are never taught
    assert report["generated"] == report["asked"] and report["cached"] == 0
    assert report["tokens_generated"] > 0 and report["tokens_per_s"] > 0

    # the student's rows: the teacher's answer, cited where the golden passage sits in the student's prompt
    from finetune.teacher import filter_answer
    from rag.citations import parse_citations

    taught = {r["id"]: r for name in ("train", "val") for r in read_rows(out / "teach" / f"{name}.jsonl")}
    rows = read_rows(out / "finetune" / "train.jsonl")
    assert {r["meta"]["id"] for r in rows} == set(taught)
    for row in rows:
        t, n = taught[row["meta"]["id"]], row["meta"]["golden"]
        answer = row["messages"][-1]["content"]
        assert answer == f"{t['target']} [{n}]"
        assert [x for _, nums in parse_citations(answer) for x in nums] == [n]
        prompt = row["messages"][1]["content"]
        block = prompt.split(f"Passage [{n}] (from ")[1].split('"""')[1]
        assert " ".join(block.split()) == " ".join(t["passage"].split())           # [n] is the golden passage
        assert filter_answer(answer, n, t["passage"], 30).reason == ""            # cited and grounded there
    assert any(t["target"] != t["answer"] for t in taught.values())               # not the template answers

    # cache hit: the stage again generates nothing
    assert _main([docs, "--out", out, "--stage", "teach", "--force", *REDUCED, *TEACHER]) == 0
    again = json.loads((out / "teach_report.json").read_text())
    assert again["generated"] == 0 and again["cached"] == report["generated"] and again["kept"] == report["kept"]
    assert len(_cache_keys(out)) == report["generated"]

    # a student-only change keeps the teacher's outputs (the stage hash), a teacher change does not
    from loop.params import load_params
    from loop.workdir import fingerprints

    def fps(*extra):
        return fingerprints(load_params(None, [*REDUCED, "teacher.model=smollm2-135m", *extra], docs=str(docs),
                                        out=str(out)))

    assert fps("finetune.lr=1e-4", "finetune.base=qwen2.5-coder-0.5b")["teach"] == fps()["teach"]
    assert fps("teacher.distractors=3")["teach"] != fps()["teach"]
    assert "teach" not in fingerprints(load_params(None, REDUCED, docs=str(docs), out=str(out)))


@pytest.mark.slow
def test_teach_stage_resumes_after_sigkill_without_generating_twice(prepared, tmp_path):
    docs, out = _copy(prepared, tmp_path)
    args = [sys.executable, "-m", "loop", docs, "--out", out, "--stage", "teach", *REDUCED, *TEACHER]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAGTUNE_LLM__THREADS": "1"}
    proc = subprocess.Popen([str(a) for a in args], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    try:
        while not _cache_keys(out) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert proc.poll() is None, "the teach stage ended before it could be killed: " + \
            proc.stderr.read().decode()[-2000:]
        assert _cache_keys(out), "no teacher answer was cached within 300 s"
        proc.send_signal(signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=60)
        proc.stderr.close()
    before = _cache_keys(out)
    assert proc.returncode == -signal.SIGKILL and before
    assert not (out / ".stages" / "teach.json").exists()   # not marked finished

    assert _main([docs, "--out", out, "--stage", "teach", *REDUCED, *TEACHER]) == 0
    report = json.loads((out / "teach_report.json").read_text())
    after = _cache_keys(out)
    assert report["cached"] >= len(before) and report["answers"]["cached"] == len(before)
    assert report["generated"] + report["cached"] == report["asked"]
    assert len(after) == len(set(after)) == report["asked"]                # every answer generated exactly once
    assert after[: len(before)] == before
    assert (out / ".stages" / "teach.json").exists()


def test_dvc_has_the_teacher_stage_between_split_and_finetune():
    import yaml

    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert list(stages) == ["ingest", "synthesise", "split", "teach", "finetune", "eval"]
    teach = stages["teach"]
    assert teach["params"] == ["teacher"] and "--stage teach" in teach["cmd"]
    assert "${out}/split" in teach["deps"] and "${out}/teach" in stages["finetune"]["deps"]
    persisted = [o for o in teach["outs"] if isinstance(o, dict) and "${out}/teacher_cache.jsonl" in o]
    assert persisted and persisted[0]["${out}/teacher_cache.jsonl"]["persist"] is True
    assert "teacher" not in stages["finetune"]["params"]


def test_teach_without_a_teacher_writes_empty_outputs(tmp_path, capsys):
    """What dvc runs when teacher.model is null: no model, empty rows, the loop otherwise unchanged."""
    docs = tmp_path / "docs"
    shutil.copytree(SAMPLE, docs)
    assert _main([docs, "--out", tmp_path / "run", "--stage", "teach", "--json", *REDUCED]) == 0
    assert json.loads(capsys.readouterr().out)["stages"] == {"teach": "off"}
    assert json.loads((tmp_path / "run" / "teach_report.json").read_text()) == {"teacher": None}
    assert (tmp_path / "run" / "teach" / "train.jsonl").read_text() == ""


class _ScriptedTeacher:
    """A stand-in teacher with fixed behaviour (test_teacher_writes_the_questions_too): the packaged
    SmolLM2 cannot write the JSON a question needs, so this one quotes the passage instead. Question
    prompt -> "Which words follow 'A B C'?" with the next three words as the answer; answer prompt ->
    those words cited with the passage that holds them."""

    name, context_window = "fake:teacher", 4096

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def complete(self, prompt: str, **opts) -> str:
        return self.generate([{"role": "user", "content": prompt}], **opts)

    def generate(self, messages, **opts) -> str:
        import re

        text = messages[-1]["content"]
        if "Passage:\n" in text:  # finetune.synth's question prompt
            words = text.split("Passage:\n", 1)[1].split()
            for i in range(4, len(words) - 6):
                if all(w.isalpha() and len(w) > 2 for w in words[i:i + 6]):
                    return json.dumps({"question": f"Which words follow {' '.join(words[i:i + 3])}?",
                                       "answer": " ".join(words[i + 3:i + 6])})
            return "no question here"
        lead = re.search(r"Question: Which words follow (.+)\?", text)[1]
        for n, block in re.findall(r'Passage \[(\d+)\][^\n]*\n"""\n(.*?)\n"""', text, re.DOTALL):
            words = block.split()
            for i in range(len(words) - 5):
                if " ".join(words[i:i + 3]) == lead:
                    return f"{' '.join(words[i + 3:i + 6])} [{n}]"
        return "I don't know."


def test_teacher_writes_the_questions_too(prepared, tmp_path):
    from rag import llms

    docs, out = _copy(prepared, tmp_path)
    llms.register("fake", lambda rest, settings: _ScriptedTeacher())
    try:
        args = [docs, "--out", out, "--stage", "teach", "--teacher", "fake:teacher", "teacher.questions=true", *REDUCED]
        assert _main(args) == 0
    finally:
        llms.unregister("fake")
    report = json.loads((out / "teach_report.json").read_text())
    assert report["questions_by"] == "teacher" and report["kept"] >= 1
    assert report["questions"]["generated"] >= 1 and report["answers"]["generated"] == report["kept"]
    # dropped questions are counted with a question_ prefix (synthesise's reasons)
    assert all(k.startswith("question_") for k in report["dropped"])
    assert report["kept"] + sum(report["dropped"].values()) == report["asked"]
    for name in ("train", "val"):
        for row in read_rows(out / "teach" / f"{name}.jsonl"):
            assert row["question"].startswith("Which words follow") and row["template_question"] != row["question"]
            assert row["target"] == row["answer"] and row["answer"] in " ".join(row["passage"].split())
