"""Training the CTR supernet: the sub-networks each step draws (one random path, or the sandwich rule)
and the loss a step minimises."""
import pytest
import torch

from recarch.ctr.supernet import NASRecSupernet

from test_ctr_models import SCHEMA, SPACE, inputs


def test_path_sampler_state_resumes_the_same_paths():
    from recarch.ctr.supernet_training import PathSampler

    a = PathSampler(SPACE, seed=7, warmup_steps=4)
    [a.next(step) for step in range(3)]
    b = PathSampler(SPACE, seed=0, warmup_steps=4)
    b.load_state_dict(a.state_dict())
    assert [a.next(s).key() for s in range(3, 9)] == [b.next(s).key() for s in range(3, 9)]
    first = PathSampler(SPACE, 1, warmup_steps=10).next(0)  # at step 0 of the warm-up: the largest path
    assert all(b.dense_dim == 32 and b.sparse_dim == 8 and b.dense_to_sparse and b.fm for b in first.blocks)


def test_sandwich_rule_draws_the_largest_the_smallest_and_random_paths_each_step():
    from recarch.ctr.search_config import CTRSupernetConfig
    from recarch.cost.flops import count_flops
    from recarch.ctr.supernet_training import FixedPath, PathSampler

    rule = CTRSupernetConfig(rule="sandwich", random_paths=2)
    a = PathSampler(SPACE, seed=3, warmup_steps=0, supernet=rule)
    largest, smallest, *drawn = a.paths(0)
    assert len(drawn) == 2
    for i, (big, small) in enumerate(zip(largest.blocks, smallest.blocks), 1):
        assert (big.dense_dim, big.sparse_dim, big.dense_to_sparse, big.fm) == (32, 8, True, True)
        assert big.dense_in == big.sparse_in == list(range(i))  # SPACE.max_inputs ≥ its 4 blocks
        assert (small.dense_dim, small.sparse_dim, small.dense_to_sparse, small.fm) == (8, 4, False, False)
        assert small.dense_in == small.sparse_in == [i - 1]
    net = NASRecSupernet(SCHEMA, SPACE)
    example = (torch.zeros(1, SCHEMA.num_fields, dtype=torch.long), torch.zeros(1, 2))
    flops = [count_flops(FixedPath(net, arch), example)["flops"] for arch in (largest, smallest, *drawn)]
    assert flops[1] < min(flops[2:]) and flops[0] > max(flops[2:])
    b = PathSampler(SPACE, seed=0, warmup_steps=0, supernet=rule)
    b.load_state_dict(a.state_dict())
    assert [[x.key() for x in a.paths(s)] for s in range(1, 4)] == [[x.key() for x in b.paths(s)] for s in range(1, 4)]


def test_a_sandwich_step_minimises_the_mean_loss_of_its_paths_each_run_alone():
    import torch.nn.functional as F

    from recarch.ctr.search_config import CTRSupernetConfig
    from recarch.ctr.supernet_training import FixedPath, PathSampler, SupernetTrainer
    from recarch.train.distributed import Dist

    net = NASRecSupernet(SCHEMA, SPACE)
    sampler = PathSampler(SPACE, seed=5, warmup_steps=0, supernet=CTRSupernetConfig(rule="sandwich", random_paths=1))
    trainer = SupernetTrainer.__new__(SupernetTrainer)  # the step's loss needs the model, hooks, step and dist only
    trainer.model, trainer.hooks, trainer.state, trainer.dist, trainer.device = net, sampler, {"step": 0}, Dist(), "cpu"
    cat, num = inputs(64)
    label = torch.randint(2, (64,), generator=torch.Generator().manual_seed(1)).float()
    state = sampler.state_dict()
    loss = trainer.step_loss(cat, num, label)
    sampler.load_state_dict(state)
    archs = sampler.paths(0)
    assert len(archs) == 3 and trainer.model is net
    expected = sum(F.binary_cross_entropy_with_logits(FixedPath(net, a)(cat, num), label) for a in archs) / 3
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
