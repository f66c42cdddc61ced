"""NASRec's final-layer fine-tune before a candidate is scored (recarch.ctr.finetune), on training rows or
on held-out validation rows (``finetune_from: valid``)."""
import random

import numpy as np
import torch
import torch.nn.functional as F

from recarch.ctr.finetune import finetune_head, finetune_rows, held_out_split
from recarch.ctr.search import CandidateScorer
from recarch.ctr.search_config import load_search_config
from recarch.ctr.space import SpaceConfig, sample
from recarch.ctr.supernet import NASRecSupernet
from recarch.ctr.table import CTRData, CTRSchema, CTRTable

SCHEMA = CTRSchema([f"f{i}" for i in range(5)], [7, 3, 9, 4, 5], ["n1", "n2"])
SPACE = SpaceConfig(blocks=4, dense_dims=[8, 16, 32], sparse_dims=[4, 8])


def inputs(n=6):
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 3, (n, 5), generator=g), torch.rand(n, 2, generator=g)


def table(n: int, seed: int) -> CTRTable:
    g = np.random.default_rng(seed)
    return CTRTable(g.integers(0, 3, (n, 5)), g.random((n, 2), dtype=np.float32), (g.random(n) < 0.3).astype(np.float32))


def test_the_final_layer_fine_tune_fits_the_head_alone_to_the_candidates_features():
    """NASRec's scoring: full-batch steps on the head lower the training log loss of those rows and move
    no other weight; 0 steps leave the extracted network as it was."""
    torch.manual_seed(0)
    net = NASRecSupernet(SCHEMA, SPACE).eval()
    arch = sample(SPACE, random.Random(3))
    cat, num = inputs(256)
    label = (cat[:, 0] == 1).float()  # a rule the random head does not know
    table = CTRTable(cat.numpy(), num.numpy(), label.numpy())
    rows = finetune_rows(table, 200, seed=0)
    assert len(rows[2]) == 200 and len(set(map(tuple, rows[0].tolist()))) > 1
    before = net.extract(arch)
    same = finetune_head(net.extract(arch), rows, 0, 0.05)
    assert all(torch.equal(a, b) for a, b in zip(before.state_dict().values(), same.state_dict().values()))
    tuned = finetune_head(net.extract(arch), rows, 100, 0.05)
    changed = {k for k, v in tuned.state_dict().items() if not torch.equal(v, before.state_dict()[k])}
    assert changed == {"head.weight", "head.bias"}
    loss = [F.binary_cross_entropy_with_logits(m(rows[0], rows[1]), rows[2]).item() for m in (before, tuned)]
    assert loss[1] < loss[0] - 0.05


def test_held_out_split_fits_on_at_most_half_the_rows_and_scores_on_the_others():
    valid = table(100, 1)
    valid.cat[:, 0] = np.arange(100)  # each row named by its first column
    fit, held_out = held_out_split(valid, 80, seed=0)
    assert len(fit[2]) == 50 and len(held_out) == 50  # 80 asked for, half given
    assert sorted(fit[0][:, 0].tolist() + held_out.cat[:, 0].tolist()) == list(range(100))
    fit, held_out = held_out_split(valid, 30, seed=0)
    assert (len(fit[2]), len(held_out)) == (30, 70)


def test_a_scorer_fine_tuning_on_validation_rows_scores_on_the_rest():
    data = CTRData("toy", SCHEMA, table(256, 0), table(120, 1), table(64, 2))
    net = NASRecSupernet(SCHEMA, SPACE).eval()
    arch = sample(SPACE, random.Random(3))
    sets = ["finetune_steps=20", "finetune_rows=40", "latency_table=false", "calibration_rows=64"]
    on_train = CandidateScorer(net, data, load_search_config(sets=sets), None, "arch")
    held = CandidateScorer(net, data, load_search_config(sets=[*sets, "finetune_from=valid"]), None, "arch")
    assert len(on_train.evaluator.data.valid) == 120 and len(held.evaluator.data.valid) == 80
    assert len(held.finetune[2]) == 40
    assert held.arch_info(arch)["valid_logloss"] != on_train.arch_info(arch)["valid_logloss"]
    # scored without a fine-tune, on the same held-out rows: what the fine-tune adds is measured on equal rows
    inherited = CandidateScorer(net, data, load_search_config(sets=[*sets[1:], "finetune_from=valid"]), None, "arch")
    assert inherited.finetune is None
    assert np.array_equal(inherited.evaluator.data.valid.cat, held.evaluator.data.valid.cat)

