"""CTR models, metrics, the NASRec supernet and its hardware cost model."""
import random
from dataclasses import replace

import numpy as np
import pytest
import torch

from recarch.ctr import hardware as hw
from recarch.ctr.evolution import EvolutionConfig, Scored, evolve, pareto_front
from recarch.ctr.metrics import log_loss, roc_auc
from recarch.ctr.models import CTR_MODELS, CTRModelConfig, build_ctr_model, fm_interaction, pairwise_dots
from recarch.ctr.space import Arch, SpaceConfig, check, mutate, sample
from recarch.ctr.supernet import NASRecNet, NASRecSupernet, lower_pairs
from recarch.ctr.table import CTRSchema

SCHEMA = CTRSchema([f"f{i}" for i in range(5)], [7, 3, 9, 4, 5], ["n1", "n2"])
SPACE = SpaceConfig(blocks=4, dense_dims=[8, 16, 32], sparse_dims=[4, 8])


def inputs(n=6):
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 3, (n, 5), generator=g), torch.rand(n, 2, generator=g)


def test_auc_and_logloss_on_hand_cases():
    # positives at 0.9 and 0.4, negatives at 0.4 and 0.1: pairs (0.9>0.4, 0.9>0.1, 0.4=0.4 → ½, 0.4>0.1) = 3.5/4
    assert roc_auc(np.array([1, 1, 0, 0]), np.array([0.9, 0.4, 0.4, 0.1])) == pytest.approx(0.875)
    assert roc_auc(np.array([0, 1]), np.array([0.5, 0.5])) == 0.5
    assert roc_auc(np.array([1, 0, 1]), np.array([0.1, 0.2, 0.3])) == 0.5
    expected = -(np.log(0.8) + np.log(0.6)) / 2
    assert log_loss(np.array([1, 0]), np.array([0.8, 0.4])) == pytest.approx(expected)
    with pytest.raises(ValueError, match="both classes"):
        roc_auc(np.array([1, 1]), np.array([0.2, 0.3]))


def test_interaction_terms_match_definitions():
    e = torch.randn(3, 4, 5)
    naive = sum((e[:, i] * e[:, j]).sum(-1) for i in range(4) for j in range(i + 1, 4))
    assert torch.allclose(fm_interaction(e), naive, atol=1e-5)
    dots = pairwise_dots(e)
    assert dots.shape == (3, 6) and torch.allclose(dots.sum(1), naive, atol=1e-5)
    a, b = lower_pairs(4)
    assert list(zip(a.tolist(), b.tolist())) == [(0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3)]


@pytest.mark.parametrize("name", ["dlrm", "deepfm", "dcnv2", "autoint"])
def test_baselines_learn_a_simple_rule(name):
    """Click iff field 0 has id 1: every baseline must fit it (AUC → 1) in a few hundred steps."""
    torch.manual_seed(0)
    cfg = CTRModelConfig(name=name, embed_dim=4, mlp=[16], dropout=0.0, init_std=0.1)
    model = build_ctr_model(SCHEMA, cfg)
    cat, num = torch.randint(0, 3, (256, 5)), torch.rand(256, 2)
    label = (cat[:, 0] == 1).float()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(cat, num), label)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert model(cat, num).shape == (256,)
    assert roc_auc(label.numpy(), model(cat, num).detach().numpy()) > 0.99


def test_unknown_model_is_named():
    with pytest.raises(Exception, match="did you mean 'deepfm'"):
        CTRModelConfig(name="deepfn").validate()
    assert {"dlrm", "deepfm", "dcnv2", "autoint"} <= set(CTR_MODELS.names())


@pytest.mark.parametrize("norm", ["layer", "batch"])
def test_extracted_network_reproduces_the_supernet_path(norm):
    torch.manual_seed(0)
    space = replace(SPACE, norm=norm)
    net = NASRecSupernet(SCHEMA, space).eval()
    cat, num = inputs()
    rng = random.Random(1)
    for t in range(25):
        arch = sample(space, rng, largest=t == 0)
        check(arch, space)
        net.recalibrate(arch, [inputs(64)])  # BatchNorm: the path's own statistics, copied by extract
        plain = net.extract(arch).eval()
        assert torch.allclose(net(cat, num, arch), plain(cat, num), atol=1e-5)
        # the plain network is a model of its own: same layout when built from the architecture alone
        fresh = NASRecNet(SCHEMA, space, arch)
        fresh.load_state_dict(plain.state_dict())
        assert sum(p.numel() for p in plain.parameters()) < sum(p.numel() for p in net.parameters())


