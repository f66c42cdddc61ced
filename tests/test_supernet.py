from dataclasses import replace

import pytest
import torch

from recarch.config import ConfigError
from recarch.models import SeqModelConfig
from recarch.search import EASRecSupernet, SearchSpaceConfig

torch.set_num_threads(1)
SEQ = torch.tensor([[0, 0, 0, 4, 9, 2, 7, 1], [3, 5, 8, 13, 21, 2, 7, 30], [0, 0, 0, 0, 0, 0, 0, 6]])


def supernet(attention="softmax", gates=2, layer="post_norm", positions="forward", padding="masked",
             embedding_norm=True, embedding_scale=False, n_heads=4, intensities=(0.0, 0.5, 0.75), **space):
    torch.manual_seed(0)
    cfg = SeqModelConfig(max_len=8, hidden_size=32, inner_size=48, n_layers=3, n_heads=n_heads, dropout=0.0,
                         attn_dropout=0.0, attention=attention, layer=layer, positions=positions, padding=padding,
                         embedding_norm=embedding_norm, embedding_scale=embedding_scale,
                         activation="swiglu" if layer == "ligr" else "gelu")
    net = EASRecSupernet(30, cfg, SearchSpaceConfig(attn_intensities=list(intensities),
                                                    ffn_intensities=list(intensities), gates=gates, **space))
    with torch.no_grad():  # non-trivial gates and LayerNorms, so slicing errors would show
        for name, p in net.backbone.named_parameters():
            if "norm" in name or "gate" in name:
                p.add_(0.3 * torch.randn_like(p))
    return net.eval()


