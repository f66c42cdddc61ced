"""Which searched candidates are retrained from scratch, and which retrained one wins.

The supernet's inherited-weight scores barely separate the best few and favour large sub-networks, so
the search retrains ``top_k`` candidates chosen by a selector (``TOP_K_SELECTORS``) and picks the winner
on the retrained runs (``retrained_merit``).
"""
from __future__ import annotations

from typing import Any, Dict, List

import numpy as np

from recarch.ctr.evolution import Scored, pareto_front


def distinct_best(history: List[Scored], k: int) -> List[Scored]:
    """The ``k`` best-scored candidates that are distinct networks (or placements)."""
    seen, best = set(), []
    for s in sorted(history, key=lambda s: s.score):
        key = (s.genome[0].network_key(), tuple(sorted(s.genome[1])))
        if key not in seen:
            seen.add(key)
            best.append(s)
        if len(best) == k:
            break
    return best


def retrained_merit(result: Dict[str, Any]) -> float:
    """How a retrained candidate ranks for the winner: its mean validation AUC over the seeds, less the
    hardware term its search score carried (λ_hw · log relative energy × latency; zero in ``arch``
    mode), so that co-design keeps the trade-off it searched under when it picks among sizes."""
    return result["valid"]["auc"] - (result["search"]["score"] - result["search"]["valid_logloss"])


def spread_over_front(history: List[Scored], k: int) -> List[Scored]:
    """The best-scored distinct candidate, then candidates spread evenly (by rank in FLOPs, smallest
    first) over the Pareto front of validation log loss × FLOPs, then the next best scores if the front
    is short. Inherited weights favour large sub-networks (on ml-100k-ctr, co-design candidates of
    0.006–0.027 MFLOPs score 0.749–0.766 validation AUC on inherited weights and 0.775–0.776 retrained,
    above every large one), so the retraining budget goes across sizes, not to k near-copies of the largest."""
    distinct = distinct_best(history, len(history))
    if not distinct:
        return []
    front_idx = pareto_front([{"loss": s.info["valid_logloss"], "mflops": s.info["mflops"]} for s in distinct], ["loss", "mflops"])
    front = sorted((distinct[i] for i in front_idx), key=lambda s: s.info["mflops"])
    spread = [front[int(round(i))] for i in np.linspace(0, len(front) - 1, min(k, len(front)))]
    picks: List[Scored] = []
    for s in [distinct[0], *spread, *distinct]:
        if len(picks) == k:
            break
        if all(s is not p for p in picks):
            picks.append(s)
    return picks


TOP_K_SELECTORS = {"score": distinct_best, "front": spread_over_front}
