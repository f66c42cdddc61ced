"""iHAS: gates and estimators, regularisers, mixed-dimension embeddings, clustering, the budget, the
routed ensemble and its retraining (`recarch ihas` end to end: test_ihas_cli.py)."""
import pytest
import torch

from recarch.config import ConfigError
from recarch.ctr.models import CTRModelConfig, FieldEmbedding, build_ctr_model
from recarch.ctr.run import embedding_parameters
from recarch.ctr.table import CTRSchema
from recarch.export import load_program
from recarch.ihas.budget import fit_budget, fit_shared_budget, mean_cost, shared_cost
from recarch.ihas.cluster import (PatternCollector, Patterns, build_router, cluster, group_blocks, group_votes,
                                  kmeans, unique_groups)
from recarch.ihas.embedding import BlockMaskedEmbedding, MixedDimEmbedding, block_columns, field_columns
from recarch.ihas.ensemble import IHASEnsemble, with_mixed_embedding
from recarch.ihas.gates import GateConfig, Gates, active_fraction, bipolar_loss, sparsity_loss
from recarch.ihas.job import load_ihas_config
from recarch.ihas.retrain import GroupsTrainer, distilled

SCHEMA = CTRSchema(fields=["a", "b", "c"], vocab_sizes=[7, 50, 4], numeric=[])


