"""Embeddings for the iHAS stages; both are drop-in replacements of a backbone's ``FieldEmbedding``
(``forward(cat, num) -> tokens (B, F + D, width)``), so DLRM, DeepFM, DCN-v2 and AutoInt run unchanged.

* :class:`BlockMaskedEmbedding` (search): the backbone's full-width embedding, each categorical field's
  width split into ``blocks`` equal blocks, multiplied per instance by the gates of
  :class:`~recarch.ihas.gates.Gates`. Numeric tokens (``x · v_j``) are not gated (neither data set
  of the benchmarks has any; their cost is D × width, not a vocabulary).
* :class:`MixedDimEmbedding` (retraining): field f has its own table of ``len(columns[f])`` columns
  (d_f), scattered into those column positions of a zero token of the backbone's width; a field with
  d_f = 0 has no table and an all-zero token. Parameters: Σ_f vocab_f · d_f exactly (plus the numeric
  vectors, which ``embedding_parameters`` leaves out for every model alike). Given ``tables`` (see
  :func:`nested_tables`), the field reads the first d_f columns of a table it shares with other models.
"""
from __future__ import annotations

from typing import List, Optional, Sequence

import torch
from torch import nn

from recarch.ctr.models import FieldEmbedding
from recarch.ctr.table import CTRSchema
from recarch.ihas.gates import Gates


class BlockMaskedEmbedding(nn.Module):
    def __init__(self, base: FieldEmbedding, gates: Gates, blocks: int) -> None:
        super().__init__()
        width = base.table.embedding_dim
        if width % blocks:
            raise ValueError(f"embedding width {width} is not divisible into {blocks} blocks")
        self.base, self.gates, self.blocks, self.block_size = base, gates, blocks, width // blocks
        self.num_tokens = base.num_tokens
        self.last_prob: Optional[torch.Tensor] = None  # (B, F, K) of the latest forward, for the regularisers
        self.last_gates: Optional[torch.Tensor] = None

    def mask(self, gates: torch.Tensor) -> torch.Tensor:
        """(B, F, K) block gates → (B, F, width) column mask."""
        return gates.repeat_interleave(self.block_size, dim=-1)

    def forward(self, cat: torch.Tensor, num: torch.Tensor) -> torch.Tensor:
        tokens = self.base(cat, num)
        gates, prob = self.gates(cat, num)
        self.last_prob, self.last_gates = prob, gates
        fields = cat.shape[1]
        masked = tokens[:, :fields] * self.mask(gates)
        return torch.cat([masked, tokens[:, fields:]], dim=1) if tokens.shape[1] > fields else masked

    @torch.no_grad()
    def deterministic(self, cat: torch.Tensor, num: torch.Tensor):
        """(pattern (B, F, K) bool, masked categorical tokens (B, F, width)) with deterministic gates."""
        pattern = self.gates.pattern(cat, num)
        tokens = self.base(cat, num)[:, :cat.shape[1]]
        return pattern, tokens * self.mask(pattern.to(tokens.dtype))


def block_columns(blocks_on: Sequence[bool], block_size: int) -> List[int]:
    """Column indices covered by the blocks that are on."""
    return [b * block_size + i for b, on in enumerate(blocks_on) if on for i in range(block_size)]


def field_columns(blocks_on: Sequence[bool], block: int, init: str) -> List[int]:
    """Where a field's kept dimensions sit in the backbone-wide token. Warm-started (``init='search'``): the
    kept blocks' own columns (the search model's weights are copied there). From scratch: the first d_f
    columns, so that the dot products of DLRM, FM and AutoInt between two fields run over min(d_a, d_b)
    shared columns — with the blocks' own positions two fields that kept different blocks would never interact."""
    cols = block_columns(blocks_on, block)
    return cols if init == "search" else list(range(len(cols)))