def test_recalibration_gives_a_path_the_mean_statistics_of_its_own_activations():
    from recarch.ctr.elastic import ElasticBatchNorm

    torch.manual_seed(0)
    space = replace(SPACE, norm="batch")
    net = NASRecSupernet(SCHEMA, space)
    arch = sample(space, random.Random(2))
    arch.blocks[-1].dense_op, arch.blocks[-1].dense_dim = "fc", 16
    norm = net.blocks[-1].dense["fc"].norm
    assert isinstance(norm, ElasticBatchNorm)
    for other in range(3):  # training other paths leaves statistics that are not this path's
        net.train()(*inputs(32), sample(space, random.Random(other)))
    seen = []
    handle = norm.register_forward_hook(lambda m, args, out: seen.append(args[0].detach().clone()))
    batches = [inputs(32), inputs(48)]
    net.eval().recalibrate(arch, batches)
    handle.remove()
    assert len(seen) == 2 and all(x.shape[1] == 16 for x in seen) and not net.training
    assert torch.allclose(norm.running_mean[:16], torch.stack([x.mean(0) for x in seen]).mean(0), atol=1e-6)
    assert torch.allclose(norm.running_var[:16], torch.stack([x.var(0) for x in seen]).mean(0), rtol=1e-5)
    assert norm.momentum == 0.1
    with torch.no_grad():  # in eval mode the path normalises with exactly these statistics
        again = net(*inputs(32), arch)
        net.recalibrate(arch, batches)
        assert torch.equal(again, net(*inputs(32), arch))


def test_the_plain_network_applies_model_dropout_only_while_training():
    torch.manual_seed(0)
    arch = sample(SPACE, random.Random(3), largest=True)
    plain, dropped = NASRecNet(SCHEMA, SPACE, arch), NASRecNet(SCHEMA, SPACE, arch, dropout=0.5)
    dropped.load_state_dict(plain.state_dict())
    cat, num = inputs()
    plain.eval(), dropped.eval()
    assert torch.equal(plain(cat, num), dropped(cat, num))
    dropped.train()
    assert not torch.allclose(dropped(cat, num), dropped(cat, num))


def test_dead_blocks_are_skipped_and_inert_genes_share_a_network_key():
    torch.manual_seed(0)
    net = NASRecSupernet(SCHEMA, SPACE)
    cat, num = inputs()
    arch = sample(SPACE, random.Random(2))
    for i, b in enumerate(arch.blocks):  # a chain 0 → 1 → 3 → 4 of fc blocks: block 2 is read by no one
        b.dense_op = "fc"
        b.dense_in = b.sparse_in = [0] if i == 0 else [1] if i == 2 else [i]
        b.binary_in = []
    assert arch.live_blocks() == {1, 3, 4}
    plain = net.extract(arch)
    assert isinstance(plain.blocks[1], torch.nn.Identity)
    assert torch.allclose(net(cat, num, arch), plain(cat, num), atol=1e-5)
    from recarch.cost.flops import count_flops

    other = Arch.from_dict(arch.to_dict())
    other.blocks[1].dense_dim, other.blocks[1].sparse_op = 32, "attention"  # the dead block changes
    other.blocks[2].binary_in = [0]  # fc never reads its binary input
    assert other.key() != arch.key() and other.network_key() == arch.network_key()
    assert torch.allclose(net(cat, num, other), plain(cat, num), atol=1e-5)
    alive = Arch.from_dict(arch.to_dict())
    alive.blocks[2].dense_in = [1, 2]  # now block 2 feeds block 3
    assert alive.network_key() != arch.network_key()
    assert count_flops(net.extract(alive), (cat, num))["flops"] > count_flops(plain, (cat, num))["flops"]


