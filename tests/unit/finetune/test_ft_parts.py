import json
from types import SimpleNamespace

import pytest

from finetune.data import PackedCollator
from rag.errors import ModelNotFoundError


def test_progress_counts_step_tokens_not_eval_tokens():
    from finetune.callbacks import ProgressBar

    coll = PackedCollator(0)
    bar = ProgressBar(coll)
    state = SimpleNamespace(max_steps=3, global_step=0)
    bar.on_train_begin(None, state, None)
    for step, (micro, eval_tokens) in enumerate([([10, 20], 0), ([5, 5], 100), ([7, 3], 0)], start=1):
        for n in micro:                       # grad_accum=2: both micro-batches collated before the step
            coll([{"input_ids": [1] * n, "labels": [1] * n}])
        bar.on_step_begin(None, state, None)
        state.global_step = step
        bar.on_step_end(None, state, None)
        if eval_tokens:
            coll([{"input_ids": [1] * eval_tokens, "labels": [1] * eval_tokens}])
            bar.on_evaluate(None, state, None)
    bar.on_train_end(None, state, None)
    assert bar.step_tokens == 20  # steps 2 and 3 (the first is warm-up), never the eval batch
    assert bar.steps == 2 and bar.tokens_per_s > 0


def test_cpu_threads():
    from finetune.modeling import cpu_threads

    assert cpu_threads(3) == 3
    assert cpu_threads(0) >= 1


def test_resolve_base(tmp_path):
    from finetune.modeling import resolve_base

    assert resolve_base(f"hf:{tmp_path}", tmp_path) == str(tmp_path)
    assert resolve_base("hf:org/model", tmp_path) == "org/model"
    with pytest.raises(ModelNotFoundError):
        resolve_base("./no/such/folder", tmp_path)


def test_adapters_lists_folders(tmp_path, capsys):
    from finetune.adapters import main

    d = tmp_path / ".ragtune" / "adapters" / "a1"
    d.mkdir(parents=True)
    (d / "ragtune_adapter.json").write_text(json.dumps({
        "base_model": "smollm2", "created": "2026-01-01T00:00:00+00:00", "load_in_4bit": True,
        "data": {"hash": "sha256:abc"}, "metrics": {"best_eval_loss": 1.5}, "mlflow": None}))
    assert main(["--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["adapters"]
    assert rows == [{"path": str(d.resolve()), "base": "smollm2", "data_hash": "sha256:abc", "load_in_4bit": True,
                     "best_eval_loss": 1.5, "final_eval_loss": None, "train_loss": None,
                     "created": "2026-01-01T00:00:00+00:00", "registered": None}]
    assert main([]) == 0 and "smollm2" in capsys.readouterr().out


def test_qlora_help_lists_contract_flags(capsys):
    from finetune import qlora

    with pytest.raises(SystemExit):
        qlora.main(["--help"])
    text = capsys.readouterr().out
    for flag in ("--base", "--data", "--from-store", "--output", "--max-steps", "--epochs", "--lr", "--rank",
                 "--resume", "--config", "key=value"):
        assert flag in text
