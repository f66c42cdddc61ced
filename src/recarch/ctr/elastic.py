"""Weight-shared layers of the CTR supernet: each holds its largest size and runs on a prefix of its
outputs (and, for linear layers, a subset of its input columns); ``extract`` copies that part into a
plain layer of the physical size."""
from __future__ import annotations

from typing import Optional, Union

import torch
from torch import nn
from torch.nn import functional as F

Cols = Optional[Union[torch.Tensor, int]]  # the input columns a layer uses: all (None), the first n, or these indices


def columns(weight: torch.Tensor, cols: Cols) -> torch.Tensor:
    """``weight`` restricted to the input columns ``cols``; a prefix is a view (no copy, no scatter in backward)."""
    if cols is None:
        return weight
    return weight[:, :cols] if isinstance(cols, int) else weight.index_select(1, cols)


class ElasticLinear(nn.Linear):
    """A linear layer that can run on its first ``out`` rows and a subset ``cols`` of its columns."""

    def forward(self, x: torch.Tensor, out: Optional[int] = None, cols: Cols = None) -> torch.Tensor:
        return F.linear(x, columns(self.weight[:out], cols), self.bias[:out])

    def extract(self, out: Optional[int] = None, cols: Cols = None) -> "ElasticLinear":
        weight = columns(self.weight[:out], cols)
        layer = ElasticLinear(weight.shape[1], weight.shape[0])
        layer.weight.data.copy_(weight)
        layer.bias.data.copy_(self.bias[:out])
        return layer


class ElasticLayerNorm(nn.LayerNorm):
    def forward(self, x: torch.Tensor, width: Optional[int] = None) -> torch.Tensor:
        width = width or self.normalized_shape[0]
        return F.layer_norm(x, (width,), self.weight[:width], self.bias[:width], self.eps)

    def extract(self, width: int) -> "ElasticLayerNorm":
        norm = ElasticLayerNorm(width)
        norm.weight.data.copy_(self.weight[:width])
        norm.bias.data.copy_(self.bias[:width])
        return norm


class ElasticBatchNorm(nn.BatchNorm1d):
    """BatchNorm over the first ``width`` features; the running statistics of a sub-network are the
    first ``width`` entries of the shared buffers (updated in place while training)."""

    def forward(self, x: torch.Tensor, width: Optional[int] = None) -> torch.Tensor:
        width = width or self.num_features
        factor = 0.0
        if self.training:
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        return F.batch_norm(x, self.running_mean[:width], self.running_var[:width], self.weight[:width],
                            self.bias[:width], self.training, factor, self.eps)

    def extract(self, width: int) -> "ElasticBatchNorm":
        norm = ElasticBatchNorm(width, self.eps, self.momentum)
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(norm, name).data.copy_(getattr(self, name)[:width])
        norm.num_batches_tracked.copy_(self.num_batches_tracked)
        return norm


NORM_LAYERS = {"layer": ElasticLayerNorm, "batch": ElasticBatchNorm}