def test_dead_parts_are_not_computed_and_leaving_them_out_never_changes_the_logit():
    from recarch.cost.flops import count_flops
    from recarch.ctr.space import Parts
    from recarch.ctr.supernet import raw_inputs

    torch.manual_seed(0)
    net = NASRecSupernet(SCHEMA, SPACE)
    cat, num = inputs()

    def everything(arch):  # every part of every block computed, as before the pruning
        outputs = [raw_inputs(net.embedding, cat, num)]
        for block, b in zip(net.blocks, arch.blocks):
            parts = Parts(True, True, b.dense_to_sparse, b.fm)
            outputs.append(block(net.context(arch, outputs, b, parts), b, parts))
        return net.head(outputs[-1][0], None, torch.arange(arch.blocks[-1].dense_dim)).squeeze(-1)

    rng, pruned = random.Random(5), 0
    for _ in range(40):
        arch = sample(SPACE, rng)
        assert torch.allclose(net(cat, num, arch), everything(arch), atol=1e-5)
        pruned += sum(not (p.dense and p.sparse) for p in arch.computed_parts().values())
    assert pruned > 0
    # the logit reads the last block's dense output: its sparse operator feeds nothing unless FM is on
    arch = sample(SPACE, random.Random(2))
    arch.blocks[-1].fm = False
    assert arch.computed_parts()[len(arch.blocks)] == Parts(dense=True, sparse=False, to_sparse=False, fm=False)
    plain = net.extract(arch)
    last = plain.blocks[-1]
    assert len(last.sparse) == 0 and last.fm is None and last.to_sparse is None
    other = Arch.from_dict(arch.to_dict())
    other.blocks[-1].sparse_op = "attention" if arch.blocks[-1].sparse_op == "efc" else "efc"
    other.blocks[-1].dense_to_sparse = not arch.blocks[-1].dense_to_sparse
    assert other.network_key() == arch.network_key()
    with_fm = Arch.from_dict(arch.to_dict())
    with_fm.blocks[-1].fm = True
    assert with_fm.network_key() != arch.network_key()
    fm_net = net.extract(with_fm)
    assert count_flops(fm_net, (cat, num))["flops"] > count_flops(plain, (cat, num))["flops"]
    assert sum(p.numel() for p in fm_net.parameters()) > sum(p.numel() for p in plain.parameters())


def test_supernet_gradients_reach_only_the_sampled_path():
    torch.manual_seed(0)
    net = NASRecSupernet(SCHEMA, SPACE)
    arch = sample(SPACE, random.Random(3))
    arch.blocks[0].dense_op = "fc"
    net(*inputs(), arch).sum().backward()
    fc, gating = net.blocks[0].dense["fc"].a, net.blocks[0].dense["gating"].a
    w = arch.blocks[0].dense_dim
    assert fc.weight.grad[:w].abs().sum() > 0
    assert fc.weight.grad[w:].abs().sum() == 0  # rows beyond the sampled width are not used
    assert gating.weight.grad is None or gating.weight.grad.abs().sum() == 0


def test_mutation_changes_one_decision_and_stays_valid():
    rng = random.Random(0)
    arch = sample(SPACE, rng)
    for _ in range(50):
        before = arch.key()
        child = mutate(arch, SPACE, rng)
        assert arch.key() == before
        check(child, SPACE)
        diffs = sum(a != b for pa, pb in zip(arch.blocks, child.blocks)
                    for a, b in zip(vars(pa).values(), vars(pb).values()))
        assert diffs <= 1
    assert Arch.from_dict(arch.to_dict()).key() == arch.key()
    with pytest.raises(ValueError, match="block 2: dense_in"):
        bad = sample(SPACE, rng)
        bad.blocks[1].dense_in = [2]
        check(bad, SPACE)


def test_regularised_evolution_finds_the_optimum_of_a_toy_problem():
    cfg = EvolutionConfig(population=8, sample_size=4, children=2, generations=60, seed=0)
    history = evolve(cfg, lambda r: r.randrange(100), lambda g, r: max(0, min(99, g + r.choice([-3, -1, 1, 3]))),
                     lambda g: None if g > 90 else Scored(g, abs(g - 42), {}), progress=False)
    assert min(s.score for s in history) == 0
    assert all(s.genome <= 90 for s in history)  # budget respected
    assert pareto_front([{"a": 1, "b": 2}, {"a": 2, "b": 1}, {"a": 2, "b": 2}], ["a", "b"]) == [0, 1]


