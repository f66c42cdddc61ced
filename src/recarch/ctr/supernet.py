"""The NASRec weight-sharing supernet and the plain network of one architecture.

Every block holds full-size weights for each operator; a sub-network uses the first ``w`` output rows
(elastic width) and the input columns of the earlier outputs it reads (dense connectivity), so its
forward is the same arithmetic as a plain network built at exactly its sizes with those weights copied
(:meth:`NASRecSupernet.extract`, the once-for-all ``get_active_subnet`` contract — tested).

Operators of a block, for dense input x (selected earlier dense outputs, concatenated), binary input y
and sparse input S (selected earlier token matrices, concatenated along the token axis, B×T×d):
- dense ``fc``: A x;  ``gating``: A x ⊙ σ(B y);  ``sum``: A x + B y;  ``dot``: A x + P·dots, where
  dots are the pairwise inner products of [C x; R S] — R reduces S to r = round(√(2w)) tokens (NASRec's
  operator balancing) — each followed by the space's normalisation (``space.norm``: LayerNorm as NASRec,
  or BatchNorm, whose per-path statistics :meth:`NASRecSupernet.recalibrate` re-estimates, as
  once-for-all does, before a sub-network is evaluated or extracted) and ReLU;
- sparse ``efc``: a linear map along the token axis to ``sparse_dim`` tokens, LayerNorm;
  ``attention``: one multi-head self-attention layer with a residual and LayerNorm, then the same map;
- mergers: ``dense_to_sparse`` adds a projection of the dense output, reshaped to tokens, to the
  sparse output (NASRec concatenates it; adding keeps the token count elastic); ``fm`` adds a linear
  map of the factorisation machine ½[(Σ_t s_t)² − Σ_t s_t²] of the sparse output (layer-normalised without
  parameters: it grows with the square of the token count) to the dense output.
The logit is a linear map of the last block's dense output. With no binary input, y = x.
Only what the logit depends on runs and is built (``Arch.computed_parts``): a dead block, and in a live
block an operator or merger whose output no later part reads — e.g. the last block's sparse operator
when its FM merger is off — so FLOPs, parameters and the hardware costs count none of them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Tuple

import torch
from torch import nn
from torch.nn import functional as F

from recarch.ctr.elastic import NORM_LAYERS, Cols, ElasticLinear
from recarch.ctr.models import CTR_MODELS, FieldEmbedding
from recarch.ctr.space import ALL_PARTS, BINARY_OPS, Arch, BlockArch, Parts, SpaceConfig, check
from recarch.ctr.table import CTRSchema
from recarch.dropout import Dropout
from recarch.modes import eval_mode
from recarch.train.batchnorm import recompute_batch_norm


def tokens_linear(layer: ElasticLinear, s: torch.Tensor, out: Optional[int], cols: Cols) -> torch.Tensor:
    """Apply ``layer`` along the token axis: (B, T, d) → (B, out, d)."""
    return layer(s.transpose(1, 2), out, cols).transpose(1, 2)


def dot_tokens(width: int) -> int:
    """r = round(√(2·width)) reduced tokens for the dot-product operator."""
    return max(1, round((2 * width) ** 0.5))


def lower_pairs(n: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Index pairs (a < b) ordered by b then a, so the pairs among the first m tokens come first."""
    a, b = zip(*[(a, b) for b in range(n) for a in range(b)]) if n > 1 else ((), ())
    return torch.tensor(a, dtype=torch.long), torch.tensor(b, dtype=torch.long)


class Context:
    """What a block's operators read: the inputs and the widths and columns they use."""

    def __init__(self, x, y, s, w, ws, x_cols: Cols, y_cols: Cols, s_cols: Cols) -> None:
        self.x, self.y, self.s, self.w, self.ws = x, y, s, w, ws
        self.x_cols, self.y_cols, self.s_cols = x_cols, y_cols, s_cols


