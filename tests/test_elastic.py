"""The per-layer elastic space (recarch.search.elastic): every sub-network derives exactly."""
import json
import random

import pytest
import torch

from recarch.config import ConfigError
from recarch.models import SeqModelConfig
from recarch.search.elastic import (Arch, ElasticSpaceConfig, ElasticSupernet, candidate_archs, largest,
                                    model_flops, sample_arch, smallest)

from test_search_job import DATA

torch.set_num_threads(1)
SEQ = torch.tensor([[0, 0, 0, 0, 4, 9, 2, 7, 1, 5], [3, 5, 8, 13, 21, 2, 7, 30, 11, 12], [0] * 9 + [6]])
SPACE = dict(widths=[8, 16, 24], attn_widths=[8, 16, 32], heads=[1, 2, 4], ffn_widths=[8, 24, 40], depths=[1, 2, 3],
             max_lens=[4, 7, 10], layer_types=["sasrec", "post_norm", "pre_norm", "ligr"])


def elastic(padding="masked", positions="inverse", gates=0, activation="gelu", **space):
    torch.manual_seed(0)
    cfg = SeqModelConfig(max_len=10, hidden_size=24, inner_size=40, n_layers=3, n_heads=1, dropout=0.0,
                         attn_dropout=0.0, padding=padding, positions=positions, gates=gates, activation=activation)
    net = ElasticSupernet(30, cfg, ElasticSpaceConfig(**{**SPACE, **space}))
    with torch.no_grad():  # non-trivial gates and LayerNorms, so slicing errors would show
        for name, p in net.backbone.named_parameters():
            if "norm" in name or "gate" in name:
                p.add_(0.3 * torch.randn_like(p))
    return net.eval()


@pytest.mark.parametrize("padding,positions,gates,activation,item_widths", [
    ("masked", "inverse", 0, "gelu", []), ("visible", "inverse", 0, "relu", []), ("masked", "forward", 2, "swiglu", []),
    ("visible", "forward", 1, "gelu", []), ("visible", "inverse", 0, "relu", [4, 12, 32]),
    ("masked", "forward", 2, "gelu", [8, 16])])
def test_every_drawn_architecture_derives_exactly(padding, positions, gates, activation, item_widths):
    """Per-layer attention width, heads and FFN width, the layer type, depth, the history length N and
    the item table's own width e: the derived SASRec reading the last N items computes what the
    supernet computes on that path."""
    net = elastic(padding, positions, gates, activation, item_widths=item_widths)
    rng = random.Random(0)
    archs = [largest(net.space), smallest(net.space)] + [sample_arch(net.space, rng.randrange) for _ in range(12)]
    assert len({a.layer for a in archs}) > 1 and len({a.max_len for a in archs}) > 1
    for arch in archs:
        derived = net.derive(arch).eval()
        n = arch.max_len
        assert derived.config.max_len == n and derived.config.attn_sizes == [a for a, _, _ in arch.layers]
        assert derived.config.item_width == arch.item_width and (arch.item_width in item_widths or not item_widths)
        assert derived.item_embeddings().shape[1] == (arch.item_width or arch.width)
        with torch.no_grad(), net.on_path(arch):
            torch.testing.assert_close(net.score_last(SEQ), derived.score_last(SEQ[:, -n:]), atol=1e-5, rtol=1e-5)
            real = SEQ[:, -n:] > 0
            torch.testing.assert_close(net(SEQ)[real], derived(SEQ[:, -n:])[real], atol=1e-5, rtol=1e-5)
    assert net.arch == largest(net.space)  # the block leaves the supernet as it was
    assert len({a.item_width for a in archs}) == max(len(item_widths), 1)


def test_a_heterogeneous_sasrec_is_an_ordinary_model_config():
    cfg = SeqModelConfig(hidden_size=16, n_layers=2, attn_sizes=[16, 8], layer_heads=[2, 1], inner_sizes=[32, 8])
    cfg.validate()
    from recarch.models.sasrec import SASRec
    model = SASRec(20, cfg)
    assert [l.attention.query.out_features for l in model.encoder.layers] == [16, 8]
    assert [l.ffn.fc1.out_features for l in model.encoder.layers] == [32, 8]
    with pytest.raises(ConfigError, match="attn_sizes: expected 2 values"):
        SeqModelConfig(n_layers=2, attn_sizes=[16]).validate()
    with pytest.raises(ConfigError, match="layer 2: attention width 6 .* divisible by its 4 heads"):
        SeqModelConfig(hidden_size=16, n_layers=2, attn_sizes=[16, 6], layer_heads=[2, 4]).validate()


