"""Weight optimizers: the registry, parameter groups with FuxiCTR's embedding decay, and row-wise
updates of embedding tables.

Row-wise ("lazy") updates: with ``train.sparse_embeddings`` every ``nn.Embedding`` table of a CTR model
(of a sequential model: the tables it names, SASRec's item table under sampled softmax) gets a sparse
gradient holding only the rows the batch looked up, and a sparse optimizer (SparseAdam
for Adam) updates those rows alone; the other weights keep the dense optimizer. A dense Adam step
reads and writes every row of every table and its two moments, so over hashed CTR tables of millions
of rows it costs more than the network; the row-wise step costs what the batch touches. It is not the
same optimizer: a row's moments only advance when the row is looked up (as TensorFlow's LazyAdam and
torch's SparseAdam do), so it is a choice, off by default.
"""
from __future__ import annotations

from typing import Dict, List, Sequence

import torch


OPTIMIZERS = {"adam": torch.optim.Adam, "adagrad": torch.optim.Adagrad, "sgd": torch.optim.SGD}
SPARSE = {"adam": torch.optim.SparseAdam, "adagrad": torch.optim.Adagrad, "sgd": torch.optim.SGD}  # take sparse gradients
FUSED = {"adam", "adagrad"}  # one kernel over all parameters: torch's CPU default loops per tensor (Adam 6.4 ms → 0.55 ms a step over a 12k×64 table)


def make_optimizer(name: str, groups: List[Dict], lr: float) -> torch.optim.Optimizer:
    """The optimizer ``name`` (see OPTIMIZERS) over parameter ``groups``, fused where torch has it."""
    return OPTIMIZERS[name](groups, lr=lr, **({"fused": True} if name in FUSED else {}))


def embedding_tables(model: torch.nn.Module) -> List[torch.nn.Embedding]:
    return [m for m in model.modules() if isinstance(m, torch.nn.Embedding)]


def decay_groups(model: torch.nn.Module, params: List[torch.nn.Parameter], cfg) -> List[Dict]:
    """Optimizer parameter groups: ``cfg.weight_decay`` on every parameter, except the tables of the
    model's ``nn.Embedding`` modules, which get ``cfg.embedding_weight_decay`` when it is set. With Adam
    this is the gradient of FuxiCTR's embedding regulariser (λ/2)·‖E‖² over whole tables."""
    if cfg.embedding_weight_decay is None:
        return [{"params": params, "weight_decay": cfg.weight_decay}]
    tables = {id(m.weight) for m in embedding_tables(model)}
    groups = [{"params": [p for p in params if id(p) not in tables], "weight_decay": cfg.weight_decay},
              {"params": [p for p in params if id(p) in tables], "weight_decay": cfg.embedding_weight_decay}]
    return [g for g in groups if g["params"]]


class JointOptimizer:
    """Several optimizers over disjoint parameters, stepped, zeroed and checkpointed as one."""

    def __init__(self, parts: Sequence[torch.optim.Optimizer]) -> None:
        self.parts = list(parts)

    @property
    def param_groups(self) -> List[Dict]:
        return [g for o in self.parts for g in o.param_groups]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for o in self.parts:
            o.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        for o in self.parts:
            o.step()

    def state_dict(self) -> Dict:
        return {"parts": [o.state_dict() for o in self.parts]}

    def load_state_dict(self, state: Dict) -> None:
        for o, s in zip(self.parts, state["parts"], strict=True):
            o.load_state_dict(s)


def build_optimizer(model: torch.nn.Module, params: List[torch.nn.Parameter], cfg):
    """The weight optimizer of a run (``cfg``: its TrainConfig). With ``cfg.sparse_embeddings`` the
    model's embedding tables among ``params`` are switched to sparse gradients and given the sparse
    counterpart of ``cfg.optimizer``; TrainConfig.validate has made sure no weight decay applies to them."""
    groups = decay_groups(model, params, cfg)
    wanted = {id(p) for p in params}
    # a sequential model names its own (SequentialRecommender.row_wise_tables); a CTR model offers every table
    eligible = model.row_wise_tables() if hasattr(model, "row_wise_tables") else embedding_tables(model)
    tables = [m for m in eligible if id(m.weight) in wanted] if cfg.sparse_embeddings else []
    if not tables:
        return make_optimizer(cfg.optimizer, groups, cfg.lr)
    for m in tables:
        m.sparse = True
    sparse = {id(m.weight) for m in tables}
    dense = [{**g, "params": [p for p in g["params"] if id(p) not in sparse]} for g in groups]
    dense = [g for g in dense if g["params"]]
    parts = [make_optimizer(cfg.optimizer, dense, cfg.lr)] if dense else []
    parts.append(SPARSE[cfg.optimizer]([m.weight for m in tables], lr=cfg.lr))
    return JointOptimizer(parts)
