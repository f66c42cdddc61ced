from pathlib import Path

import pytest

from recarch.config import ConfigError, parse_overrides
from recarch.run import RunConfig, load_run_config
from recarch.search import candidate_widths
from recarch.search.job import load_search_config

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_shipped_config_loads(path):
    from recarch.ctr.hardware import load_hardware
    from recarch.ctr.run import CTRRunConfig, load_ctr_config
    from recarch.ctr.search import CTRSearchConfig
    from recarch.ctr.search import load_search_config as load_ctr_search

    if path.name.startswith(("easrec-", "oneshot-")):  # presets of `recarch search`
        cfg = load_search_config([path])
        candidate_widths(cfg.model, cfg.space)  # every candidate holds whole heads
    elif path.name.startswith("elastic-"):  # `recarch search --strategy elastic`: its space checked on the recipe
        from recarch.search.elastic import ElasticSupernet

        cfg = load_search_config([path])
        assert cfg.strategy == "elastic" and ElasticSupernet(50, cfg.model, cfg.elastic).space.max_lens
    elif path.name.startswith("ctr-search"):
        assert isinstance(load_ctr_search([path]), CTRSearchConfig)
    elif path.name.startswith("ctr-"):
        assert isinstance(load_ctr_config([path]), CTRRunConfig)
    elif path.name.startswith("ihas-"):
        from recarch.ihas.job import IHASConfig, load_ihas_config

        assert isinstance(load_ihas_config([path]), IHASConfig)
    elif path.name == "pim.yaml":
        assert load_hardware(str(path)).pim.bandwidth_gbs > load_hardware(str(path)).host.bandwidth_gbs
    else:
        assert isinstance(load_run_config([path]), RunConfig)


def test_a_nested_section_keeps_its_parents_default():
    from recarch.ctr.run import load_ctr_config

    cfg = load_ctr_config(sets=["train.lr=0.01"])  # the CTR run's train section defaults differ from TrainConfig's
    assert (cfg.train.lr, cfg.train.valid_protocol, cfg.train.valid_metric) == (0.01, "ctr", "auc-logloss")


def test_files_then_overrides_apply_in_order(tmp_path):
    f = tmp_path / "a.yaml"
    f.write_text("model:\n  hidden_size: 32\n  n_heads: 4\ntrain:\n  lr: 0.01\n")
    cfg = load_run_config([f], ["train.lr=0.5", "model.attention=linear", "eval.protocols=[full]"])
    assert (cfg.model.hidden_size, cfg.model.n_heads, cfg.train.lr) == (32, 4, 0.5)
    assert cfg.model.attention == "linear" and cfg.eval.protocols == ["full"]
    assert cfg.model.inner_size == 256  # untouched default


def test_a_command_flag_beats_the_preset_file_and_set_beats_both(tmp_path):
    """`recarch ctr train --model dlrm --config preset.yaml` trains DLRM even though the preset names DeepFM."""
    import argparse

    from recarch.cli import _options
    from recarch.ctr.run import load_ctr_config

    preset = tmp_path / "preset.yaml"
    preset.write_text("data:\n  dataset: frappe\nmodel:\n  name: deepfm\n  embed_dim: 10\n")
    flags = _options(argparse.Namespace(model="dlrm", dataset="ml-100k-ctr", out_dir=None),
                     model="model.name", dataset="data.dataset", out_dir="out_dir")
    cfg = load_ctr_config([preset], [], flags)
    assert (cfg.model.name, cfg.data.dataset, cfg.model.embed_dim) == ("dlrm", "ml-100k-ctr", 10)
    cfg = load_ctr_config([preset], ["model.name=dcnv2"], flags)
    assert cfg.model.name == "dcnv2"


def test_unknown_key_names_the_path_and_suggests():
    with pytest.raises(ConfigError, match=r"'model.hiden_size'.*did you mean 'hidden_size'"):
        load_run_config(sets=["model.hiden_size=32"])
    with pytest.raises(ConfigError, match=r"'trian'.*did you mean 'train'"):
        load_run_config(sets=["trian.lr=0.1"])


def test_wrong_types_and_values_are_named():
    with pytest.raises(ConfigError, match=r"train.batch_size: expected an integer, got 'big'"):
        load_run_config(sets=["train.batch_size=big"])
    with pytest.raises(ConfigError, match=r"model.attention: expected one of \['softmax', 'linear'\]"):
        load_run_config(sets=["model.attention=lineer"])
    with pytest.raises(ConfigError, match="divisible"):
        load_run_config(sets=["model.hidden_size=30", "model.n_heads=4"])
    with pytest.raises(ConfigError, match="model.name: unknown model 'sasrek' \\(did you mean 'sasrec'"):
        load_run_config(sets=["model.name=sasrek"])
    with pytest.raises(ConfigError, match="train.valid_protocol: unknown protocol 'pop1000'"):
        load_run_config(sets=["train.valid_protocol=pop1000"])
    with pytest.raises(ConfigError, match="train.valid_metric"):
        load_run_config(sets=["train.valid_metric=ndcg@50"])


def test_a_number_without_a_dot_is_a_number_and_a_word_is_named():
    # YAML 1.1 (PyYAML) reads 1e-5 as a string: in a file and in --set alike it must still mean 1e-05
    assert load_run_config(sets=["train.weight_decay=1e-5"]).train.weight_decay == 1e-5
    assert load_run_config(sets=["train.lr=3E-4"]).train.lr == 3e-4
    with pytest.raises(ConfigError, match=r"train.lr: expected a number, got 'fast'"):
        load_run_config(sets=["train.lr=fast"])


def test_unknown_search_strategy_is_named():
    with pytest.raises(ConfigError, match="unknown search strategy 'easrek' \\(did you mean 'easrec'"):
        load_search_config(sets=["strategy=easrek"])


def test_bad_yaml_and_bad_override(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("model: [1, 2\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_run_config([f])
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_overrides(["train.lr"])


def test_a_search_recipe_sets_supernet_retrain_and_baseline_alike(tmp_path):
    """``recipe:`` (read from the preset's folder) fills model, train and retrain; the preset overrides it."""
    (tmp_path / "tuned.yaml").write_text("data:\n  dataset: beauty\nmodel:\n  hidden_size: 48\n  n_heads: 1\n"
                                         "  item_dropout: 0.2\ntrain:\n  loss: full_ce\n  patience: 20\n")
    (tmp_path / "over.yaml").write_text("model:\n  n_layers: 3\n")
    preset = tmp_path / "search.yaml"
    preset.write_text("recipe: [tuned.yaml, over.yaml]\ntrain:\n  epochs: 7\n")
    cfg = load_search_config([preset], ["retrain.lr=0.01"])
    assert (cfg.data.dataset, cfg.model.hidden_size, cfg.model.item_dropout, cfg.model.n_layers) == ("beauty", 48, 0.2, 3)
    assert (cfg.train.loss, cfg.train.patience, cfg.train.epochs) == ("full_ce", 20, 7)
    assert (cfg.retrain.loss, cfg.retrain.patience, cfg.retrain.lr) == ("full_ce", 20, 0.01)
    assert cfg.retrain.epochs == cfg.run_config(cfg.model).train.epochs != 7
    (tmp_path / "bad.yaml").write_text("space:\n  gates: 0\n")
    preset.write_text("recipe: bad.yaml\n")
    with pytest.raises(ConfigError, match="bad.yaml.*expected a run config"):
        load_search_config([preset])