def test_the_space_is_checked():
    with pytest.raises(ConfigError, match="elastic.layer_types: 'postnorm'"):
        ElasticSpaceConfig(layer_types=["postnorm"]).validate()
    with pytest.raises(ConfigError, match="elastic.attn_widths: 6 is divisible by none"):
        ElasticSpaceConfig(attn_widths=[6, 8], heads=[4]).validate()


def test_candidates_fit_the_budget_and_flops_grow_with_the_architecture():
    net = elastic()
    big, small = largest(net.space), smallest(net.space)
    assert net.flops(small) < net.flops(big)
    deeper = Arch(small.width, small.max_len, small.layer, small.layers * 2)
    assert net.flops(small) < net.flops(deeper)
    limit = (net.flops(small) + net.flops(big)) / 2
    found = candidate_archs(net.space, 20, 0, lambda a: net.flops(a) <= limit)
    assert len(found) == 20 == len(set(found)) and found[0] == small  # the largest does not fit
    assert all(net.flops(a) <= limit for a in found)
    assert Arch.from_dict(found[3].to_dict()) == found[3]
    factored = elastic(item_widths=[4, 32])  # the item table's width: the scores over 30 items cost 30·e
    narrow, wide = (Arch(big.width, big.max_len, big.layer, big.layers, e) for e in (4, 32))
    assert factored.flops(narrow) < factored.flops(wide) and Arch.from_dict(narrow.to_dict()) == narrow
    assert narrow.name().startswith("width 24, items 4, N 10") and narrow.folder().startswith("d24-e4-n10")
    with pytest.raises(ConfigError, match="model.item_width: .* got 16 on fdsa"):
        SeqModelConfig(name="fdsa", item_width=16).validate()


def test_a_sandwich_step_trains_every_path_it_runs(tmp_path):
    from recarch.data.batching import TrainBatches
    from recarch.evaluation import Evaluator
    from recarch.search.sandwich import SandwichTrainer
    from recarch.train import TrainConfig
    from test_trainer import cyclic_dataset

    data = cyclic_dataset()
    torch.manual_seed(0)
    cfg = SeqModelConfig(max_len=8, hidden_size=16, inner_size=32, n_layers=2, n_heads=1, dropout=0.0, attn_dropout=0.0)
    net = ElasticSupernet(data.num_items, cfg, ElasticSpaceConfig(widths=[8, 16], attn_widths=[8, 16], heads=[1, 2],
                                                                  ffn_widths=[8, 32], depths=[1, 2], max_lens=[4, 8]))
    tcfg = TrainConfig(batch_size=16, lr=1e-2, epochs=1, patience=0, seed=3, valid_protocol="full", progress=False)
    trainer = SandwichTrainer(net, TrainBatches(data, 8, tcfg.regime, 16, 3), Evaluator(data, 8, protocols=["full"]),
                              tcfg, tmp_path, log=lambda m: None, parameters=net.weight_parameters(),
                              space=net.sampler, random_paths=1)
    seq, target = next(iter(trainer.batches.epoch(1)))
    net.train()
    small = smallest(net.space)
    with net.on_path(small):
        alone = trainer.loss(*net.crop(small, (seq, target)))
    alone.backward()
    item_grad = net.backbone.embedding.item.weight.grad
    assert item_grad[:, :8].abs().sum() > 0 and item_grad[:, 8:].abs().sum() == 0  # the slice it ran on only
    net.zero_grad()
    trainer.step_loss(seq, target).backward()
    assert net.backbone.embedding.item.weight.grad[:, 8:].abs().sum() > 0  # the largest path ran too
    history = trainer.fit()["history"]
    assert any("valid_ndcg@10 (width 8, N 4" in key for key in history[0])


