"""The sandwich rule and derive by inherited-weight validation scores (recarch.search.sandwich)."""
import json

import pytest
import torch

from recarch.models import SeqModelConfig
from recarch.search import EASRecSupernet, SearchSpaceConfig
from recarch.search.sandwich import PathList, SandwichTrainer, score_paths
from test_search_job import DATA, TINY, needs_data
from test_supernet import SEQ, supernet

torch.set_num_threads(1)


@pytest.mark.parametrize("k,depth", [(0, 3), (1, 2), (2, 1)])
def test_on_path_computes_the_derived_model_and_leaves_the_controllers(k, depth):
    net = supernet()
    alpha, beta = net.alpha.detach().clone(), net.beta.detach().clone()
    derived = net.derive(k, depth).eval()
    with torch.no_grad(), net.on_path((k, depth)):
        torch.testing.assert_close(net.score_last(SEQ), derived.score_last(SEQ), atol=1e-5, rtol=1e-5)
    assert net.path is None and torch.equal(net.alpha, alpha) and torch.equal(net.beta, beta)
    with torch.no_grad():  # outside the block: the relaxed mixture again, not the path
        assert not torch.allclose(net.score_last(SEQ), derived.score_last(SEQ), atol=1e-3)


def _sandwich(tmp_path, epochs, random_paths=1):
    from recarch.data.batching import TrainBatches
    from recarch.evaluation import Evaluator
    from recarch.train import TrainConfig
    from test_trainer import cyclic_dataset

    data = cyclic_dataset()
    torch.manual_seed(0)
    cfg = SeqModelConfig(max_len=8, hidden_size=16, inner_size=32, n_layers=2, n_heads=2, dropout=0.0, attn_dropout=0.0)
    net = EASRecSupernet(data.num_items, cfg, SearchSpaceConfig(attn_intensities=[0.0, 0.5], ffn_intensities=[0.0, 0.5]))
    tcfg = TrainConfig(batch_size=16, lr=1e-2, epochs=epochs, patience=0, seed=3, valid_protocol="full", progress=False)
    paths = [(1, 1), (0, 1), (1, 2), (0, 2)]  # by cost, cheapest first
    trainer = SandwichTrainer(net, TrainBatches(data, 8, tcfg.regime, 16, 3), Evaluator(data, 8, protocols=["full"]),
                              tcfg, tmp_path, log=lambda m: None, parameters=net.weight_parameters(),
                              space=PathList(paths), random_paths=random_paths)
    return trainer, net, data


def test_a_sandwich_step_averages_the_largest_and_smallest_paths_losses(tmp_path):
    trainer, net, data = _sandwich(tmp_path, 1, random_paths=0)
    seq, target = next(iter(trainer.batches.epoch(1)))
    net.train()
    with net.on_path((0, 2)):
        largest = trainer.loss(seq, target)
    with net.on_path((1, 1)):
        smallest = trainer.loss(seq, target)
    torch.testing.assert_close(trainer.step_loss(seq, target), (largest + smallest) / 2)
    assert trainer.step_paths() == [(0, 2), (1, 1)]
    trainer.step_loss(seq, target).backward()  # the controllers are not trained by the weight step
    assert net.alpha.grad is None and net.beta.grad is None


def test_sandwich_draws_resume_exactly_and_validation_scores_both_ends(tmp_path):
    full, net_full, _ = _sandwich(tmp_path / "a", 3)
    history = full.fit()["history"]
    assert {"valid_ndcg@10 (width 16, FFN 32, 2 layer(s))", "valid_ndcg@10 (width 8, FFN 16, 1 layer(s))"} <= set(history[0])
    ends = [history[0][k] for k in history[0] if k.startswith("valid_ndcg@10 (")]
    assert history[0]["valid_ndcg@10"] == pytest.approx(sum(ends) / 2)
    part, _, _ = _sandwich(tmp_path / "b", 2)
    part.fit()
    torch.manual_seed(99)
    resumed, net_resumed, _ = _sandwich(tmp_path / "b", 3)
    resumed.fit(resume=True)
    for (name, a), (_, b) in zip(net_full.state_dict().items(), net_resumed.state_dict().items()):
        assert torch.equal(a, b), name