class DenseOp(nn.Module):
    """A x (+ an operator-specific term), then normalisation (``NORM_LAYERS[norm]``) and ReLU."""

    binary = False  # reads the binary input y

    def __init__(self, d_in: int, d_out: int, bin_in: int, tokens_in: int, embed_dim: int, norm: str) -> None:
        super().__init__()
        self.a = ElasticLinear(d_in, d_out)
        self.norm = NORM_LAYERS[norm](d_out)
        if self.binary:
            self.b = ElasticLinear(bin_in, d_out)

    def term(self, c: Context) -> torch.Tensor:
        return self.a(c.x, c.w, c.x_cols)

    def forward(self, c: Context) -> torch.Tensor:
        return torch.relu(self.norm(self.term(c), c.w))

    def extract(self, c: Context) -> "DenseOp":
        op = self.__class__.__new__(self.__class__)
        nn.Module.__init__(op)
        op.a, op.norm = self.a.extract(c.w, c.x_cols), self.norm.extract(c.w)
        if self.binary:
            op.b = self.b.extract(c.w, c.y_cols)
        return op


class FCOp(DenseOp):
    pass


class GatingOp(DenseOp):
    binary = True

    def term(self, c: Context) -> torch.Tensor:
        return self.a(c.x, c.w, c.x_cols) * torch.sigmoid(self.b(c.y, c.w, c.y_cols))


class SumOp(DenseOp):
    binary = True

    def term(self, c: Context) -> torch.Tensor:
        return self.a(c.x, c.w, c.x_cols) + self.b(c.y, c.w, c.y_cols)


