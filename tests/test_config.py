import pytest

from mosaicrec.config import demo_config, load_config, parse_config
from mosaicrec.errors import ConfigError


def test_demo_config_has_six_models_and_one_seed():
    cfg = demo_config()
    assert [m.name for m in cfg.models] == ["mostpop", "itemknn", "ease", "bpr", "als", "biasedmf"]
    assert cfg.split.seed == cfg.seed
    # no model fixes its own seed, so the runner gives each run's seed to every seeded model
    assert not any("seed" in m.params for m in cfg.models)


def test_errors_name_the_file_and_key(tmp_path):
    path = tmp_path / "exp.toml"
    path.write_text('[dataset]\nname = "movielens-100k"\n[[models]]\nname = "ease"\nparams = { reg = "x" }\n')
    with pytest.raises(ConfigError, match=r"exp.toml: models.0: .*parameter 'reg'"):
        load_config(path)
    path.write_text('[dataset]\nname = "nope"\n[[models]]\nname = "ease"\n')
    with pytest.raises(ConfigError, match="unknown dataset 'nope'"):
        load_config(path)
    path.write_text('[dataset\n')
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(path)


def test_unknown_keys_are_errors_not_ignored():
    with pytest.raises(ConfigError, match="split.test_fractoin"):
        parse_config({"dataset": {"name": "movielens-100k"}, "models": [{"name": "ease"}],
                      "split": {"test_fractoin": 0.1}})