@pytest.mark.parametrize("layer", ["post_norm", "pre_norm", "sasrec", "ligr"])
@pytest.mark.parametrize("attention", ["softmax", "linear"])
@pytest.mark.parametrize("gates", [0, 1, 2])
@pytest.mark.parametrize("k,depth", [(0, 3), (1, 2), (2, 1), (2, 3)])
def test_derived_model_reproduces_the_supernet_on_its_path(attention, gates, k, depth, layer):
    """Every layer type (LiGR with its SwiGLU FFN) derives exactly, at every width and depth."""
    net = supernet(attention, gates, layer)
    net.fix_path(k, depth)
    derived = net.derive().eval()
    assert (derived.config.hidden_size, derived.config.n_layers) == (net.widths[k][0], depth)
    with torch.no_grad():
        torch.testing.assert_close(derived.score_last(SEQ), net.score_last(SEQ), atol=1e-5, rtol=1e-5)
        real = SEQ > 0  # padded positions carry no state (the derived model's packed layers leave them 0)
        torch.testing.assert_close(derived(SEQ)[real], net(SEQ)[..., : net.widths[k][0]][real], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("layer", ["post_norm", "pre_norm", "sasrec", "ligr"])
@pytest.mark.parametrize("attention", ["softmax", "linear"])
def test_last_position_shortcut_matches_the_full_mixture(attention, layer):
    """hidden_last computes only the last position in the final exit layer; it must equal the last
    position of the full forward under soft (mixed) controllers."""
    net = supernet(attention, layer=layer)
    with torch.no_grad():
        net.alpha.copy_(torch.tensor([0.3, -0.2, 0.1]))
        net.beta.copy_(torch.tensor([0.2, 0.5, -0.4]))
        torch.testing.assert_close(net.hidden_last(SEQ), net(SEQ)[:, -1], atol=1e-5, rtol=1e-5)


def test_derived_model_is_physically_narrow():
    net = supernet()
    net.fix_path(2, 1)
    derived = net.derive()
    assert derived.embedding.item.weight.shape == (31, 8)
    assert derived.encoder.layers[0].ffn.fc1.weight.shape == (12, 8)
    assert derived.config.n_heads == 1  # head size 8 kept
    assert sum(p.numel() for p in derived.parameters()) < sum(p.numel() for p in net.parameters()) / 5


@pytest.mark.parametrize("n_heads", [4, 1])
@pytest.mark.parametrize("layer", ["pre_norm", "sasrec"])
@pytest.mark.parametrize("k,depth", [(0, 3), (1, 2), (2, 1)])
def test_the_recipe_derives_exactly_with_inverse_positions_and_visible_padding(k, depth, layer, n_heads):
    """The tuned recipe's embedding (positions counted back from the last item, no LayerNorm, items
    scaled by √width) and its padding keys (the zero state's key at each candidate's width) on the
    supernet's padded path equal the derived model's packed ones; a single-head model (the recipe's)
    narrows its head to each width (24, 8), heads of 8 are dropped instead."""
    net = supernet("softmax", 2, layer, positions="inverse", padding="visible", embedding_norm=False,
                   embedding_scale=True, n_heads=n_heads, intensities=(0.0, 0.25, 0.75))
    net.fix_path(k, depth)
    derived = net.derive().eval()
    assert derived.config.n_heads == (1 if n_heads == 1 else net.widths[k][0] // 8)
    with torch.no_grad():
        torch.testing.assert_close(derived.score_last(SEQ), net.score_last(SEQ), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("layer", ["post_norm", "pre_norm", "sasrec", "ligr"])
def test_full_width_full_depth_path_is_the_static_model(layer):
    net = supernet(gates=0, layer=layer)
    net.fix_path(0, 3)
    with torch.no_grad():
        torch.testing.assert_close(net.score_last(SEQ), net.backbone.score_last(SEQ), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("relaxation", ["softmax", "gumbel"])
def test_gradients_reach_both_controllers(relaxation):
    net = supernet(relaxation=relaxation).train()
    net.score_last(SEQ).logsumexp(-1).mean().backward()
    assert net.alpha.grad is not None and net.alpha.grad.abs().sum() > 0
    assert net.beta.grad is not None and net.beta.grad.abs().sum() > 0


def test_widths_must_hold_whole_heads():
    cfg = SeqModelConfig(hidden_size=64, n_heads=2, inner_size=256)
    with pytest.raises(ConfigError, match="multiple of the head size 32"):
        EASRecSupernet(10, cfg, SearchSpaceConfig(attn_intensities=[0.0, 0.75], ffn_intensities=[0.0, 0.5]))
    with pytest.raises(ConfigError, match="item_width 16: EASRec's space ties the item table"):
        EASRecSupernet(10, replace(cfg, n_heads=1, item_width=16), SearchSpaceConfig())


def test_candidate_flops_are_counted_and_the_constraint_prefers_small_shallow_paths():
    from recarch.cost import analytic_layer_flops
    from recarch.search.constraint import ResourceConstraint, candidate_layer_flops

    net = supernet(gates=0)
    flops = candidate_layer_flops(net, seq_len=8)
    for (d, f), counted in zip(net.widths, flops):
        assert counted == analytic_layer_flops(8, 8, d, f, d // 8)["flops"]
    r = ResourceConstraint(flops, n_layers=3)
    big = r(torch.tensor([1.0, 0, 0]), torch.tensor([0, 0, 1.0]))
    small = r(torch.tensor([0, 0, 1.0]), torch.tensor([1.0, 0, 0]))
    assert small < big
    # R is differentiable in both controllers
    a, b = torch.zeros(3, requires_grad=True), torch.zeros(3, requires_grad=True)
    r(torch.softmax(a, 0), torch.softmax(b, 0)).backward()
    assert a.grad.abs().sum() > 0 and b.grad.abs().sum() > 0


def _search_trainer(tmp_path, epochs, arch_data="valid", **architect):
    from recarch.data.batching import TrainBatches
    from recarch.evaluation import Evaluator
    from recarch.search.constraint import ResourceConstraint, candidate_layer_flops
    from recarch.search.easrec import ArchitectConfig, EASRecArchitect, ValidationStream
    from recarch.train import Trainer, TrainConfig
    from test_trainer import cyclic_dataset

    data = cyclic_dataset()
    torch.manual_seed(0)
    cfg = SeqModelConfig(max_len=8, hidden_size=16, inner_size=32, n_layers=2, n_heads=2)
    net = EASRecSupernet(data.num_items, cfg, SearchSpaceConfig(attn_intensities=[0.0, 0.5],
                                                                ffn_intensities=[0.0, 0.5]))
    tcfg = TrainConfig(batch_size=16, lr=1e-2, epochs=epochs, patience=0, seed=3, valid_protocol="full",
                       progress=False)
    trainer = Trainer(net, TrainBatches(data, 8, tcfg.regime, 16, 3), Evaluator(data, 8, protocols=["full"]),
                      tcfg, tmp_path, log=lambda m: None, parameters=net.weight_parameters())
    acfg = ArchitectConfig(arch_lr=0.05, arch_data=arch_data, batch_size=8, tau_decay=0.01, **architect)
    valid = ValidationStream(data, 8, 8, 3) if arch_data == "valid" else None
    trainer.hooks = EASRecArchitect(net, ResourceConstraint(candidate_layer_flops(net, 8), 2), acfg,
                                    trainer.loss, valid)
    return trainer, net


@pytest.mark.parametrize("arch_data", ["valid", "train"])
def test_a_resumed_search_equals_an_uninterrupted_one(tmp_path, arch_data):
    full, net_full = _search_trainer(tmp_path / "a", 3, arch_data)
    full.fit()
    part, _ = _search_trainer(tmp_path / "b", 2, arch_data)
    part.fit()
    torch.manual_seed(99)
    resumed, net_resumed = _search_trainer(tmp_path / "b", 3, arch_data)
    resumed.fit(resume=True)
    assert torch.equal(net_full.alpha, net_resumed.alpha) and torch.equal(net_full.beta, net_resumed.beta)
    for (name, a), (_, b) in zip(net_full.state_dict().items(), net_resumed.state_dict().items()):
        assert torch.equal(a, b), name
    assert net_full.tau == net_resumed.tau < 1.0
    # the controllers moved, and only the architect moved them (weights' optimizer excludes them)
    assert not torch.equal(net_full.alpha, torch.zeros(2))
    assert all(p is not net_full.alpha for g in full.optimizer.param_groups for p in g["params"])


def test_search_stops_once_the_architecture_is_stable(tmp_path):
    trainer, _ = _search_trainer(tmp_path, 30, arch_patience=2)
    history = trainer.fit()["history"]
    assert 3 <= len(history) < 30  # train.patience is 0: only the architecture's stability stops it
    assert history[-1]["chosen"] == history[-2]["chosen"] == history[-3]["chosen"]
    again, _ = _search_trainer(tmp_path / "off", 6)  # arch_patience 0 (the paper): the epoch cap decides
    assert len(again.fit()["history"]) == 6


def test_proxyless_single_path_step_leaves_inactive_slices_without_gradient():
    net = supernet(gates=2).train()
    net.path_sampling = True
    for seed in range(4):
        net.zero_grad(set_to_none=True)
        torch.manual_seed(seed)
        w = net.candidate_weights()
        assert sorted(w.detach().tolist()) == [0.0, 0.0, 1.0]  # one-hot in value
        k = int(w.argmax())
        torch.manual_seed(seed)  # the forward draws the same path first
        net.score_last(SEQ).logsumexp(-1).mean().backward()
        d, f = net.widths[k]
        layer = net.backbone.encoder.layers[0]
        assert layer.attention.query.weight.grad[d:].abs().sum() == 0  # rows only wider candidates use
        assert layer.ffn.fc1.weight.grad[f:].abs().sum() == 0
        assert layer.attention.query.weight.grad[:d].abs().sum() > 0
        assert net.alpha.grad.abs().sum() > 0  # the controller learns through the sampled gate


@pytest.mark.parametrize("name", ["darts", "proxylessnas", "recnas"])
def test_baseline_strategies_search_and_move_the_controllers(tmp_path, name):
    from recarch.search import STRATEGIES

    trainer, net = _search_trainer(tmp_path, 2, "valid")
    strategy = STRATEGIES.get(name)
    trainer.hooks = strategy(net, trainer.hooks.constraint, trainer.hooks.cfg, trainer.loss, trainer.hooks.valid)
    assert net.path_sampling == (name == "proxylessnas")
    trainer.fit()
    assert net.alpha.abs().sum() > 0 and net.beta.abs().sum() > 0
    assert strategy.space_overrides.get("relaxation") == "softmax"


def test_recnas_anneals_per_epoch_and_prunes_weak_choices(tmp_path):
    from recarch.search.recnas import RecNASArchitect

    trainer, net = _search_trainer(tmp_path, 1, "valid")
    hooks = RecNASArchitect(net, trainer.hooks.constraint, trainer.hooks.cfg, trainer.loss, trainer.hooks.valid)
    with torch.no_grad():
        net.alpha.copy_(torch.tensor([3.0, -3.0]))
    hooks.after_epoch(1, {})
    assert net.alpha[1] == -1e9 and net.alpha[0] == 3.0  # the weak candidate is gone for good
    assert net.tau == pytest.approx(0.7)


def test_an_architecture_step_moves_only_the_controllers(tmp_path):
    trainer, net = _search_trainer(tmp_path, 1, "valid")
    weights = {k: v.clone() for k, v in net.backbone.state_dict().items()}
    alpha = net.alpha.detach().clone()
    seq, target = next(iter(trainer.batches.epoch(1)))
    trainer.hooks.after_step(1, seq, target)
    assert not torch.equal(net.alpha, alpha) and net.alpha.grad is not None
    assert all(p.grad is None for p in net.weight_parameters())  # no weight gradient was computed
    assert all(p.requires_grad for p in net.weight_parameters())  # and the weights train again afterwards
    assert all(torch.equal(v, net.backbone.state_dict()[k]) for k, v in weights.items())


def test_proxyless_controller_step_learns_through_two_sampled_gates_and_runs_one_path():
    net = supernet(gates=2).train()
    net.path_sampling = net.rival_paths = True
    for seed in range(4):
        net.zero_grad(set_to_none=True)
        torch.manual_seed(seed)
        (w, paths), (v, _) = net._gates(net.alpha), net._gates(net.beta)
        assert sorted(w.detach().tolist()) == [0.0, 0.0, 1.0] and len(paths) == 2 and int(w.argmax()) in paths
        torch.manual_seed(seed)  # the forward draws the same paths
        scores = net.score_last(SEQ)
        scores.logsumexp(-1).mean().backward()
        # only the two drawn paths' logits move, in opposite directions (a softmax over the pair)
        grad = net.alpha.grad
        rest = [k for k in range(len(net.widths)) if k not in paths]
        assert grad[rest].abs().sum() == 0 and grad[paths].abs().min() > 0
        assert abs(float(grad[paths].sum())) < 1e-6
        # in value the forward is the sampled path alone: the rival weighs 0
        single = supernet(gates=2)
        single.fix_path(int(w.argmax()), int(v.argmax()) + 1)
        assert torch.allclose(scores, single.score_last(SEQ), atol=1e-5)
