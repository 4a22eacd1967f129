"""The closed loop (python -m loop) end to end on data/sample in a reduced setting: every stage, resume, MLflow champion, dvc.

Reduced: small chunks, k=2, 2 training steps at max_seq_len 384, 4 test questions, 8 answer tokens.
About 2-3 minutes per full run on a busy 2-core CPU.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from loop.workdir import read_rows

ROOT = Path(__file__).resolve().parents[2]
REDUCED = ["ingest.chunk_size=400", "ingest.chunk_overlap=50", "retrieval.k=2", "finetune.max_steps=2",
           "finetune.max_seq_len=384", "finetune.eval_every=1", "finetune.rank=4", "finetune.threads=1",
           "split.max_val=4", "eval.limit=4", "eval.max_new_tokens=8", "eval.threads=1", "eval.bootstrap=200",
           "mlflow.registered_model=loop-test-adapter"]
STAGE_OUTPUTS = {
    "ingest": ["index", "ingest.json"],
    "synthesise": ["qa.jsonl", "synth_report.json"],
    "split": ["split/train.jsonl", "split/val.jsonl", "split/test.jsonl", "split/split.json"],
    "finetune": ["finetune/train.jsonl", "adapter/adapter_model.safetensors", "adapter/adapter_config.json",
                 "adapter/ragtune_adapter.json"],
    "eval": ["metrics.json", "eval_rows.jsonl", "registry.json"],
}


def _main(argv):
    from loop.__main__ import main

    return main([str(a) for a in argv])


def _check_outputs(out: Path) -> dict:
    for stage, files in STAGE_OUTPUTS.items():
        for f in files:
            assert (out / f).exists(), f"{stage}: {f} missing"
        assert json.loads((out / ".stages" / f"{stage}.json").read_text())["hash"]
    report = json.loads((out / "synth_report.json").read_text())
    assert report["generator"] == "extractive" and report["kept"] > 0
    assert report["kept"] + sum(report["dropped"].values()) >= report["candidates"]
    split = json.loads((out / "split" / "split.json").read_text())
    train, val, test = (set(split[n]["documents"]) for n in ("train", "val", "test"))
    assert train and test and not (train & test) and not (val & test) and not (train & val)
    for row in read_rows(out / "split" / "test.jsonl"):
        assert row["source"] in test
    m = json.loads((out / "metrics.json").read_text())
    for key in ("n", "k", "generator", "base", "adapter", "gain", "retrieval", "specs", "synth", "leaked_questions"):
        assert key in m, key
    assert m["n"] == 4 and m["leaked_questions"] == 0
    for side in ("base", "adapter", "gain"):
        for metric in ("em", "f1"):
            s = m[side][metric]
            assert s["ci_low"] <= s["mean"] <= s["ci_high"]
    assert 0 <= m["retrieval"]["hit@5"]["mean"] <= 1
    return m


@pytest.mark.slow
def test_loop_end_to_end_resume_and_champion(sample_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert _main([sample_dir, "--out", out, *REDUCED]) == 0
    printed = capsys.readouterr().out
    assert "ingest:ran synthesise:ran split:ran finetune:ran eval:ran" in printed
    assert "F1 gain" in printed and "generator extractive" in printed
    _check_outputs(out)

    # resume: every stage is finished with the same inputs and parameters
    assert _main([sample_dir, "--out", out, *REDUCED]) == 0
    assert "ingest:skipped synthesise:skipped split:skipped finetune:skipped eval:skipped" in capsys.readouterr().out

    # MLflow: nested runs under one parent, the adapter registered with its metrics, alias champion
    from mlflow import MlflowClient

    registry = json.loads((out / "registry.json").read_text())
    assert registry["registered"] and registry["champion"] == registry["version"] and registry["promoted"]
    uri = f"sqlite:///{(tmp_path / '.ragtune' / 'mlflow.db').resolve()}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    mv = client.get_model_version_by_alias("loop-test-adapter", "champion")
    assert str(mv.version) == registry["version"]
    assert "eval_adapter_f1" in mv.tags and "eval_base_f1" in mv.tags
    parent = registry["parent_run_id"]
    exp = client.get_experiment_by_name("ragtune-loop")
    assert exp.artifact_location.startswith((tmp_path / ".ragtune").resolve().as_uri())
    children = client.search_runs([exp.experiment_id], f"tags.mlflow.parentRunId = '{parent}'")
    names = {r.info.run_name for r in children}
    assert {"ingest", "synthesise", "split", "eval"} <= names and any("finetune" in n for n in names)
    assert "adapter_f1" in client.get_run(parent).data.metrics
    assert not (tmp_path / "mlruns").exists()

    # the champion loads by alias from the registry into the chain
    from rag import RAG

    with RAG(store=str(out / "index"), llm="hf:smollm2+adapter:models:/loop-test-adapter@champion",
             llm__max_new_tokens=8, llm__threads=1) as rag:
        answer = rag.ask("What is the Acme Widget?", k=2)
        assert isinstance(answer.text, str)
        assert rag.llm.adapter_path is not None and (rag.llm.adapter_path / "adapter_config.json").exists()


def test_fingerprints_rerun_the_changed_stage_and_later(sample_dir):
    from loop.params import STAGES, load_params
    from loop.workdir import fingerprints

    base = fingerprints(load_params(None, REDUCED, docs=str(sample_dir), out="x"))
    for override, first in [("eval.limit=3", "eval"), ("finetune.lr=1e-4", "finetune"),
                            ("retrieval.k=3", "finetune"), ("split.seed=1", "split"),
                            ("synthesise.generator=openai:x", "synthesise")]:
        changed = fingerprints(load_params(None, [*REDUCED, override], docs=str(sample_dir), out="x"))
        i = STAGES.index(first)
        assert all(changed[s] == base[s] for s in STAGES[:i]), override
        assert all(changed[s] != base[s] for s in STAGES[i:]), override
    (sample_dir / "new.txt").write_text("The Acme Gadget is blue.")
    assert all(a != b for a, b in zip(fingerprints(load_params(None, REDUCED, docs=str(sample_dir),
                                                               out="x")).values(), base.values()))


def test_bad_parameters_are_reported_together(capsys):
    assert _main(["--out", "x", "finetune.max_steps=2", "splt.val=0.1", "retrieval.k=0"]) == 2
    err = capsys.readouterr().err
    assert "docs:" in err and "splt: unknown key" in err and "did you mean 'split'" in err and "retrieval.k" in err


def _dvc() -> str | None:
    local = Path(sys.executable).parent / "dvc"
    return str(local) if local.exists() else shutil.which("dvc")


@pytest.mark.slow
def test_dvc_repro_runs_the_same_stages_once(sample_dir, tmp_path):
    dvc = _dvc()
    if dvc is None:
        pytest.skip("dvc is not installed (pip install 'ragtune[dvc]')")
    import yaml

    from loop.params import overrides_tree

    work = tmp_path / "proj"
    work.mkdir()
    for package in ("finetune", "loop"):  # dvc.yaml's code deps; imports resolve to the repo
        (work / package).symlink_to(ROOT / package)
    shutil.copy(ROOT / "dvc.yaml", work / "dvc.yaml")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section, values in overrides_tree(REDUCED).items():
        params[section].update(values)
    params.update(docs=str(sample_dir), out="runs/loop")
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "DVC_NO_ANALYTICS": "1", "PYTHONPATH": str(ROOT)}

    def dvc_run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([dvc, *args], check=False, cwd=work, env=env, capture_output=True, text=True, timeout=900)

    assert dvc_run("init", "--no-scm").returncode == 0
    first = dvc_run("repro")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    for stage in ("ingest", "synthesise", "split", "finetune", "eval"):
        assert f"Running stage '{stage}'" in first.stdout
    _check_outputs(work / "runs" / "loop")
    assert (work / "dvc.lock").exists()

    second = dvc_run("repro")
    assert second.returncode == 0
    assert "Running stage" not in second.stdout and "up to date" in second.stdout.lower()

    shown = dvc_run("metrics", "show", "--json")
    assert shown.returncode == 0 and "adapter" in shown.stdout


def test_synthesise_filter_with_an_llm_generator(tmp_path, monkeypatch):
    """The LLM generator path and every filter reason, without models: chunks and replies are canned."""
    from finetune import synth
    from loop.params import load_params
    from loop.stages import Context, synthesise
    from loop.workdir import Paths
    from rag.settings import Settings
    from rag.types import Chunk

    chunks = [Chunk(f"c{i}", text, f"{doc}.pdf", 1) for i, (doc, text) in enumerate([
        ("Acme_Widget", "The Acme Widget weighs 140 grams and runs for 18 months."),
        ("Acme_Widget", "Refunds are accepted within 30 days of delivery."),
        ("Tides", "Spring tides happen twice a month, near new and full moon."),
        ("Tides", "Neap tides are the weakest tides."),
        ("Tides", "Tides are driven by the Moon."),
        ("Tides", "The Moon orbits the Earth."),
    ])]
    replies = {
        "c0": {"question": "How much does it weigh?", "answer": "140 grams"},             # kept (or c1) ...
        "c1": {"question": "How much does it weigh?", "answer": "30 days"},               # ... the other a duplicate
        "c2": {"question": "When do spring tides happen?", "answer": "every Tuesday"},     # not grounded
        "c3": {"question": "What is this document about?", "answer": "Tides"},            # answer in title
        "c4": {"question": "Tides are driven by what? #", "answer": "the Moon"},          # malformed question
        "c5": "no JSON here",                                                              # no question
    }
    current = {}

    def fake_llm(prompt: str) -> str:
        reply = replies[current["id"]]
        return reply if isinstance(reply, str) else json.dumps(reply)

    class Gen(synth.LLMGenerator):
        def __call__(self, text, source=""):
            current["id"] = next(c.id for c in chunks if c.text == text)
            return super().__call__(text, source)

    monkeypatch.setattr(synth, "read_chunks", lambda uri, limit: list(chunks))
    monkeypatch.setattr(synthesise, "make_generator", lambda spec, settings: Gen(fake_llm))
    params = load_params(None, ["synthesise.generator=openai:fake"], docs=str(tmp_path), out=str(tmp_path / "o"))
    paths = Paths(params.out)
    assert synthesise.run(params, paths, Context(Settings(data_dir=tmp_path))) == {"kept": 1, "dropped": 5}
    report = json.loads(paths.synth_report.read_text())
    assert report["generator"] == "openai:fake"
    assert report["dropped"] == {"answer_in_title": 1, "duplicate_question": 1, "malformed_question": 1,
                                 "no_question": 1, "not_grounded": 1}
    (row,) = read_rows(paths.qa)
    assert row["answer"] in {"140 grams", "30 days"} and row["source"] == "Acme_Widget.pdf"  # the other: a duplicate
