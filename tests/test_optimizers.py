"""Row-wise (sparse) embedding updates: what they change, what they keep, and their checkpoints."""
import copy

import pytest
import torch

from recarch.config import ConfigError
from recarch.ctr.models import CTRModelConfig, build_ctr_model
from recarch.ctr.table import CTRSchema
from recarch.run import load_run_config
from recarch.train import TrainConfig
from recarch.train.optimizers import JointOptimizer, build_optimizer

SCHEMA = CTRSchema(fields=["user", "item", "city"], vocab_sizes=[50, 40, 7], numeric=[])


def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_ctr_model(SCHEMA, CTRModelConfig(name="deepfm", embed_dim=4, mlp=[8], dropout=0.0, batch_norm=False))


def batch(rows, seed) -> tuple:
    g = torch.Generator().manual_seed(seed)
    cat = torch.stack([torch.randint(0, n, (rows,), generator=g) for n in SCHEMA.vocab_sizes], 1)
    return cat, torch.zeros(rows, 0), torch.randint(0, 2, (rows,), generator=g).float()


def step(net, opt, cat, num, label) -> None:
    loss = torch.nn.functional.binary_cross_entropy_with_logits(net(cat, num), label)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def table(net) -> torch.Tensor:
    return net.embedding.table.weight.detach().clone()


def test_sparse_sgd_takes_the_dense_step_exactly():
    dense, sparse = model(), model()
    opts = [build_optimizer(m, list(m.parameters()), TrainConfig(optimizer="sgd", lr=0.3, sparse_embeddings=s))
            for m, s in ((dense, False), (sparse, True))]
    assert isinstance(opts[1], JointOptimizer) and sparse.embedding.table.sparse
    for seed in range(3):
        for m, o in zip((dense, sparse), opts):
            step(m, o, *batch(16, seed))
    for (name, a), b in zip(dense.state_dict().items(), sparse.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)


def test_sparse_adam_moves_only_the_rows_a_batch_looks_up():
    dense, sparse = model(), model()
    opts = [build_optimizer(m, list(m.parameters()), TrainConfig(lr=0.01, sparse_embeddings=s))
            for m, s in ((dense, False), (sparse, True))]
    first, second = batch(8, 0), batch(8, 1)
    for m, o in zip((dense, sparse), opts):
        step(m, o, *first)
    before = [table(dense), table(sparse)]
    for m, o in zip((dense, sparse), opts):
        step(m, o, *second)
    offsets = dense.embedding.offsets
    looked_up = torch.zeros(len(before[0]), dtype=torch.bool)
    looked_up[(second[0] + offsets).flatten()] = True
    only_first = torch.zeros_like(looked_up)
    only_first[(first[0] + offsets).flatten()] = True
    only_first &= ~looked_up
    assert only_first.any()
    moved = [(table(m) != b).any(1) for m, b in zip((dense, sparse), before)]
    assert moved[1].equal(looked_up)  # lazy: a row's step needs its own gradient
    assert moved[0][only_first].all()  # dense Adam's momentum carries rows the batch did not touch


def test_a_restored_joint_optimizer_continues_exactly():
    cfg = TrainConfig(lr=0.01, sparse_embeddings=True)
    a = model()
    opt_a = build_optimizer(a, list(a.parameters()), cfg)
    step(a, opt_a, *batch(16, 0))
    saved_model, saved_opt = copy.deepcopy(a.state_dict()), copy.deepcopy(opt_a.state_dict())
    step(a, opt_a, *batch(16, 1))
    b = model()
    opt_b = build_optimizer(b, list(b.parameters()), cfg)
    b.load_state_dict(saved_model)
    opt_b.load_state_dict(saved_opt)
    step(b, opt_b, *batch(16, 1))
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), name


def test_sparse_updates_refuse_what_they_cannot_do():
    with pytest.raises(ConfigError, match="embedding_weight_decay=0"):
        TrainConfig(sparse_embeddings=True, weight_decay=1e-4).validate()
    TrainConfig(sparse_embeddings=True, weight_decay=1e-4, embedding_weight_decay=0.0).validate()
    with pytest.raises(ConfigError, match="only under train.loss: sampled_softmax"):
        load_run_config(sets=["train.sparse_embeddings=true"])  # full cross entropy reads every row
    with pytest.raises(ConfigError, match="model fdsa"):
        load_run_config(sets=["train.sparse_embeddings=true", "train.loss=sampled_softmax", "model.name=fdsa"])
    load_run_config(sets=["train.sparse_embeddings=true", "train.loss=sampled_softmax"])