@pytest.mark.skipif(not (DATA / "ml-100k" / "ml-100k.inter").exists(), reason="ml-100k not present")
def test_elastic_search_derives_the_best_scoring_candidate_per_budget_and_retrains_it(tmp_path):
    """``recarch search --set strategy=elastic --budgets ...``: one supernet, each budget's candidates
    scored on its weights, the best within the budget derived, retrained and costed, the baseline beside."""
    from recarch.cli import main

    sets = ["strategy=elastic", "model.max_len=12", "model.hidden_size=16", "model.inner_size=32", "model.n_layers=2",
            "model.n_heads=1", "elastic.widths=[8, 16]", "elastic.attn_widths=[8, 16]", "elastic.heads=[1, 2]",
            "elastic.ffn_widths=[8, 32]", "elastic.depths=[1, 2]", "elastic.max_lens=[6, 12]",
            "elastic.layer_types=[sasrec, ligr]", "candidates=6", "train.epochs=2", "retrain.epochs=1",
            "train.progress=false", "retrain.progress=false", "cost.memory=false"]
    assert main(["--data-dir", str(DATA), "search", "--dataset", "ml-100k", "--budgets", "0.5", "1.0",
                 "--out-dir", str(tmp_path), *[x for s in sets for x in ("--set", s)]]) == 0
    (run_dir,) = list(tmp_path.iterdir())
    plan = json.loads((run_dir / "front" / "archs.json").read_text())
    scored = json.loads((run_dir / "search" / "candidates.json").read_text())
    front = json.loads((run_dir / "front.json").read_text())
    assert [p["budget"] for p in plan] == [0.5, 1.0] and front["rows"][-1]["model"] == "SASRec (hand-sized)"
    assert "model.positions: inverse shares them consistently" in (run_dir / "log.txt").read_text()  # N 6 and 12
    for entry, row in zip(plan, front["rows"]):
        fits = [c for c in scored if c["flops_fraction"] <= entry["budget"]]
        assert entry["inherited_score"] == max(c["score"] for c in fits) and entry["flops_fraction"] <= entry["budget"]
        arch = json.loads((run_dir / entry["folder"] / "arch.json").read_text())
        assert arch["arch"] == entry["arch"] and arch["flops_per_sequence"] == row["flops_per_sequence"]  # counted alike
    baseline = front["rows"][-1]["flops_per_sequence"]
    assert all(c["flops"] == pytest.approx(c["flops_fraction"] * baseline) for c in scored)
    (run_dir / "front.json").unlink()  # resumed, every finished phase is kept and the front written again
    assert main(["--data-dir", str(DATA), "search", "--resume", str(run_dir)]) == 0
    assert json.loads((run_dir / "front.json").read_text())["rows"] == front["rows"]


@pytest.mark.skipif(not (DATA / "ml-100k" / "ml-100k.inter").exists(), reason="ml-100k not present")
def test_random_search_draws_from_the_elastic_space_within_the_budget(tmp_path):
    from recarch.search.job import load_search_config, search

    sets = ["data.dataset=ml-100k", "strategy=random", "random.space=elastic", "random.trials=3", "random.epochs=1",
            "budget_flops=0.6", "baseline=false", "model.max_len=12", "model.hidden_size=16", "model.inner_size=32",
            "model.n_layers=2", "model.n_heads=1", "elastic.widths=[8, 16]", "elastic.attn_widths=[8, 16]",
            "elastic.ffn_widths=[8, 32]", "elastic.depths=[1, 2]", "elastic.max_lens=[6, 12]", "retrain.epochs=1",
            "retrain.progress=false", "cost.memory=false"]
    summary = search(load_search_config(sets=sets), data_dir=str(DATA), run_dir=tmp_path / "s", echo=False)
    arch = json.loads((tmp_path / "s" / "arch.json").read_text())
    cfg = load_search_config(sets=sets)
    net = ElasticSupernet(1682, cfg.model, cfg.elastic)  # ml-100k's 1,682 items
    drawn = [Arch.from_dict(t["arch"]) for t in arch["trials"]]
    assert len(set(drawn)) == 3 and {d.folder() for d in drawn} == {p.name for p in (tmp_path / "s" / "trials").iterdir()}
    assert all(net.flops(d) <= 0.6 * model_flops(1682, cfg.model) for d in drawn)
    assert arch["arch"] == max(arch["trials"], key=lambda t: t["valid"])["arch"]
    assert summary["rows"][0]["flops_per_sequence"] == net.flops(Arch.from_dict(arch["arch"]))  # counted alike
