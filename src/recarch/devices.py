"""Host → device copies in one place: pinned and non-blocking when the target is a GPU, plain otherwise.

Models never name a device; trainers, evaluators and cost measurements move their batches with
:func:`move`, so the same code runs on the CPU, one GPU or one GPU per ``torchrun`` rank
(recarch.train.distributed picks the rank's device and NCCL).
"""
from __future__ import annotations

from typing import Union

import torch

Device = Union[str, torch.device]


def move(tensor: torch.Tensor, device: Device) -> torch.Tensor:
    """``tensor`` on ``device``: a CPU tensor bound for CUDA is pinned first and copied without
    blocking (the kernels that read it queue behind the copy on the same stream)."""
    device = torch.device(device)
    if device.type == "cuda" and tensor.device.type == "cpu":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)
