"""bench_ctr_fidelity's helpers: which candidates it ranks and --reuse-alone."""
import json
import random

import pytest

from recarch import config as cfglib
from recarch.ctr.space import SpaceConfig, sample

from benchmark_scripts import load


class CountedFlops:
    """A stand-in for the candidate scorer's FLOPs count: the sum of the blocks' dense widths."""

    def mflops(self, arch):
        return sum(b.dense_dim for b in arch.blocks)


def test_candidates_spread_from_the_cheapest_to_the_dearest_draw_without_repeats():
    bench = load("bench_ctr_fidelity")
    space = SpaceConfig(blocks=3, dense_dims=[8, 16, 32], sparse_dims=[4, 8])
    picked = bench.spread_over_flops(CountedFlops(), space, 6, seed=0)
    costs = [CountedFlops().mflops(a) for a in picked]
    rng = random.Random(0)
    drawn = [CountedFlops().mflops(sample(space, rng)) for _ in range(bench.DRAWS)]
    assert len({a.network_key() for a in picked}) == 6 and costs == sorted(costs)
    assert costs[0] == min(drawn) and costs[-1] == max(drawn)


def test_variants_share_a_trained_alone_folder_named_by_the_architecture(tmp_path):
    bench = load("bench_ctr_fidelity")
    space = SpaceConfig(blocks=3, dense_dims=[8, 16, 32], sparse_dims=[4, 8])
    rng = random.Random(0)
    a, b = sample(space, rng), sample(space, rng)
    path = bench.alone_arch_file(tmp_path, space, a)
    assert bench.alone_arch_file(tmp_path, space, a) == path  # another variant picking it: the same file
    assert bench.alone_arch_file(tmp_path, space, b) != path
    assert bench.alone_arch_file(tmp_path, SpaceConfig(blocks=3, dense_dims=[8, 16, 64], sparse_dims=[4, 8]), a) != path
    from recarch.ctr.supernet import load_arch

    assert load_arch(str(path)) == (space, a)


def test_a_supernet_serves_other_scoring_retrain_and_thread_settings_but_not_another_rule():
    from recarch.ctr.search_config import load_search_config

    bench = load("bench_ctr_fidelity")
    base = bench.supernet_settings(load_search_config())
    same = load_search_config(sets=["retrain_seeds=2", "finetune_steps=50", "train.epochs=40", "retrain.lr=0.01",
                                    "train.threads=2", "budget_mflops=0.3", "executor.kind=ray"])
    assert bench.supernet_settings(same) == base
    for other in (["supernet.rule=sandwich"], ["train.lr=0.1"], ["space.blocks=3"]):
        assert bench.supernet_settings(load_search_config(sets=other)) != base


def test_reuse_alone_takes_the_scores_of_the_same_candidates_and_refuses_others(tmp_path):
    from recarch.ctr.search_config import load_search_config

    bench = load("bench_ctr_fidelity")
    cfg = load_search_config(sets=["retrain_lrs=[0.001]"])
    stored = [{"arch_file": f"x/alone/{name}.json", "alone_valid_logloss": loss, "alone_valid_auc": 0.9,
               "alone_test_auc": 0.8, "lr": 0.001, "stopped_by": ["patience"]} for name, loss in (("aa", 0.3), ("bb", 0.2))]
    earlier = {"space": cfglib.to_dict(cfg.space), "retrain_lrs": [0.001], "alone_seeds": 1, "rows": stored,
               "alone_seed_to_seed": None}
    path = tmp_path / "earlier.json"
    path.write_text(json.dumps(earlier))
    rows = [{"arch_file": "y/alone/bb.json"}, {"arch_file": "y/alone/aa.json"}]  # same content, another folder
    fields, noise = bench.stored_alone(path, rows, cfg)
    assert [f["alone_valid_logloss"] for f in fields] == [0.2, 0.3] and noise is None
    with pytest.raises(SystemExit, match="lacks 1 of the 2"):
        bench.stored_alone(path, [{"arch_file": "y/alone/aa.json"}, {"arch_file": "y/alone/cc.json"}], cfg)
    with pytest.raises(SystemExit, match="other settings"):
        bench.stored_alone(path, rows, load_search_config(sets=["retrain_lrs=[0.0003]"]))
