"""Ranking metrics on hand-computed cases: ranks with ties and masks, Recall/MRR/NDCG at K."""
import math

import pytest
import torch

from recarch.evaluation.metrics import metrics_from_ranks, mrr_at_k, ndcg_at_k, rank_of_target, recall_at_k

INF = float("inf")


def test_rank_and_metrics_of_the_worked_example():
    # target 0.9 is beaten by both 0.95s -> rank 2
    ranks = rank_of_target(torch.tensor([[0.9, 0.5, 0.95, 0.95]]), 0)
    assert ranks.tolist() == [2]
    assert recall_at_k(ranks, 1).item() == 0.0
    assert recall_at_k(ranks, 5).item() == 1.0
    assert ndcg_at_k(ranks, 5).item() == pytest.approx(1 / math.log2(4)) == 0.5
    assert mrr_at_k(ranks, 5).item() == pytest.approx(1 / 3)
    assert ndcg_at_k(ranks, 2).item() == 0.0 and mrr_at_k(ranks, 2).item() == 0.0


def test_ties_count_against_the_model():
    assert rank_of_target(torch.tensor([[0.5, 0.5, 0.1]]), 0).tolist() == [1]
    # a constant model gets the worst rank, so it scores 0 ...
    r = rank_of_target(torch.ones(2, 101), 0)
    assert r.tolist() == [100, 100]
    zeros = {f"{m}@{k}": 0.0 for k in (5, 10, 20) for m in ("recall", "mrr", "ndcg")}
    assert metrics_from_ranks(r, (5, 10, 20)) == zeros
    # ... unless the target is the only candidate
    assert rank_of_target(torch.ones(1, 1), 0).tolist() == [0]


def test_masked_candidates_never_count():
    s = torch.tensor([[0.2, -INF, 0.3, -INF], [-INF, 0.1, -INF, 0.3], [INF, 5.0, 1e30, -INF]])
    # row 0: only 0.3 beats it; row 1: the target itself is masked -> behind both unmasked items;
    # row 2: +inf target is first
    assert rank_of_target(s, 0).tolist() == [1, 2, 0]


def test_per_row_target_columns():
    s = torch.tensor([[0.1, 0.9, 0.5], [0.3, 0.2, 0.1]])
    assert rank_of_target(s, torch.tensor([2, 0])).tolist() == [1, 0]
    assert rank_of_target(s, torch.tensor([0, 2])).tolist() == [2, 2]


def test_metric_means_over_users():
    m = metrics_from_ranks(torch.tensor([0, 2, 9, 25]), ks=(5, 10, 20))
    assert m["recall@5"] == pytest.approx(2 / 4)
    assert m["recall@10"] == pytest.approx(3 / 4)
    assert m["recall@20"] == pytest.approx(3 / 4)
    assert m["mrr@5"] == pytest.approx((1 + 1 / 3) / 4)
    assert m["mrr@10"] == pytest.approx((1 + 1 / 3 + 1 / 10) / 4)
    assert m["ndcg@5"] == pytest.approx((1 + 0.5) / 4)
    assert m["ndcg@10"] == pytest.approx((1 + 0.5 + 1 / math.log2(11)) / 4)
    assert sorted(m) == sorted(f"{n}@{k}" for n in ("recall", "mrr", "ndcg") for k in (5, 10, 20))


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="NaN"):
        rank_of_target(torch.tensor([[float("nan"), 1.0]]), 0)
    with pytest.raises(ValueError, match="matrix"):
        rank_of_target(torch.tensor([1.0, 2.0]), 0)
    with pytest.raises(ValueError, match="positive"):
        metrics_from_ranks(torch.tensor([0]), ks=(0,))