def toy_batch(n=64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    cat = torch.stack([torch.randint(v, (n,), generator=gen) for v in SCHEMA.vocab_sizes], 1)
    return cat, torch.zeros(n, 0)


def test_straight_through_is_exactly_binary_with_gradients_to_the_gate_network():
    torch.manual_seed(0)
    gates = Gates(SCHEMA, 4, GateConfig(estimator="straight_through", init_logit=0.0)).train()
    cat, num = toy_batch()
    z, prob = gates(cat, num)
    assert z.shape == (64, 3, 4) and set(z.unique().tolist()) <= {0.0, 1.0}
    assert 0 < z.mean() < 1 and torch.all((prob > 0) & (prob < 1))
    (z * torch.randn_like(z)).sum().backward()
    grads = [p.grad for p in gates.network.parameters()]
    assert all(g is not None and g.abs().sum() > 0 for g in grads)
    gates.eval()  # deterministic: σ(logit) > 0.5
    z_eval, _ = gates(cat, num)
    assert torch.equal(z_eval.bool(), gates.logits(cat, num) > 0)


def test_hard_concrete_samples_in_training_and_is_deterministic_in_eval():
    torch.manual_seed(0)
    gates = Gates(SCHEMA, 4, GateConfig(estimator="hard_concrete", init_logit=0.5))
    cat, num = toy_batch()
    gates.train()
    a, _ = gates(cat, num)
    b, _ = gates(cat, num)
    assert a.min() >= 0 and a.max() <= 1 and not torch.equal(a, b)
    assert ((a == 0) | (a == 1)).any() and ((a > 0) & (a < 1)).any()  # stretched & clipped: exact 0/1 possible
    gates.eval()
    c, pc = gates(cat, num)
    d, _ = gates(cat, num)
    assert torch.equal(c, d) and set(c.unique().tolist()) <= {0.0, 1.0}
    assert torch.all(pc > torch.sigmoid(gates.logits(cat, num)))  # P(z > 0) of hard concrete exceeds σ(logit)


@pytest.mark.parametrize("target", [0.25, 0.6])
def test_sparsity_regulariser_drives_the_active_fraction_to_the_target(target):
    torch.manual_seed(0)
    gates = Gates(SCHEMA, 4, GateConfig(init_logit=2.0)).train()
    opt = torch.optim.Adam(gates.parameters(), lr=0.05)
    cat, num = toy_batch(256)
    for _ in range(300):
        _, prob = gates(cat, num)
        loss = 5 * sparsity_loss(prob, target) + 0.1 * bipolar_loss(prob)
        opt.zero_grad()
        loss.backward()
        opt.step()
    gates.eval()
    with torch.no_grad():
        prob = gates.probability(gates.logits(cat, num))
    assert abs(float(active_fraction(prob)) - target) < 0.05
    # weighted by vocabulary (the parameter fraction) and one-sided variants
    w = torch.tensor([0.1, 0.8, 0.1])
    p = torch.full((2, 3, 4), 0.5)
    assert float(sparsity_loss(p, 0.3, w)) == pytest.approx(0.04)
    assert float(sparsity_loss(p, 0.7, w, one_sided=True)) == 0.0
    assert float(bipolar_loss(torch.tensor([0.0, 1.0]))) == 0.0


def test_mixed_dim_embedding_counts_parameters_honestly_and_pads_with_zeros():
    columns = [[0, 1, 2, 3], [], [6, 7]]
    emb = MixedDimEmbedding(SCHEMA, 8, columns, init_std=1.0)
    assert emb.embedding_params == 7 * 4 + 50 * 0 + 4 * 2
    assert sum(p.numel() for p in emb.parameters()) == emb.embedding_params
    cat, num = toy_batch()
    tokens = emb(cat, num)
    assert tokens.shape == (64, 3, 8)
    assert torch.all(tokens[:, 0, 4:] == 0) and torch.all(tokens[:, 1] == 0) and torch.all(tokens[:, 2, :6] == 0)
    assert torch.all(tokens[:, 0, :4] != 0)
    # warm start copies the kept columns of the full table
    full = FieldEmbedding(SCHEMA, 8, init_std=1.0)
    warm = MixedDimEmbedding.from_full(full, SCHEMA, columns)
    assert torch.allclose(warm(cat, num)[:, 2, 6:], full(cat, num)[:, 2, 6:])
    # any backbone runs unchanged on top of it; gradients reach only the tables that exist
    for name in ("deepfm", "dcnv2", "dlrm", "autoint"):
        model = build_ctr_model(SCHEMA, CTRModelConfig(name=name, embed_dim=8, mlp=[8], attn_dim=8))
        model.embedding = MixedDimEmbedding(SCHEMA, 8, columns)
        model(cat, num).sum().backward()
    assert block_columns([True, False, True], 2) == [0, 1, 4, 5]
    # from scratch a field's dimensions are the first d_f columns, so any two fields share min(d_a, d_b)
    # columns for DLRM / FM dot products; warm-started they stay where the search model had them
    assert field_columns([False, True], 2, "scratch") == [0, 1] and field_columns([False, True], 2, "search") == [2, 3]


def test_block_masked_embedding_zeroes_the_blocks_that_are_off():
    torch.manual_seed(0)
    base = FieldEmbedding(SCHEMA, 8, init_std=1.0)
    emb = BlockMaskedEmbedding(base, Gates(SCHEMA, 4, GateConfig(init_logit=0.0)), 4).eval()
    cat, num = toy_batch()
    tokens = emb(cat, num)
    pattern, masked = emb.deterministic(cat, num)
    assert torch.equal(tokens, masked)
    mask = pattern.repeat_interleave(2, dim=-1)
    assert torch.all(tokens[~mask] == 0) and torch.all(tokens[mask] == base(cat, num)[mask])
    assert emb.last_prob.shape == (64, 3, 4)


def test_kmeans_recovers_planted_clusters():
    gen = torch.Generator().manual_seed(1)
    centres = torch.tensor([[0.0, 0.0, 0.0], [6.0, 0.0, 0.0], [0.0, 6.0, 6.0]])
    truth = torch.arange(3).repeat_interleave(200)
    x = centres[truth] + 0.5 * torch.randn(600, 3, generator=gen)
    labels, found = kmeans(x, 3, seed=0)
    for c in range(3):  # each planted cluster is exactly one found cluster
        assert len(labels[truth == c].unique()) == 1
    assert len(labels.unique()) == 3
    assert torch.equal(kmeans(x, 3, seed=0)[0], labels)  # seeded: deterministic


def test_embeddings_clustering_holds_only_the_k_means_sample_at_once():
    gen = torch.Generator().manual_seed(2)
    truth = torch.arange(3).repeat_interleave(1000)
    x = torch.tensor([[0.0, 0.0], [8.0, 0.0], [0.0, 8.0]])[truth] + torch.randn(3000, 2, generator=gen)
    patterns = torch.stack([truth == 0, truth == 1, truth == 2], 1).view(3000, 3, 1)  # one block per field
    held = []

    def embeddings(rows):  # batches of 256 rows, as the search model would embed them
        for part in (x if rows is None else x[rows]).split(256):
            held.append(len(part))
            yield part

    result = cluster(Patterns.of(patterns), "embeddings", 3, embeddings, seed=0, sample=300)
    assert max(held) == 256 and sum(held) == 300 + 3000  # the sample, then every row once, batch by batch
    for c in range(3):  # the planted clusters are the groups
        assert len(result.cluster_labels[truth == c].unique()) == 1
    assert len(result.cluster_labels.unique()) == 3 and result.info["router_agreement"] == 1.0


def test_unique_mode_groups_identical_patterns_and_joins_rare_ones_to_the_nearest():
    a = torch.tensor([1, 1, 0, 0], dtype=torch.bool)
    b = torch.tensor([0, 0, 1, 1], dtype=torch.bool)
    rare = torch.tensor([1, 1, 1, 0], dtype=torch.bool)  # Hamming 1 from a, 3 from b
    patterns = torch.stack([a] * 5 + [b] * 3 + [rare])
    stored = Patterns.of(patterns.view(9, 2, 2))
    labels, kept = unique_groups(stored, 2)
    assert labels.tolist() == [0] * 5 + [1] * 3 + [0]
    assert torch.equal(kept, torch.stack([a, b]))
    assert len(unique_groups(stored, 0)[1]) == 3
    result = cluster(stored, "unique", 2)
    assert result.labels.tolist() == labels.tolist() and result.info["router_agreement"] == 1.0
    # group dimensions: blocks kept by at least half of the members
    blocks = group_blocks(stored, labels, 2)
    assert blocks.view(2, 4).int().tolist() == [[1, 1, 0, 0], [0, 0, 1, 1]]


def test_patterns_are_stored_once_per_distinct_pattern_and_give_the_per_row_sums():
    gen = torch.Generator().manual_seed(3)
    rows = torch.rand(1000, 3, 2, generator=gen) < torch.tensor([0.9, 0.5, 0.1]).view(1, 3, 1)
    collector = PatternCollector()
    for part in rows.split(96):  # batch by batch, as the gates yield them
        collector.add(part)
    stored, whole = collector.result(), Patterns.of(rows)
    assert torch.equal(stored.codes, whole.codes) and torch.equal(stored.inverse, whole.inverse)
    assert len(stored.codes) == len(torch.unique(rows.flatten(1), dim=0)) < 1000
    assert torch.equal(torch.cat(list(stored.rows(chunk=100))), rows.flatten(1))  # each row's pattern back
    labels = torch.randint(3, (1000,), generator=gen)
    votes = group_votes(stored, labels, 3)  # the members' mean pattern, counted per distinct pattern
    assert torch.allclose(votes, torch.stack([rows[labels == g].float().mean(0) for g in range(3)]))


def test_a_budget_drops_the_fewest_votes_per_parameter_first():
    blocks = torch.ones(2, 2, 2, dtype=torch.bool)  # 2 groups × 2 fields × 2 blocks, all kept
    votes = torch.tensor([[[1.0, 0.6], [1.0, 0.9]], [[0.5, 1.0], [0.8, 1.0]]])
    share, cost = torch.tensor([0.75, 0.25]), torch.tensor([10.0, 100.0])
    assert mean_cost(blocks, share, cost) == pytest.approx(220)
    # votes per parameter: group 1 field 1 block 0 (0.008) goes first (220 → 195), then group 0 field 1
    # block 1 (0.009; 195 → 120 ≤ 150); the cheap field's half-voted blocks stay
    kept = fit_budget(blocks, votes, share, cost, 150)
    assert kept.int().tolist() == [[[1, 1], [1, 0]], [[1, 1], [0, 1]]]
    assert mean_cost(kept, share, cost) == pytest.approx(120)
    assert torch.equal(fit_budget(blocks, votes, share, cost, 220), blocks)  # within the budget: unchanged
    assert not fit_budget(blocks, votes, share, cost, 0).any()


def test_patterns_mode_and_the_router_agree_on_training_patterns():
    gen = torch.Generator().manual_seed(0)
    protos = torch.tensor([[1, 1, 1, 1, 0, 0], [0, 0, 0, 1, 1, 1], [1, 0, 1, 0, 1, 0]], dtype=torch.bool)
    rows = protos[torch.randint(3, (300,), generator=gen)]
    flips = torch.rand(rows.shape, generator=gen) < 0.05
    patterns = (rows ^ flips).view(300, 3, 2)
    result = cluster(Patterns.of(patterns), "patterns", 3, seed=0)
    assert result.info["num_groups"] == 3 and result.info["router_agreement"] == 1.0
    assert torch.equal(result.router(patterns), result.labels)
    router = build_router(Patterns.of(patterns), result.labels, 3, max_codes=3)  # unseen patterns: nearest known one
    assert len(router.codes) == 3 and router(patterns).shape == (300,)


def test_ensemble_routes_each_instance_to_its_group_model_and_round_trips(tmp_path):
    torch.manual_seed(0)
    cfg = CTRModelConfig(name="deepfm", embed_dim=4, mlp=[8])
    columns = [[[0, 1, 2, 3], [0, 1], [0, 1, 2, 3]], [[0, 1], [0, 1, 2, 3], []]]
    ens = IHASEnsemble(SCHEMA, cfg, GateConfig(init_logit=0.0), 2, columns, num_codes=2).eval()
    for p in ens.parameters():
        torch.nn.init.normal_(p, std=0.5)
    ens.codes.copy_(torch.tensor([[1, 1, 1, 0, 0, 0], [0, 0, 0, 1, 1, 1]], dtype=torch.bool))
    ens.code_group.copy_(torch.tensor([0, 1]))
    cat, num = toy_batch(200)
    group = ens.route(cat, num)
    assert set(group.unique().tolist()) == {0, 1}
    out = ens(cat, num)
    for g in (0, 1):
        rows = group == g
        assert torch.allclose(out[rows], ens.models[g](cat[rows], num[rows]), atol=1e-6)
    sizes = ens.group_embedding_params()
    assert sizes == [7 * 4 + 50 * 2 + 4 * 4 + 61, 7 * 2 + 50 * 4 + 61]  # + DeepFM's first-order table
    ens.save(tmp_path)
    again = IHASEnsemble.load(tmp_path)
    assert torch.equal(again(cat, num), out)
    # one serving program for every batch size, batches that leave a group empty (or hold one row) too
    program = load_program(ens.export_program(tmp_path / "export", (cat[:2], num[:2]))).module()
    for rows in (slice(None), group == 0, group == 1, slice(0, 1)):
        assert torch.allclose(program(cat[rows], num[rows]), torch.sigmoid(out[rows]), atol=1e-6)


def test_shared_tables_are_nested_and_stored_once(tmp_path):
    torch.manual_seed(0)
    cfg = CTRModelConfig(name="deepfm", embed_dim=4, mlp=[8])
    columns = [[[0, 1, 2, 3], [0, 1], [0, 1, 2, 3]], [[0, 1], [0, 1, 2, 3], []]]
    ens = IHASEnsemble(SCHEMA, cfg, GateConfig(init_logit=0.0), 2, columns, num_codes=2, tables="shared").eval()
    a, b = ens.models
    assert a.embedding.tables is b.embedding.tables and a.first_order is b.first_order
    assert [t.embedding_dim for t in a.embedding.tables.values()] == [4, 4, 4]  # the widest group per field
    cat, num = toy_batch(32)
    # group 1 reads the first 2 columns of field a's table: its token is group 0's, cut to 2 columns
    assert torch.equal(b.embedding(cat, num)[:, 0, :2], a.embedding(cat, num)[:, 0, :2])
    assert torch.all(b.embedding(cat, num)[:, 0, 2:] == 0) and torch.all(b.embedding(cat, num)[:, 2] == 0)
    b(cat, num).sum().backward()  # gradients reach only the columns group 1 reads
    grad = a.embedding.tables["0"].weight.grad
    assert grad[:, :2].abs().sum() > 0 and torch.all(grad[:, 2:] == 0) and a.embedding.tables["2"].weight.grad is None
    # per group: the columns it reads (+ the shared first order); the ensemble stores each table once
    assert ens.group_embedding_params() == [7 * 4 + 50 * 2 + 4 * 4 + 61, 7 * 2 + 50 * 4 + 61]
    assert embedding_parameters(ens) == 7 * 4 + 50 * 4 + 4 * 4 + 61 + ens.gate_embedding_params()
    ens.codes.copy_(torch.tensor([[1, 1, 1, 0, 0, 0], [0, 0, 0, 1, 1, 1]], dtype=torch.bool))
    ens.code_group.copy_(torch.tensor([0, 1]))
    out = ens(cat, num)
    ens.save(tmp_path)
    again = IHASEnsemble.load(tmp_path)
    assert again.models[0].embedding.tables is again.models[1].embedding.tables
    assert torch.equal(again(cat, num), out)
    with pytest.raises(ValueError, match="first d_f columns"):  # a shared table serves prefixes only
        MixedDimEmbedding(SCHEMA, 4, [[2, 3], [0], [0]], tables=a.embedding.tables)


def test_a_one_group_shared_ensemble_starts_as_a_lone_model_of_the_same_dims():
    """Paired comparison: from one seed, iHAS with one group and the AutoDim-like baseline of the same
    dims start from the same weights and leave the random stream (dropout, later draws) in the same state."""
    cfg = CTRModelConfig(name="deepfm", embed_dim=4, mlp=[8])
    columns = [[0, 1, 2, 3], [0, 1], []]
    torch.manual_seed(7)
    lone = with_mixed_embedding(build_ctr_model(SCHEMA, cfg), SCHEMA, cfg, columns)
    after_lone = torch.rand(3)
    torch.manual_seed(7)
    ens = IHASEnsemble(SCHEMA, cfg, GateConfig(), 2, [columns], num_codes=1, tables="shared")
    assert torch.equal(torch.rand(3), after_lone)
    ours, theirs = ens.models[0].state_dict(), lone.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_groups_trainer_loss_is_the_mean_of_every_group_model_on_every_row():
    from recarch.ctr.table import CTRTable, TrainBatches
    from recarch.train import TrainConfig
    torch.manual_seed(0)
    columns = [[[0, 1, 2, 3], [0, 1], [0, 1, 2, 3]], [[0, 1], [0, 1, 2, 3], []]]
    ens = IHASEnsemble(SCHEMA, CTRModelConfig(name="dlrm", embed_dim=4, mlp=[8]), GateConfig(), 2, columns,
                       num_codes=1, tables="shared").eval()  # eval: no dropout, so the two passes agree
    cat, num = toy_batch(50)
    label = (torch.arange(50) % 3 == 0).float()
    table = CTRTable(cat.numpy(), num.numpy(), label.numpy())
    trainer = GroupsTrainer(ens, TrainBatches(table, 50, 0), None, TrainConfig(valid_protocol="ctr", valid_metric="auc"))
    expected = sum(torch.nn.functional.binary_cross_entropy_with_logits(m(cat, num), label) for m in ens.models) / 2
    assert torch.allclose(trainer.loss(cat, num, label), expected)


def test_distillation_trains_against_the_teachers_soft_labels():
    from recarch.ctr.run import CTRTrainer
    from recarch.ctr.table import CTRData, CTRTable, TrainBatches, batches
    from recarch.train import TrainConfig
    torch.manual_seed(0)
    cat, num = toy_batch(40)
    label = (torch.arange(40) % 4 == 0).float()
    table = CTRTable(cat.numpy(), num.numpy(), label.numpy())
    data = CTRData("toy", SCHEMA, table, table, table)
    cfg = CTRModelConfig(name="dlrm", embed_dim=4, mlp=[8])
    teacher, student = build_ctr_model(SCHEMA, cfg).eval(), build_ctr_model(SCHEMA, cfg).eval()
    with torch.no_grad():
        soft = torch.sigmoid(teacher(cat, num))
    assert distilled(data, teacher, 0.0, 16) is data
    taught = distilled(data, teacher, 0.25, 16)  # batches of 16: the teacher scores every training row
    assert torch.allclose(torch.from_numpy(taught.train.label), 0.75 * label + 0.25 * soft, atol=1e-6)
    assert taught.valid is data.valid and taught.test is data.test  # evaluation keeps the labels
    # the trainer's loss on a distilled batch: (1 − α)·BCE(label) + α·BCE(teacher's probability)
    trainer = CTRTrainer(student, TrainBatches(taught.train, 40, 0), None, TrainConfig(valid_protocol="ctr", valid_metric="auc"))
    batch_cat, batch_num, target = next(batches(taught.train, 40))  # in order: the rows of label and soft
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    logits = student(batch_cat, batch_num)
    assert torch.allclose(trainer.loss(batch_cat, batch_num, target), 0.75 * bce(logits, label) + 0.25 * bce(logits, soft))


def test_a_shared_budget_narrows_the_widest_groups_of_the_cheapest_field():
    blocks = torch.ones(2, 2, 2, dtype=torch.bool)
    blocks[1, 0, 1] = False  # group 1 keeps one block of field 0
    votes = torch.tensor([[[1.0, 0.6], [1.0, 0.9]], [[0.5, 1.0], [0.8, 1.0]]])
    cost = torch.tensor([10.0, 100.0])
    assert shared_cost(blocks, cost) == pytest.approx(2 * 10 + 2 * 100)
    # field 0: only group 0 is at its widest, losing 0.6 votes per 10 parameters (0.06); field 1: both
    # groups, losing 0.9 + 0.8 per 100 (0.017), so field 1 narrows first: 220 → 120
    kept = fit_shared_budget(blocks, votes, cost, 150)
    assert kept.int().tolist() == [[[1, 1], [1, 0]], [[1, 0], [0, 1]]]
    assert shared_cost(kept, cost) == pytest.approx(120)
    # below 120: field 1 again (2 votes per 100 parameters against field 0's 0.6 per 10): 120 → 20
    kept = fit_shared_budget(blocks, votes, cost, 115)
    assert kept.int().tolist() == [[[1, 1], [0, 0]], [[1, 0], [0, 0]]]
    assert not fit_shared_budget(blocks, votes, cost, 0).any()


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="blocks"):
        load_ihas_config(sets=["blocks=3"])  # embed_dim 10 is not divisible into 3 blocks
    with pytest.raises(ConfigError, match="model.name"):
        load_ihas_config(sets=["model.name=nasrec"])
    with pytest.raises(ConfigError, match="cluster_mode"):
        load_ihas_config(sets=["cluster_mode=kmeans"])
    with pytest.raises(ConfigError, match="budget"):
        load_ihas_config(sets=["budget=1.5"])
    with pytest.raises(ConfigError, match="tables"):
        load_ihas_config(sets=["tables=shared", "retrain_init=search"])
    with pytest.raises(ConfigError, match="distill"):
        load_ihas_config(sets=["distill=1.5"])


def test_groups_that_would_retrain_the_same_model_are_merged():
    from recarch.ihas.cluster import merge_identical
    patterns = torch.tensor([[1, 0, 1, 1]] * 4 + [[0, 1, 1, 1]] * 3 + [[1, 1, 0, 0]] * 2, dtype=torch.bool).view(9, 2, 2)
    result = cluster(Patterns.of(patterns), "unique", 3)
    assert result.info["num_groups"] == 3
    merged = merge_identical(result, result.blocks.sum(-1))  # groups 0 and 1 both keep 1 + 2 blocks
    assert merged.info["num_groups"] == 2 and merged.labels.tolist() == [0] * 7 + [1] * 2
    assert torch.equal(merged.router(patterns), merged.labels)
    assert merge_identical(result, result.blocks).info["num_groups"] == 3  # blocks differ: kept apart
