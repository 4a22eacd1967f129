import json
from pathlib import Path

import pytest

from finetune.config import LLAMA_TARGET_MODULES, QLoRAConfig, config_help, load_config, parse_overrides
from rag.errors import ConfigError

CONFIGS = Path(__file__).resolve().parents[3] / "finetune" / "configs"


def test_defaults_target_every_llama_projection():
    cfg = QLoRAConfig()
    assert cfg.target_modules == LLAMA_TARGET_MODULES
    assert cfg.load_in_4bit and cfg.compute_dtype == "bfloat16" and cfg.optimizer == "auto"


def test_yaml_then_flags_then_overrides(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("lr: 1.0e-3\nrank: 4\npacking: false\ntarget_modules: [q_proj, v_proj]\n")
    cfg = load_config(recipe, {"rank": 8, "lr": None}, ["rank=12", "packing=true", "eval_split=0"])
    assert cfg.lr == 1e-3            # YAML (flag was not given)
    assert cfg.rank == 12            # key=value beats the flag
    assert cfg.packing is True
    assert cfg.target_modules == ["q_proj", "v_proj"]
    assert load_config(None, None, ["target_modules=q_proj,k_proj"]).target_modules == ["q_proj", "k_proj"]


def test_all_errors_reported_together():
    with pytest.raises(ConfigError) as e:
        load_config(None, None, ["lrr=1", "rank=x", "dropout=2", "batch_size=0", "report_to=tensorboard"])
    msg = str(e.value)
    for part in ("lrr: unknown key", "did you mean 'lr'", "rank: expected an integer", "dropout:", "batch_size:",
                 "report_to:"):
        assert part in msg


def test_post_init_checks_and_runnable():
    with pytest.raises(ConfigError, match="save_every"):
        QLoRAConfig(eval_every=10, save_every=15)
    with pytest.raises(ConfigError, match="either data or from_store"):
        QLoRAConfig(data="a.jsonl", from_store="idx")
    with pytest.raises(ConfigError) as e:
        QLoRAConfig().check_runnable()
    assert "--data" in str(e.value) and "--output" in str(e.value)


def test_bad_override_syntax():
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_overrides(["lr"])


@pytest.mark.parametrize("recipe", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_recipes_are_valid_and_say_how_to_run(recipe):
    first = recipe.read_text().splitlines()[:3]
    assert any("python -m finetune.qlora" in line and line.startswith("#") for line in first)
    cfg = load_config(recipe, {"data": "x.jsonl", "output": "out"})
    cfg.check_runnable()


def test_deepspeed_config_is_json():
    ds = json.loads((CONFIGS / "ds_zero2.json").read_text())
    assert ds["zero_optimization"]["stage"] == 2


def test_help_lists_every_field():
    text = config_help()
    for name in QLoRAConfig.__dataclass_fields__:
        assert f"  {name} (default" in text