def test_path_scores_are_each_derived_models_validation_score(tmp_path):
    from recarch.evaluation import Evaluator

    trainer, net, data = _sandwich(tmp_path, 2)
    trainer.fit()
    evaluator = Evaluator(data, 8, protocols=["full"])
    scores = score_paths(net, evaluator, [(0, 2), (1, 1)], "full", "ndcg@10")
    for (k, depth), score in scores.items():
        assert score == pytest.approx(evaluator.evaluate(net.derive(k, depth), "valid")["full"]["ndcg@10"], abs=1e-6)


@needs_data
def test_oneshot_search_derives_the_best_scoring_path_within_the_budget(tmp_path):
    from recarch.config import ConfigError
    from recarch.search.job import load_search_config, search

    sets = TINY + ["baseline=false", "data.dataset=ml-100k", "strategy=oneshot", "supernet.rule=sandwich",
                   "derive_by=validation", "budget_flops=0.6", "retrain.epochs=1"]
    search(load_search_config(sets=sets), data_dir=str(DATA), run_dir=tmp_path / "s", echo=False)
    arch = json.loads((tmp_path / "s" / "arch.json").read_text())
    fits = [s for s in arch["path_scores"] if arch["layer_flops"][s["candidate"]] * s["depth"] <= 0.6 * 2 * max(arch["layer_flops"])]
    assert len(arch["path_scores"]) == 4 and 2 <= len(fits) < 4  # every path scored, the budget's best derived
    assert [s["within_budget"] for s in arch["path_scores"]] == [s in fits for s in arch["path_scores"]]
    best = max(fits, key=lambda s: s["score"])
    assert (arch["candidate"], arch["depth"]) == (best["candidate"], best["depth"])
    assert "valid_ndcg@10 (width 16, FFN 32, 2 layer(s))" in json.loads((tmp_path / "s" / "search" / "trajectory.json").read_text())[0]
    with pytest.raises(ConfigError, match="trains no controllers"):
        load_search_config(sets=["strategy=oneshot"]).validate()


@needs_data
def test_one_supernet_derives_and_retrains_one_architecture_per_budget(tmp_path, capsys):
    from recarch.cli import main

    sets = TINY + ["baseline=false", "strategy=oneshot", "supernet.rule=sandwich", "derive_by=validation",
                   "retrain.epochs=1", "cost.enabled=true", "cost.memory=false"]
    assert main(["--data-dir", str(DATA), "search", "--dataset", "ml-100k", "--budgets", "0.3", "0.6", "1.0",
                 "--out-dir", str(tmp_path), *[x for s in sets for x in ("--set", s)]]) == 0
    (run_dir,) = list(tmp_path.iterdir())
    front = json.loads((run_dir / "front.json").read_text())
    plan = json.loads((run_dir / "front" / "archs.json").read_text())
    assert [r["budget"] for r in front["rows"]] == [0.3, 0.6, 1.0] == [p["budget"] for p in plan]
    scores = {(s["candidate"], s["depth"]): s["score"]
              for s in json.loads((run_dir / plan[0]["folder"] / "arch.json").read_text())["path_scores"]}
    for row, entry in zip(front["rows"], plan):
        assert row["encoder_flops_fraction"] <= row["budget"] + 1e-9  # within its budget ...
        flops = json.loads((run_dir / entry["folder"] / "arch.json").read_text())["layer_flops"]
        fits = [p for p in scores if flops[p[0]] * p[1] <= row["budget"] * max(flops) * 2 + 1e-9]
        assert scores[(entry["candidate"], entry["depth"])] == max(scores[p] for p in fits)  # ... the best that fits
        assert row["flops_per_sequence"] > 0 and (run_dir / entry["folder"] / "retrain" / "metrics.json").exists()
    assert front["distinct_architectures"] == len({p["folder"] for p in plan})
    assert (run_dir / "front.png").exists() and "front.json" in capsys.readouterr().out
