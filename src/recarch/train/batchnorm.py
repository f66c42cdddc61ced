"""Precise BatchNorm statistics (Wu & Johnson, "Rethinking 'Batch' in BatchNorm", 2021): the running
statistics replaced by the plain mean of the batch statistics over a chosen set of batches."""
from __future__ import annotations

from typing import Callable

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


def recompute_batch_norm(model: nn.Module, run_batches: Callable[[], None]) -> None:
    """Reset the statistics of every BatchNorm in ``model`` and average, with equal weight, the batch
    statistics of the forward passes ``run_batches()`` makes (in training mode). The momenta and the
    model's mode are restored afterwards. A model without BatchNorm is left alone (nothing runs)."""
    norms = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    if not norms:
        return
    momenta, was_training = [m.momentum for m in norms], model.training
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average: the exact mean over the batches run
    model.train()
    try:
        run_batches()
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        model.train(was_training)