def nested_tables(schema: CTRSchema, dims: Sequence[Sequence[int]], init_std: float = 1e-4) -> nn.ModuleDict:
    """Tables several mixed-dimension embeddings share (``IHASConfig.tables = 'shared'``): per field one
    table as wide as the widest d_f in ``dims`` (one list of per-field widths per model), of which a model
    with d_f reads the first d_f columns (nested, as Matryoshka embeddings); no table for a field no model keeps."""
    widest = [max(d[f] for d in dims) for f in range(schema.num_fields)]
    tables = nn.ModuleDict({str(f): nn.Embedding(schema.vocab_sizes[f], w) for f, w in enumerate(widest) if w})
    for table in tables.values():
        nn.init.normal_(table.weight, std=init_std)
    return tables


class MixedDimEmbedding(nn.Module):
    def __init__(self, schema: CTRSchema, width: int, columns: Sequence[Sequence[int]], numeric: bool = True,
                 init_std: float = 1e-4, tables: Optional[nn.ModuleDict] = None) -> None:
        super().__init__()
        if len(columns) != schema.num_fields:
            raise ValueError(f"columns: expected one list per field ({schema.num_fields}), got {len(columns)}")
        self.width, self.fields = width, schema.num_fields
        self.columns = [sorted(int(c) for c in cols) for cols in columns]
        for f, cols in enumerate(self.columns):
            if len(set(cols)) != len(cols) or any(not 0 <= c < width for c in cols):
                raise ValueError(f"columns of field {f}: distinct indices in [0, {width}) expected, got {cols}")
        self.dims = [len(c) for c in self.columns]
        self.active = [f for f, d in enumerate(self.dims) if d]
        for f in self.active if tables is not None else ():
            if self.columns[f] != list(range(self.dims[f])) or str(f) not in tables \
                    or tables[str(f)].embedding_dim < self.dims[f]:
                raise ValueError(f"field {f}: a shared table serves the first d_f columns of a table at least "
                                 f"d_f = {self.dims[f]} wide; got columns {self.columns[f]}")
        self.tables = tables if tables is not None else nested_tables(schema, [self.dims], init_std)
        flat = [f * width + c for f in self.active for c in self.columns[f]]
        self.register_buffer("flat_index", torch.tensor(flat, dtype=torch.long), persistent=False)
        n_num = len(schema.numeric) if numeric else 0
        self.numeric = nn.Parameter(torch.randn(n_num, width) * init_std) if n_num else None
        self.num_tokens = schema.num_fields + n_num
        self.vocab_sizes = list(schema.vocab_sizes)

    @property
    def embedding_params(self) -> int:
        return sum(v * d for v, d in zip(self.vocab_sizes, self.dims))

    def forward(self, cat: torch.Tensor, num: torch.Tensor) -> torch.Tensor:
        b = cat.shape[0]
        out = torch.zeros(b, self.fields * self.width, device=cat.device, dtype=self._dtype())
        if self.active:
            values = torch.cat([self.tables[str(f)](cat[:, f])[:, :self.dims[f]] for f in self.active], dim=1)
            out = out.index_copy(1, self.flat_index, values)
        tokens = out.view(b, self.fields, self.width)
        if self.numeric is not None:
            tokens = torch.cat([tokens, num.unsqueeze(-1) * self.numeric], dim=1)
        return tokens

    def _dtype(self) -> torch.dtype:
        for p in self.parameters():
            return p.dtype
        return torch.float32

    @classmethod
    def from_full(cls, base: FieldEmbedding, schema: CTRSchema, columns: Sequence[Sequence[int]]) -> "MixedDimEmbedding":
        """Warm start: each field's table is the kept columns of the full table's rows of that field."""
        width = base.table.embedding_dim
        emb = cls(schema, width, columns, numeric=base.numeric is not None)
        with torch.no_grad():
            offsets = base.offsets.tolist()
            for f in emb.active:
                rows = base.table.weight[offsets[f]:offsets[f] + schema.vocab_sizes[f]]
                emb.tables[str(f)].weight.copy_(rows[:, emb.columns[f]])
            if base.numeric is not None:
                emb.numeric.copy_(base.numeric)
        return emb