def test_pim_model_roofline_and_capacity():
    cfg = hw.HardwareConfig(batch=10, pim_capacity_mb=1.0)
    ops = [hw.OpCost("emb.f0", 0, 4e6, 4, 64, lookups=True), hw.OpCost("block1.dense", 1000, 4000, 400, 40)]
    host = hw.pim_cost(ops, frozenset(), cfg)
    # embedding on the host: 10 rows of 64 bytes + (4 + 64) · 10 activation bytes at 25.6 GB/s
    emb = (64 * 10 + 68 * 10) / 25.6e9
    dense = max(2 * 1000 * 10 / 200e9, (4000 + 440 * 10) / 25.6e9)
    assert host["latency_s"] == pytest.approx(emb + dense)
    assert host["feasible"] and host["pim_mb"] == 0
    placed = hw.pim_cost(ops, frozenset({"emb.f0"}), cfg)
    assert not placed["feasible"]  # a 4 MB table does not fit in 1 MB
    assert hw.embeddings_in_memory(ops, cfg) == frozenset()
    small = hw.pim_cost(ops, frozenset({"block1.dense"}), cfg)
    link = 440 * 10 / 12.8e9
    assert small["latency_s"] == pytest.approx(emb + max(2e4 / 50e9, 8400 / 200e9) + link)


def test_network_ops_count_the_plain_network():
    torch.manual_seed(0)
    net = NASRecSupernet(SCHEMA, SPACE)
    arch = sample(SPACE, random.Random(5))
    plain = net.extract(arch)
    cat, num = inputs(1)
    ops = hw.network_ops(plain, (cat, num))
    from recarch.cost.flops import count_flops

    assert 2 * sum(op.macs for op in ops) == pytest.approx(count_flops(plain, (cat, num))["flops"])
    assert [op.name for op in ops][:5] == [f"emb.f{i}" for i in range(5)]
    assert sum(op.weight_bytes for op in ops) == 4 * sum(p.numel() for p in plain.parameters())
    table = hw.LatencyTable(batch=8, repeats=2)
    assert table.network_ms(plain) > 0 and len(table.table) == 1 + len(plain.live)


def test_shrinking_never_adds_cost_and_reaches_the_smallest_network():
    from recarch.ctr.space import shrink
    from recarch.cost.flops import count_flops

    torch.manual_seed(0)
    net = NASRecSupernet(SCHEMA, SPACE)
    rng = random.Random(0)
    arch = sample(SPACE, rng, largest=True)
    flops = [count_flops(net.extract(arch), inputs(1))["flops"]]
    for _ in range(60):
        before = arch.key()
        child = shrink(arch, SPACE, rng)
        assert arch.key() == before  # the parent is left as it was (it may be cached under its key)
        arch = child
        check(arch, SPACE)
        flops.append(count_flops(net.extract(arch), inputs(1))["flops"])
    assert all(b <= a for a, b in zip(flops, flops[1:]))
    assert all(b.dense_dim == 8 and b.sparse_dim == 4 and len(b.dense_in) == 1 and b.sparse_op == "efc"
               for b in arch.blocks)


def test_best_placement_beats_every_other_placement_on_its_objective():
    import itertools

    cfg = hw.HardwareConfig(batch=64, pim_capacity_mb=0.02)
    ops = [hw.OpCost("emb.a", 0, 8000, 4, 64, lookups=True), hw.OpCost("emb.b", 0, 30000, 4, 64, lookups=True),
           hw.OpCost("block1.dense", 5000, 20000, 400, 64), hw.OpCost("block1.sparse", 200, 1000, 512, 512),
           hw.OpCost("head", 64, 260, 256, 4)]
    host = hw.pim_cost(ops, frozenset(), cfg)

    def objective(placement):
        c = hw.pim_cost(ops, placement, cfg)
        return c["energy_j"] / host["energy_j"] + c["latency_s"] / host["latency_s"] if c["feasible"] else float("inf")

    best = hw.best_placement(ops, cfg)
    assert hw.pim_cost(ops, best, cfg)["feasible"]
    every = [frozenset(c) for r in range(len(ops) + 1) for c in itertools.combinations([o.name for o in ops], r)]
    assert objective(best) <= min(objective(p) for p in every) + 1e-12
    assert objective(best) <= objective(hw.embeddings_in_memory(ops, cfg))


