"""Loop parameters: typed sections through finetune.config's parser, every problem at once, stable hashes."""

from __future__ import annotations

from pathlib import Path

import pytest

from loop.params import STAGES, LoopParams, load_params, overrides_tree
from loop.workdir import fingerprints
from rag.errors import ConfigError

ROOT = Path(__file__).resolve().parents[3]


def test_precedence_and_types(tmp_path):
    params_file = tmp_path / "p.yaml"
    params_file.write_text("docs: from-file\nout: o\nretrieval: {k: 5}\nfinetune: {rank: 8}\nsplit: {val: 0.2}\n")
    p = load_params(params_file, ["retrieval.k=2", "split.test_docs=a.pdf, b.pdf", "finetune.lr=1e-4",
                                  "eval.dataset=null", "mlflow.enabled=false"], docs="from-flag")
    assert isinstance(p, LoopParams)
    assert p.docs == "from-flag" and p.out == "o"                  # flag over file
    assert p.retrieval.k == 2 and p.split.val == 0.2              # override over file over default
    assert p.split.test_docs == ["a.pdf", "b.pdf"] and p.eval.dataset is None and p.mlflow.enabled is False
    # the finetune section keeps its defaults and takes any QLoRA key, typed like QLoRAConfig's field
    assert p.finetune == {"base": "smollm2", "max_steps": 100, "max_seq_len": 1024, "batch_size": 1,
                          "eval_every": 25, "lr": 1e-4, "rank": 8, "threads": 0}


def test_every_problem_is_reported_together(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_params(None, ["splt.val=0.1", "retrieval.k=0", "eval.limit=many", "finetune.lrr=1",
                           "finetune.rank=0", "split.test=1.5", "ingest=3", "teacher.style=essay"])
    msg = str(e.value)
    for part in ("docs: give DOCS", "splt: unknown key (from overrides); did you mean 'split'?",
                 "retrieval.k: must be an integer >= 1", "eval.limit: expected an integer (got 'many'",
                 "finetune.lrr: unknown key (from overrides); did you mean 'finetune.lr'?",
                 "finetune.rank: must be >= 1", "split.test: must be in [0, 1)", "ingest: expected a mapping",
                 "teacher.style: must be sentence or phrase (got 'essay')"):
        assert part in msg, part
    with pytest.raises(ConfigError, match="params file not found"):
        load_params(tmp_path / "missing.yaml", docs="d", out="o")


def test_overrides_tree():
    assert overrides_tree(["finetune.lr=1e-4", "docs=x", "split.test_docs=a,b"]) == {
        "finetune": {"lr": "1e-4"}, "docs": "x", "split": {"test_docs": "a,b"}}
    with pytest.raises(ConfigError, match="expected key=value"):
        overrides_tree(["finetune.lr"])


def test_shipped_params_file_loads_and_names_the_command():
    p = load_params(ROOT / "params.yaml")
    assert p.docs and p.out and p.finetune["base"] == "smollm2"
    assert "python -m loop" in (ROOT / "params.yaml").read_text().splitlines()[1]


def test_fingerprints_are_those_of_finetune_loop(tmp_path):
    """The hashes the earlier finetune/loop.py wrote into .stages/: runs it started still resume."""
    doc = tmp_path / "a.txt"
    doc.write_text("The Acme Widget is blue.\n")
    overrides = ["finetune.max_steps=2", "split.test_docs=a.txt", "finetune.lr=0.0001", "eval.limit=4",
                 "mlflow.enabled=false"]
    assert fingerprints(load_params(None, [], docs=str(doc), out="x")) == {
        "ingest": "82606834046af9d8a8a71ad5016459d401fdef032a53db86c1c4b0ec992a524b",
        "synthesise": "978a9c65cc8fc39aa26d2761d36785f2e9f564aff1f0039e9c8b0e685a940fec",
        "split": "f20362d642622276850728c22066978498ee1056b35ead0cdf23592267929a4b",
        "finetune": "8c6b81eeb7c58a4fa0848878334146674dfa336342a04b8fb93525cc5fea6e84",
        "eval": "d9679019ad75f2361c75a4b5fc6dbd3babc50d8e98d7eb2d13b429293cbd319f",
    }
    fps = fingerprints(load_params(None, overrides, docs=str(doc), out="x"))
    assert list(fps) == list(STAGES)
    assert fps["eval"] == "da38099009c54eff8b416b08d7ead86912a5da09dc6cf10091c827816e3b8936"
