"""Data-parallel training under ``torchrun`` (gloo on CPU, NCCL on GPU), without the DDP wrapper.

Every rank holds the same weights and architecture parameters, takes a contiguous shard of each global
batch, and divides its summed loss by the *global* number of targets; gradients are then summed
across ranks. That is exactly the single-process gradient of the global batch, whatever the shards'
sizes (all_positions shards hold different numbers of targets), so a 2-process run matches a
1-process run with the same global batch up to float summation order (dropout aside: each rank
draws its own masks).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterable

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    grouped: bool = False  # in a process group: reductions go through it (one process under torchrun too)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self, device: str) -> str:
        """Each rank on a multi-GPU machine takes its own GPU."""
        return f"cuda:{self.local_rank}" if device == "cuda" and self.world > 1 else device

    def shard(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor if self.world == 1 else torch.tensor_split(tensor, self.world)[self.rank]

    def sum(self, value: torch.Tensor) -> torch.Tensor:
        """Sum over ranks (a copy; the input is untouched)."""
        if not self.grouped:
            return value
        out = value.detach().clone()
        dist.all_reduce(out)
        return out

    def sum_grads(self, params: Iterable[torch.nn.Parameter], sparse: Iterable[torch.nn.Parameter] = ()) -> None:
        """Sum every rank's gradients. ``sparse``: parameters updated row-wise, whose gradients are
        reduced dense (a rank may have looked up other rows, or none) and handed back row-sparse."""
        if not self.grouped:
            return
        row_wise = {id(p) for p in sparse}
        for p in params:
            grad = torch.zeros_like(p) if p.grad is None else p.grad  # a parameter unused here still joins
            grad = grad.to_dense() if grad.is_sparse else grad
            dist.all_reduce(grad)
            p.grad = grad.to_sparse(sparse_dim=1) if id(p) in row_wise else grad

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def broadcast(self, obj: Any) -> Any:
        """rank 0's ``obj`` on every rank (e.g. a run folder named by the clock)."""
        if self.world == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def from_env(device: str = "cpu") -> Dist:
    """Join the process group ``torchrun`` describes in the environment (one process under torchrun
    too: its reductions then run through NCCL or gloo, as a larger job's would); a plain run is rank 0 of 1."""
    if "TORCHELASTIC_RUN_ID" not in os.environ and int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return Dist()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")), grouped=True)