def test_precise_batch_norm_replaces_the_lagging_running_statistics_with_the_batch_mean():
    from torch import nn

    from recarch.ctr.run import CTREvaluator, CTRTrainer, ctr_train_defaults
    from recarch.ctr.table import CTRData, CTRTable, TrainBatches

    g = np.random.default_rng(0)

    def table(n):
        return CTRTable(g.integers(0, 3, (n, 5)), g.random((n, 2), dtype=np.float32), (g.random(n) < 0.3).astype(np.float32))

    data = CTRData("toy", SCHEMA, table(512), table(128), table(128))
    torch.manual_seed(0)
    model = build_ctr_model(SCHEMA, CTRModelConfig(name="dlrm", embed_dim=4, mlp=[8], bottom_mlp=[8], batch_norm=True,
                                                   dropout=0.5))

    cfg = replace(ctr_train_defaults(), batch_size=64, epochs=1, precise_bn_batches=3, progress=False)
    trainer = CTRTrainer(model, TrainBatches(data.train, 64, cfg.seed), CTREvaluator(data), cfg, log=lambda _: None)
    trainer.train_epoch(1)
    first = model.top[0][1]  # the top MLP's BatchNorm, after the dot products
    assert isinstance(first, nn.BatchNorm1d)
    seen = []
    handle = first.register_forward_hook(lambda m, inputs, out: seen.append(inputs[0].detach().clone()))
    rng_before = torch.get_rng_state()
    trainer.recompute_batch_norm(1)
    handle.remove()
    assert len(seen) == 3 and int(first.num_batches_tracked) == 3 and first.momentum == 0.1
    assert torch.allclose(first.running_mean, torch.stack([x.mean(0) for x in seen]).mean(0), atol=1e-6)
    assert torch.allclose(first.running_var, torch.stack([x.var(0) for x in seen]).mean(0), rtol=1e-5)
    assert torch.equal(torch.get_rng_state(), rng_before)  # dropout ran on a forked RNG


def test_spread_over_front_retrains_across_sizes_not_near_copies_of_the_best():
    from recarch.ctr.selection import spread_over_front

    def scored(name, loss, mflops, distinct=iter([("fc", 8), ("fc", 16), ("fc", 32), ("gating", 8), ("gating", 16)])):
        arch = sample(SPACE, random.Random(0))
        last = arch.blocks[-1]  # reads the raw input only: the other blocks are dead, so (op, width) names the network
        last.dense_op, last.dense_dim = next(distinct)
        last.dense_in = last.binary_in = [0]
        last.fm = False
        return Scored((arch, frozenset()), loss, {"valid_logloss": loss, "mflops": mflops, "name": name})

    # front by FLOPs: s (0.1, 0.40), m (0.5, 0.35), big (1.0, 0.30); b1, b2 are dominated near-copies of big
    pts = [scored("big", 0.30, 1.0), scored("b1", 0.301, 1.1), scored("b2", 0.302, 1.2),
           scored("m", 0.35, 0.5), scored("s", 0.40, 0.1)]
    assert len({p.genome[0].network_key() for p in pts}) == 5
    assert [p.info["name"] for p in spread_over_front(pts, 3)] == ["big", "s", "m"]
    # a short front is filled with the next best scores
    assert [p.info["name"] for p in spread_over_front(pts, 4)] == ["big", "s", "m", "b1"]


def test_an_elastic_linear_on_its_first_columns_equals_it_on_their_indices():
    from recarch.ctr.elastic import ElasticLinear

    torch.manual_seed(0)
    layer, x = ElasticLinear(7, 5), torch.randn(3, 4, requires_grad=True)
    by_prefix, by_index = layer(x, 2, 4), layer(x, 2, torch.arange(4))
    assert torch.equal(by_prefix, by_index) and by_prefix.shape == (3, 2)
    (grad_prefix,) = torch.autograd.grad(by_prefix.sum(), layer.weight)
    (grad_index,) = torch.autograd.grad(by_index.sum(), layer.weight)
    assert torch.equal(grad_prefix, grad_index) and grad_prefix[:, 4:].abs().sum() == 0 and grad_prefix[2:].abs().sum() == 0
    plain = layer.extract(2, 4)
    assert plain.weight.shape == (2, 4) and torch.equal(plain(x), by_prefix)
