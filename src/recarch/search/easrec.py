"""EASRec's architecture step (Eq. 17, Algorithm 1): first-order bilevel optimisation of the
controllers (α, β) under the resource constraint, kept apart from the weight loop as a TrainHooks.

``arch_data: valid`` (the paper, default): each step draws a validation batch (a user's training part
→ their validation item). ``arch_data: train`` with ``arch_every: 10`` is the released code's scheme:
the controllers step on the current training batch every 10th step. τ anneals linearly per step.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Literal

import numpy as np
import torch

from recarch.config import ConfigError
from recarch.data.sequences import SequenceDataset, windows
from recarch.devices import move
from recarch.registry import Registry
from recarch.search.constraint import ResourceConstraint
from recarch.search.supernet import EASRecSupernet
from recarch.train.distributed import Dist
from recarch.train.trainer import TrainHooks


@dataclass
class ArchitectConfig:
    lam: float = 0.1  # λ, the resource trade-off (Table II; the released code's hyper_flops)
    cost: Literal["flops", "latency"] = "flops"  # what F_k in Eq. 15 measures
    arch_lr: float = 1e-3
    arch_data: Literal["valid", "train"] = "valid"
    arch_every: int = 1
    batch_size: int = 256  # validation batch for the architecture step
    tau_start: float = 1.0
    tau_decay: float = 5e-5  # per training step (released code)
    tau_min: float = 0.01
    # stop the search once argmax (α, β) — the architecture derive would pick — has stayed the same
    # for this many epochs (0: off, the paper); DARTS+'s "stable ranking" criterion (Liang et al., 2019)
    arch_patience: int = 0
    # train the weights alone for this many epochs before the first architecture step, so that the
    # controllers compare trained candidates, not random ones (FBNet's and ProxylessNAS's warm-up)
    warmup_epochs: int = 0

    def validate(self) -> None:
        if self.arch_every < 1 or self.batch_size < 1 or self.arch_patience < 0 or self.warmup_epochs < 0:
            raise ConfigError("architect.arch_every and architect.batch_size must be ≥ 1, architect.arch_patience "
                              "and architect.warmup_epochs ≥ 0")
        if not 0 < self.tau_min <= self.tau_start:
            raise ConfigError("search: expected 0 < tau_min ≤ tau_start")


class ValidationStream:
    """An endless, seeded stream of validation batches: (train part (B, N), validation item (B,))."""

    def __init__(self, dataset: SequenceDataset, max_len: int, batch_size: int, seed: int) -> None:
        users = dataset.eval_users()
        ends = dataset.train_ends()[users]
        self.seq = windows(dataset.items, dataset.offsets[users], ends, max_len)
        self.target = dataset.items[ends]
        self.batch_size, self.seed, self.drawn = batch_size, seed, 0

    def next(self):
        per_cycle = -(-len(self.target) // self.batch_size)
        cycle, i = divmod(self.drawn, per_cycle)
        order = np.random.default_rng([self.seed, cycle]).permutation(len(self.target))
        rows = order[i * self.batch_size:(i + 1) * self.batch_size]
        self.drawn += 1
        return torch.from_numpy(self.seq[rows]), torch.from_numpy(self.target[rows])


STRATEGIES: Registry = Registry("search strategy")


@STRATEGIES.register("easrec")
class EASRecArchitect(TrainHooks):
    """EASRec: first-order bilevel steps on (α, β) with the dynamic resource term λ·R."""

    paper_name = "EASRec"  # names the derived model in the search's summary

    space_overrides: Dict = {}  # what the strategy fixes in the search space
    uses_resource = True
    has_controllers = True  # derive_by: controllers reads its (α, β)
    flow = "supernet"  # the search job's flow (recarch.search.job.FLOWS)

    def __init__(self, supernet: EASRecSupernet, constraint: ResourceConstraint, cfg: ArchitectConfig,
                 loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                 valid: ValidationStream | None, dist: Dist = Dist()) -> None:
        """loss_fn(seq, target): this rank's share of the global batch's loss (Trainer.loss)."""
        self.net, self.constraint, self.cfg, self.loss_fn, self.valid = supernet, constraint, cfg, loss_fn, valid
        self.dist = dist
        supernet.path_sampling = getattr(self, "path_sampling", False)
        self.optimizer = torch.optim.Adam(supernet.arch_parameters(), lr=cfg.arch_lr)
        self.last_resource = float("nan")
        self.stable = {"chosen": None, "epochs": 0}  # how long argmax (α, β) has not moved
        self.epochs_done = 0
        supernet.tau = cfg.tau_start

    def warming_up(self) -> bool:
        return self.epochs_done < self.cfg.warmup_epochs

    def resource(self) -> torch.Tensor:
        return self.constraint(self.net.candidate_weights(), self.net.depth_weights())

    def after_step(self, step: int, seq: torch.Tensor, target: torch.Tensor) -> None:
        self.net.tau = max(self.cfg.tau_min, self.cfg.tau_start - self.cfg.tau_decay * step)
        if step % self.cfg.arch_every or self.warming_up():
            return
        if self.cfg.arch_data == "valid":
            device = self.net.alpha.device
            seq, target = (move(t, device) for t in self.valid.next())
        self.optimizer.zero_grad(set_to_none=True)
        resource = self.resource()
        lam = self.cfg.lam if self.uses_resource else 0.0
        # every rank adds R/world, so the summed controller gradient carries λ·∂R exactly once; the
        # weights' gradients would be thrown away, so autograd is told not to compute them
        weights = [p for p in self.net.weight_parameters() if p.requires_grad]
        for p in weights:
            p.requires_grad_(False)
        try:
            (self.loss_fn(seq, target) + lam * resource / self.dist.world).backward()
        finally:
            for p in weights:
                p.requires_grad_(True)
        self.dist.sum_grads(self.net.arch_parameters())
        self.optimizer.step()
        self.last_resource = float(resource.detach())

    def after_epoch(self, epoch: int, stats: Dict) -> None:
        with torch.no_grad():
            w, v = torch.softmax(self.net.alpha, 0), torch.softmax(self.net.beta, 0)
            stats.update({"alpha_softmax": w.tolist(), "beta_softmax": v.tolist(), "tau": self.net.tau,
                          "resource": float(self.constraint(w, v)),
                          "expected_layer_flops": self.constraint.expected_flops(w, v),
                          "chosen": list(self.net.chosen())})
        same = stats["chosen"] == self.stable["chosen"] and not self.warming_up()  # counted from the first step
        self.stable = {"chosen": stats["chosen"], "epochs": self.stable["epochs"] + 1 if same else 0}
        self.epochs_done = epoch

    def stop_reason(self):
        n = self.cfg.arch_patience
        if n and self.stable["epochs"] >= n:
            return f"the architecture {tuple(self.stable['chosen'])} has not changed for {n} epochs"
        return None

    def state_dict(self) -> Dict:
        return {"optimizer": self.optimizer.state_dict(), "tau": self.net.tau,
                "drawn": self.valid.drawn if self.valid else 0, "stable": dict(self.stable),
                "epochs_done": self.epochs_done}

    def load_state_dict(self, state: Dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.net.tau = state["tau"]
        self.stable = dict(state["stable"])
        self.epochs_done = state["epochs_done"]
        if self.valid:
            self.valid.drawn = state["drawn"]
