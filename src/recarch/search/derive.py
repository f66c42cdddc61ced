"""Phase 2: which path of the supernet becomes the derived model, within the user's budget.

``controllers`` (EASRec Eq. 18): argmax α and argmax β; under a budget, the most probable (k, L) that
fits. ``validation``: the path whose validation score on the supernet's own weights is highest among
those that fit (once-for-all's and BigNAS's search over a trained supernet; its scores rank paths
only when the weights were trained path by path: ``supernet.rule: sandwich``).
"""
from __future__ import annotations

from typing import List, Optional, Sequence

import torch

from recarch.search.supernet import SubnetPath


def fitting_paths(layer_cost: Sequence[float], n_layers: int, limit: Optional[float]) -> List[SubnetPath]:
    """Every (k, L) whose encoder cost, L · cost of one layer of candidate k, is within ``limit``."""
    paths = [(k, depth) for k in range(len(layer_cost)) for depth in range(1, n_layers + 1)
             if limit is None or layer_cost[k] * depth <= limit]
    if not paths:
        raise ValueError(f"no architecture in the search space fits the budget ({limit:.4g} for the encoder; "
                         f"one layer costs {min(layer_cost):.4g} at the smallest)")
    return paths


def most_probable(alpha: torch.Tensor, beta: torch.Tensor, paths: Sequence[SubnetPath]) -> SubnetPath:
    """The path of highest softmax(α)_k · softmax(β)_L (with every path allowed: argmax α, argmax β)."""
    w, v = torch.softmax(alpha.detach(), 0), torch.softmax(beta.detach(), 0)
    return max(paths, key=lambda p: float(w[p[0]] * v[p[1] - 1]))


def choose(alpha: torch.Tensor, beta: torch.Tensor, layer_cost: Sequence[float], limit: Optional[float]) -> SubnetPath:
    """EASRec's derive (Eq. 18) within ``limit`` on the encoder's cost."""
    return most_probable(alpha, beta, fitting_paths(layer_cost, len(beta), limit))
