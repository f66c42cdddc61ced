"""Evaluation library for sequential recommenders: ranking metrics, candidate protocols and the
leave-one-out `Evaluator` shared by every model and search strategy (DESIGN.md §2)."""
from recarch.evaluation.candidates import (
    PROTOCOLS,
    Candidates,
    SplitView,
    make_candidates,
    sample_negatives,
    split_view,
)
from recarch.evaluation.evaluate import Evaluator, full_ranks, sampled_ranks
from recarch.evaluation.metrics import (
    METRICS,
    metrics_from_ranks,
    mrr_at_k,
    ndcg_at_k,
    rank_of_target,
    recall_at_k,
)

__all__ = [
    "PROTOCOLS",
    "Candidates",
    "SplitView",
    "make_candidates",
    "sample_negatives",
    "split_view",
    "Evaluator",
    "full_ranks",
    "sampled_ranks",
    "METRICS",
    "metrics_from_ranks",
    "mrr_at_k",
    "ndcg_at_k",
    "rank_of_target",
    "recall_at_k",
]