class DotOp(DenseOp):
    def __init__(self, d_in: int, d_out: int, bin_in: int, tokens_in: int, embed_dim: int, norm: str) -> None:
        super().__init__(d_in, d_out, bin_in, tokens_in, embed_dim, norm)
        r = dot_tokens(d_out)
        self.reduce = ElasticLinear(tokens_in, r)
        self.token = ElasticLinear(d_in, embed_dim)
        self.proj = ElasticLinear((r + 1) * r // 2, d_out)

    def term(self, c: Context) -> torch.Tensor:
        r = dot_tokens(c.w)
        tokens = torch.cat([self.token(c.x, None, c.x_cols).unsqueeze(1),
                            tokens_linear(self.reduce, c.s, r, c.s_cols)], dim=1)
        a, b = lower_pairs(r + 1)
        dots = (tokens[:, a] * tokens[:, b]).sum(-1)
        return self.a(c.x, c.w, c.x_cols) + self.proj(dots, c.w, len(a))

    def extract(self, c: Context) -> "DotOp":
        op = super().extract(c)
        r = dot_tokens(c.w)
        op.reduce = self.reduce.extract(r, c.s_cols)
        op.token = self.token.extract(None, c.x_cols)
        op.proj = self.proj.extract(c.w, r * (r + 1) // 2)
        return op


DENSE_OPS = {"fc": FCOp, "gating": GatingOp, "sum": SumOp, "dot": DotOp}


class SparseOp(nn.Module):
    """EFC (a map along the token axis) to ``sparse_dim`` tokens, LayerNorm; ``attention`` first."""

    def __init__(self, tokens_in: int, tokens_out: int, embed_dim: int, heads: int, attention: bool) -> None:
        super().__init__()
        self.attention = nn.MultiheadAttention(embed_dim, heads, batch_first=True) if attention else None
        self.attn_norm = nn.LayerNorm(embed_dim) if attention else None
        self.efc = ElasticLinear(tokens_in, tokens_out)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, c: Context) -> torch.Tensor:
        s = c.s
        if self.attention is not None:
            s = self.attn_norm(s + self.attention(s, s, s, need_weights=False)[0])
        return self.norm(tokens_linear(self.efc, s, c.ws, c.s_cols))

    def extract(self, c: Context) -> "SparseOp":
        op = SparseOp(1, 1, self.norm.normalized_shape[0], 1, False)
        op.attention, op.attn_norm = self.attention, self.attn_norm  # fixed width: shared as is
        op.efc, op.norm = self.efc.extract(c.ws, c.s_cols), self.norm
        return op


class Block(nn.Module):
    """One choice block at maximum sizes (supernet) or at one architecture's sizes (plain network)."""

    def __init__(self, d_in: int, tokens_in: int, d_out: int, tokens_out: int, embed_dim: int, heads: int,
                 dense_ops: Sequence[str], sparse_ops: Sequence[str], norm: str, parts: Parts = ALL_PARTS) -> None:
        super().__init__()
        self.dense = nn.ModuleDict({k: DENSE_OPS[k](d_in, d_out, d_in, tokens_in, embed_dim, norm) for k in dense_ops}
                                   if parts.dense else {})
        self.sparse = nn.ModuleDict({k: SparseOp(tokens_in, tokens_out, embed_dim, heads, k == "attention")
                                     for k in sparse_ops} if parts.sparse else {})
        self.to_sparse = ElasticLinear(d_out, tokens_out * embed_dim) if parts.to_sparse else None
        self.fm = ElasticLinear(embed_dim, d_out) if parts.fm else None

    def forward(self, c: Context, arch: BlockArch, parts: Parts) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
        """(dense, sparse) outputs; a part ``parts`` leaves out is None."""
        dense = self.dense[arch.dense_op](c) if parts.dense else None
        sparse = self.sparse[arch.sparse_op](c) if parts.sparse else None
        if parts.to_sparse:
            sparse = sparse + self.to_sparse(dense, c.ws * sparse.shape[-1], c.w).view_as(sparse)
        if parts.fm:
            fm = 0.5 * (sparse.sum(1).pow(2) - sparse.pow(2).sum(1))
            dense = dense + self.fm(F.layer_norm(fm, fm.shape[-1:]), c.w)
        return dense, sparse

    def extract(self, c: Context, arch: BlockArch, parts: Parts) -> "Block":
        """The block of one architecture with copies of the weights it uses (only the parts it computes)."""
        block = Block.__new__(Block)
        nn.Module.__init__(block)
        block.dense = nn.ModuleDict({arch.dense_op: self.dense[arch.dense_op].extract(c)} if parts.dense else {})
        block.sparse = nn.ModuleDict({arch.sparse_op: self.sparse[arch.sparse_op].extract(c)} if parts.sparse else {})
        block.to_sparse = self.to_sparse.extract(c.ws * c.s.shape[-1], c.w) if parts.to_sparse else None
        block.fm = self.fm.extract(c.w) if parts.fm else None
        return block


def _segments(widths: Sequence[int], limits: Sequence[int], chosen: Sequence[int]) -> torch.Tensor:
    """Columns of the chosen inputs in a layout where input j occupies ``limits[j]`` slots and uses
    its first ``widths[j]``."""
    offsets = [0]
    for n in limits[:-1]:
        offsets.append(offsets[-1] + n)
    return torch.cat([torch.arange(offsets[j], offsets[j] + widths[j]) for j in chosen]) if chosen \
        else torch.zeros(0, dtype=torch.long)


class NASRecSupernet(nn.Module):
    """``forward(cat, num, arch)``: the sub-network ``arch`` on full-size shared weights."""

    def __init__(self, schema: CTRSchema, space: SpaceConfig, init_std: float = 1e-2) -> None:
        super().__init__()
        space.validate()
        self.schema, self.space = schema, space
        d = space.embed_dim
        self.embedding = FieldEmbedding(schema, d, numeric=False, init_std=init_std)
        self.raw_dense = len(schema.numeric) + schema.num_fields * d
        dmax, smax = max(space.dense_dims), max(space.sparse_dims)
        self.dense_limits = [self.raw_dense] + [dmax] * space.blocks
        self.token_limits = [schema.num_fields] + [smax] * space.blocks
        self.blocks = nn.ModuleList(
            Block(sum(self.dense_limits[:i]), sum(self.token_limits[:i]), dmax, smax, d, space.attn_heads,
                  space.dense_ops, space.sparse_ops, space.norm) for i in range(1, space.blocks + 1))
        self.head = ElasticLinear(dmax, 1)

    def context(self, arch: Arch, outputs, b: BlockArch, parts: Parts) -> Context:
        """A block's inputs and the weight columns they use in the supernet's layout."""
        dense_w = [self.raw_dense] + [a.dense_dim for a in arch.blocks]
        tokens_w = [self.schema.num_fields] + [a.sparse_dim for a in arch.blocks]
        c = gather(outputs, b, parts)
        c.x_cols = _segments(dense_w, self.dense_limits, b.dense_in)
        c.y_cols = _segments(dense_w, self.dense_limits, b.binary_in or b.dense_in)
        c.s_cols = _segments(tokens_w, self.token_limits, b.sparse_in)
        return c

    def forward(self, cat: torch.Tensor, num: torch.Tensor, arch: Arch) -> torch.Tensor:
        outputs = [raw_inputs(self.embedding, cat, num)]
        computed = arch.computed_parts()
        for i, (block, b) in enumerate(zip(self.blocks, arch.blocks), 1):
            parts = computed.get(i)
            outputs.append(block(self.context(arch, outputs, b, parts), b, parts) if parts else None)
        return self.head(outputs[-1][0], None, arch.blocks[-1].dense_dim).squeeze(-1)

    @torch.no_grad()
    def recalibrate(self, arch: Arch, batches: Iterable[Tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Re-estimate the BatchNorm statistics ``arch`` uses as plain averages over ``batches`` of
        (cat, num): shared statistics mix every sampled path's (once-for-all's BN recalibration). Nothing
        to do under LayerNorm."""
        def run_batches() -> None:
            for cat, num in batches:
                self(cat, num, arch)

        recompute_batch_norm(self, run_batches)

    @torch.no_grad()
    def extract(self, arch: Arch) -> "NASRecNet":
        """The plain network of ``arch`` with copies of this supernet's weights and normalisation
        statistics (sizes physical; dead blocks and parts, which cannot change the logit, are left out)."""
        with eval_mode(self):  # the one-row trace below must not touch BatchNorm statistics
            return self._extract(arch)

    def _extract(self, arch: Arch) -> "NASRecNet":
        outputs = [raw_inputs(self.embedding, torch.zeros(1, self.schema.num_fields, dtype=torch.long),
                              torch.zeros(1, len(self.schema.numeric)))]
        blocks = []
        computed = arch.computed_parts()
        for i, (block, b) in enumerate(zip(self.blocks, arch.blocks), 1):
            parts = computed.get(i)
            if parts is None:
                blocks.append(nn.Identity())
                outputs.append(None)
                continue
            c = self.context(arch, outputs, b, parts)
            blocks.append(block.extract(c, b, parts))
            outputs.append(block(c, b, parts))
        embedding = FieldEmbedding(self.schema, self.space.embed_dim, numeric=False)
        embedding.load_state_dict(self.embedding.state_dict())
        return NASRecNet(self.schema, self.space, arch, blocks, embedding,
                         self.head.extract(None, arch.blocks[-1].dense_dim))


def raw_inputs(embedding: FieldEmbedding, cat: torch.Tensor, num: torch.Tensor):
    """Output 0: the dense input (numeric features, flattened field embeddings) and the field tokens."""
    tokens = embedding(cat, num)
    return torch.cat([num, tokens.flatten(1)], dim=1), tokens


def gather(outputs, b: BlockArch, parts: Parts) -> Context:
    """A block's dense, binary and sparse inputs: the earlier outputs its computed ``parts`` read,
    concatenated (None for an input no part reads)."""
    x = y = s = None
    if parts.dense:
        x = torch.cat([outputs[j][0] for j in b.dense_in], dim=1)
        y = torch.cat([outputs[j][0] for j in b.binary_in], dim=1) if b.binary_in and b.dense_op in BINARY_OPS else x
    if parts.reads_tokens(b):
        s = torch.cat([outputs[j][1] for j in b.sparse_in], dim=1)
    return Context(x, y, s, b.dense_dim, b.sparse_dim, None, None, None)


class NASRecNet(nn.Module):
    """A plain CTR network of one architecture: ``forward(cat, num) -> logit``; only its own weights."""

    def __init__(self, schema: CTRSchema, space: SpaceConfig, arch: Arch, blocks: Optional[List[Block]] = None,
                 embedding: Optional[FieldEmbedding] = None, head: Optional[ElasticLinear] = None,
                 init_std: float = 1e-2, dropout: float = 0.0) -> None:
        super().__init__()
        self.schema, self.space, self.arch = schema, space, arch
        self.dropout = Dropout(dropout)  # on every block's dense output while training, as the baselines' MLPs
        d = space.embed_dim
        self.embedding = embedding if embedding is not None else FieldEmbedding(schema, d, numeric=False, init_std=init_std)
        raw = len(schema.numeric) + schema.num_fields * d
        dense_w = [raw] + [b.dense_dim for b in arch.blocks]
        tokens_w = [schema.num_fields] + [b.sparse_dim for b in arch.blocks]
        self.parts = arch.computed_parts()
        self.live = set(self.parts)
        if blocks is None:  # a dead block holds an empty placeholder, so live blocks keep their index
            blocks = [Block(sum(dense_w[j] for j in b.dense_in), sum(tokens_w[j] for j in b.sparse_in), b.dense_dim,
                            b.sparse_dim, d, space.attn_heads, [b.dense_op], [b.sparse_op], space.norm, self.parts[i])
                      if i in self.live else nn.Identity() for i, b in enumerate(arch.blocks, 1)]
            for block, b in zip(blocks, arch.blocks):  # the binary operand's own input width
                op = block.dense[b.dense_op] if isinstance(block, Block) and b.dense_op in block.dense else None
                if op is not None and op.binary:
                    op.b = ElasticLinear(sum(dense_w[j] for j in (b.binary_in or b.dense_in)), b.dense_dim)
        self.blocks = nn.ModuleList(blocks)
        self.head = head if head is not None else ElasticLinear(arch.blocks[-1].dense_dim, 1)

    def forward(self, cat: torch.Tensor, num: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(cat, num)).squeeze(-1)

    def features(self, cat: torch.Tensor, num: torch.Tensor) -> torch.Tensor:
        """What the final layer (``head``) reads: the last block's dense output."""
        outputs = [raw_inputs(self.embedding, cat, num)]
        for i, (block, b) in enumerate(zip(self.blocks, self.arch.blocks), 1):
            parts = self.parts.get(i)
            if parts:
                dense, sparse = block(gather(outputs, b, parts), b, parts)
                outputs.append((None if dense is None else self.dropout(dense), sparse))
            else:
                outputs.append(None)
        return outputs[-1][0]


def load_arch(path: str) -> Tuple[SpaceConfig, Arch]:
    """(space, architecture) from an arch.json written by the search."""
    import json

    from recarch import config as cfglib

    try:
        data = json.loads(Path(path).read_text())
        return cfglib.from_dict(SpaceConfig, data["space"]), Arch.from_dict(data["arch"])
    except FileNotFoundError:
        raise FileNotFoundError(f"model.arch_file: no architecture file at {path}") from None
    except (KeyError, ValueError) as err:
        raise ValueError(f"{path}: expected a JSON object with 'space' and 'arch' (from `recarch ctr search`): {err}") from None


@CTR_MODELS.register("nasrec")
def build_nasrec(schema: CTRSchema, cfg) -> NASRecNet:
    if not cfg.arch_file:
        raise ValueError("model.arch_file: the nasrec model needs a searched architecture (arch.json)")
    space, arch = load_arch(cfg.arch_file)
    check(arch, space)
    return NASRecNet(schema, space, arch, dropout=cfg.dropout)
