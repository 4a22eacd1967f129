import pytest

from rag.errors import ConfigError
from rag.settings import load_settings, save_setting


def test_layers_in_order(tmp_path):
    cfg = tmp_path / "ragtune.toml"
    cfg.write_text('store = "from-file"\n[retrieval]\nk = 3\nmode = "bm25"\n')
    s = load_settings(cfg, env={"RAGTUNE_RETRIEVAL__K": "7"}, overrides={"retrieval.mode": "dense", "store": None})
    assert s.store == "from-file"          # file beats defaults, absent flag changes nothing
    assert s.retrieval.k == 7              # env beats file
    assert s.retrieval.mode == "dense"     # flags beat env


def test_defaults_and_store_uri():
    s = load_settings(env={})
    assert s.retrieval.mode == "hybrid" and s.server.host == "127.0.0.1"
    assert s.store_uri.endswith("index")


def test_all_errors_reported_together(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_settings(env={"RAGTUNE_RETRIEVAL__K": "zero", "RAGTUNE_LLM__TEMPERATURE": "-1"})
    msg = str(e.value)
    assert "retrieval.k" in msg and "llm.temperature" in msg and "environment" in msg


def test_unknown_field_named(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[retrieval]\nkk = 3\n")
    with pytest.raises(ConfigError, match="retrieval.kk"):
        load_settings(cfg, env={})


def test_save_setting_keeps_others(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('store = "x"\n')
    save_setting(cfg, "retrieval.mode", "bm25")
    s = load_settings(cfg, env={})
    assert s.store == "x" and s.retrieval.mode == "bm25"


def test_script_variables_with_our_prefix_are_not_settings():
    """RAGTUNE_PG_PORT (scripts/pg.sh) or RAGTUNE_TEST_* beside a command must not break it."""
    from rag.settings import load_settings

    s = load_settings(env={"RAGTUNE_PG_PORT": "5555", "RAGTUNE_PG_DIR": "/tmp/x", "RAGTUNE_TEST_PG": "pgvector://x",
                           "RAGTUNE_DEBUG": "1", "RAGTUNE_RETRIEVAL__K": "7"})
    assert s.retrieval.k == 7


def test_a_mistyped_variable_is_named_in_the_error():
    import pytest

    from rag.errors import ConfigError
    from rag.settings import load_settings

    with pytest.raises(ConfigError, match=r"retrieval\.kk: .*environment variable RAGTUNE_RETRIEVAL__KK"):
        load_settings(env={"RAGTUNE_RETRIEVAL__KK": "7"})
