"""The NASRec search space (DESIGN.md §4): architectures as plain JSON-able dataclasses, random
sampling and mutation.

An architecture is a list of choice blocks. Block i (1-based) reads earlier outputs by index, 0 being
the raw input (dense: numeric features and flattened field embeddings; sparse: the field embeddings).
Each block picks a dense operator and a sparse operator with their widths, which earlier outputs feed
its dense, sparse and binary (second operand of gating / sum) inputs, and two merger switches.
The logit reads the last block.
"""
from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field, replace
from typing import Dict, List

from recarch.config import ConfigError

DENSE_OPS = ("fc", "gating", "sum", "dot")
BINARY_OPS = ("gating", "sum")  # the dense operators that read the binary input
SPARSE_OPS = ("efc", "attention")
NORMS = ("layer", "batch")
SPACES = {"full": (DENSE_OPS, SPARSE_OPS), "autoctr": (("fc", "dot"), ("efc",))}


@dataclass
class SpaceConfig:
    space: str = "full"  # "full" or "autoctr" (NASRec's small space: FC, dot-product, EFC)
    blocks: int = 7
    dense_dims: List[int] = field(default_factory=lambda: [16, 32, 64, 128, 256, 512, 768, 1024])
    sparse_dims: List[int] = field(default_factory=lambda: [16, 32, 48, 64])  # output tokens of a sparse op
    embed_dim: int = 16
    max_inputs: int = 4  # at most this many earlier outputs feed each input of a block
    attn_heads: int = 2
    norm: str = "layer"  # the dense operators' normalisation: "layer" (NASRec) or "batch" (as the hand-designed MLPs)

    def validate(self) -> None:
        if self.space not in SPACES:
            raise ConfigError(f"space.space: expected one of {', '.join(SPACES)}, got {self.space!r}")
        if self.blocks < 1 or self.max_inputs < 1:
            raise ConfigError("space.blocks and space.max_inputs must be ≥ 1")
        if not self.dense_dims or not self.sparse_dims or min(self.dense_dims + self.sparse_dims) < 1:
            raise ConfigError("space.dense_dims and space.sparse_dims must be non-empty lists of widths ≥ 1")
        if self.norm not in NORMS:
            raise ConfigError(f"space.norm: expected one of {', '.join(NORMS)}, got {self.norm!r}")
        if self.embed_dim % self.attn_heads:
            raise ConfigError(f"space.embed_dim {self.embed_dim} must be divisible by space.attn_heads {self.attn_heads}")

    @property
    def dense_ops(self):
        return SPACES[self.space][0]

    @property
    def sparse_ops(self):
        return SPACES[self.space][1]


@dataclass
class BlockArch:
    dense_op: str
    sparse_op: str
    dense_dim: int
    sparse_dim: int
    dense_in: List[int]
    sparse_in: List[int]
    binary_in: List[int]  # second operand of gating / sum (ignored by fc and dot)
    dense_to_sparse: bool  # add a projection of the dense output to the sparse output
    fm: bool  # add a factorisation machine of the sparse output to the dense output


@dataclass
class Arch:
    blocks: List[BlockArch]

    def to_dict(self) -> Dict:
        return {"blocks": [asdict(b) for b in self.blocks]}

    @classmethod
    def from_dict(cls, data: Dict) -> "Arch":
        try:
            return cls([BlockArch(**b) for b in data["blocks"]])
        except (KeyError, TypeError) as err:
            raise ValueError(f"not a CTR architecture (expected {{'blocks': [{{dense_op, sparse_op, ...}}]}}): {err}") from None

    def key(self) -> str:
        return repr(self.to_dict())

    def computed_parts(self) -> Dict[int, "Parts"]:
        """What each live block (1-based) must compute for the logit, found backwards from it: the
        logit reads the last block's dense output; a computed dense part reads its dense and binary
        inputs' dense outputs (and, for ``dot``, its sparse inputs' tokens); a computed sparse part reads
        its sparse inputs' tokens; the FM merger runs when the dense output is read, and the dense →
        sparse merger whenever the sparse part runs (FM reads the sparse output with it added). A block
        absent from the result is dead, and a part left out cannot change the output either (e.g. the
        last block's sparse operator, unless its FM merger feeds the logit)."""
        n = len(self.blocks)
        dense_read, sparse_read, parts = {n}, set(), {}
        for i in range(n, 0, -1):
            b = self.blocks[i - 1]
            wants_dense, wants_sparse = i in dense_read, i in sparse_read
            if not (wants_dense or wants_sparse):
                continue
            sparse = wants_sparse or (wants_dense and b.fm)
            to_sparse = sparse and b.dense_to_sparse  # FM reads the sparse output with this projection added
            part = Parts(dense=wants_dense or to_sparse, sparse=sparse, to_sparse=to_sparse, fm=wants_dense and b.fm)
            if part.dense:
                dense_read.update(b.dense_in + (b.binary_in if b.dense_op in BINARY_OPS else []))
            if part.reads_tokens(b):
                sparse_read.update(b.sparse_in)
            parts[i] = part
        return parts

    def live_blocks(self) -> set:
        """1-based indices of the blocks the logit depends on; any other block is dead."""
        return set(self.computed_parts())

    def network_key(self) -> str:
        """A key equal for architectures that compute the same network: dead blocks, dead parts and
        genes no operator reads (the binary input of fc / dot, or one equal to the dense input) left out."""
        parts = self.computed_parts()
        blocks = []
        for i, b in enumerate(self.blocks, 1):
            part = parts.get(i)
            if part is None:
                blocks.append(None)
                continue
            genes = {"to_sparse": part.to_sparse, "fm": part.fm}
            if part.dense:
                binary = b.binary_in if b.dense_op in BINARY_OPS and b.binary_in != b.dense_in else []
                genes.update(dense_op=b.dense_op, dense_dim=b.dense_dim, dense_in=b.dense_in, binary_in=binary)
            if part.sparse:
                genes.update(sparse_op=b.sparse_op, sparse_dim=b.sparse_dim)
            if part.reads_tokens(b):
                genes.update(sparse_in=b.sparse_in)
            blocks.append(genes)
        return repr(blocks)


@dataclass(frozen=True)
class Parts:
    """What one live block computes (see ``Arch.computed_parts``)."""

    dense: bool  # the dense operator
    sparse: bool  # the sparse operator
    to_sparse: bool  # the dense → sparse merger
    fm: bool  # the FM merger (sparse → dense)

    def reads_tokens(self, b: BlockArch) -> bool:
        """Whether the block reads its sparse inputs: its sparse operator does, and so does ``dot``."""
        return self.sparse or (self.dense and b.dense_op == "dot")


ALL_PARTS = Parts(True, True, True, True)  # the supernet's blocks hold every part


def check(arch: Arch, space: SpaceConfig) -> None:
    """Raise ValueError naming the block and field that does not fit ``space``."""
    if len(arch.blocks) != space.blocks:
        raise ValueError(f"architecture has {len(arch.blocks)} blocks, the space {space.blocks}")
    for i, b in enumerate(arch.blocks, 1):
        for name, value, allowed in [("dense_op", b.dense_op, space.dense_ops), ("sparse_op", b.sparse_op, space.sparse_ops),
                                     ("dense_dim", b.dense_dim, space.dense_dims), ("sparse_dim", b.sparse_dim, space.sparse_dims)]:
            if value not in allowed:
                raise ValueError(f"block {i}: {name} {value!r} not in {list(allowed)}")
        for name in ("dense_in", "sparse_in", "binary_in"):
            ids = getattr(b, name)
            if (name != "binary_in" and not ids) or any(not 0 <= j < i for j in ids) or len(set(ids)) != len(ids):
                raise ValueError(f"block {i}: {name} {ids} must be distinct earlier outputs in [0, {i})"
                                 + ("" if name == "binary_in" else ", at least one"))


def _inputs(rng: random.Random, i: int, max_inputs: int, any_path: bool = True) -> List[int]:
    """Earlier outputs feeding a block: each kept with probability ½ (any-path), at least one, at
    most ``max_inputs``; the previous block's output is always a candidate."""
    ids = [j for j in range(i) if rng.random() < 0.5] if any_path else list(range(i))
    if not ids:
        ids = [i - 1]
    if len(ids) > max_inputs:
        ids = rng.sample(ids, max_inputs)
    return sorted(ids)


def sample(space: SpaceConfig, rng: random.Random, largest: bool = False, smallest: bool = False) -> Arch:
    """A random architecture; ``largest``: the widest widths, as many inputs as allowed and both
    mergers; ``smallest``: the narrowest widths, the previous output alone and no merger. The
    operators are drawn either way: they have no order by size."""
    if largest and smallest:
        raise ValueError("an architecture is either the largest or the smallest, not both")
    dims = max if largest else rng.choice
    blocks = []
    for i in range(1, space.blocks + 1):
        dense_op, sparse_op = rng.choice(space.dense_ops), rng.choice(space.sparse_ops)
        if smallest:
            blocks.append(BlockArch(dense_op=dense_op, sparse_op=sparse_op, dense_dim=min(space.dense_dims),
                                    sparse_dim=min(space.sparse_dims), dense_in=[i - 1], sparse_in=[i - 1],
                                    binary_in=[i - 1], dense_to_sparse=False, fm=False))
            continue
        blocks.append(BlockArch(
            dense_op=dense_op, sparse_op=sparse_op, dense_dim=dims(space.dense_dims), sparse_dim=dims(space.sparse_dims),
            dense_in=_inputs(rng, i, space.max_inputs, not largest),
            sparse_in=_inputs(rng, i, space.max_inputs, not largest),
            binary_in=_inputs(rng, i, space.max_inputs, not largest),
            dense_to_sparse=True if largest else rng.random() < 0.5, fm=True if largest else rng.random() < 0.5))
    return Arch(blocks)


def copy_blocks(arch: Arch) -> List[BlockArch]:
    """Deep copies of the blocks: a mutated child must not share its input lists with its parent."""
    return [replace(b, dense_in=list(b.dense_in), sparse_in=list(b.sparse_in), binary_in=list(b.binary_in))
            for b in arch.blocks]


def mutate(arch: Arch, space: SpaceConfig, rng: random.Random) -> Arch:
    """A copy with one decision of one block re-drawn."""
    blocks = copy_blocks(arch)
    i = rng.randrange(len(blocks))
    b = blocks[i]
    redraw = {
        "dense_op": lambda: rng.choice(space.dense_ops), "sparse_op": lambda: rng.choice(space.sparse_ops),
        "dense_dim": lambda: rng.choice(space.dense_dims), "sparse_dim": lambda: rng.choice(space.sparse_dims),
        "dense_in": lambda: _inputs(rng, i + 1, space.max_inputs), "sparse_in": lambda: _inputs(rng, i + 1, space.max_inputs),
        "binary_in": lambda: _inputs(rng, i + 1, space.max_inputs),
        "dense_to_sparse": lambda: not b.dense_to_sparse, "fm": lambda: not b.fm,
    }
    what = rng.choice(sorted(redraw))
    setattr(b, what, redraw[what]())
    return Arch(blocks)


def shrink(arch: Arch, space: SpaceConfig, rng: random.Random) -> Arch:
    """A copy one step cheaper: in a random block, the next smaller dense or sparse width, one input
    fewer, or EFC instead of attention (the repair that brings a draw under a FLOPs budget)."""
    blocks = copy_blocks(arch)
    moves = []
    for b in blocks:
        dense = sorted(d for d in space.dense_dims if d < b.dense_dim)
        sparse = sorted(d for d in space.sparse_dims if d < b.sparse_dim)
        if dense:
            moves.append(lambda b=b, w=dense[-1]: setattr(b, "dense_dim", w))
        if sparse:
            moves.append(lambda b=b, w=sparse[-1]: setattr(b, "sparse_dim", w))
        for name in ("dense_in", "sparse_in", "binary_in"):
            if len(getattr(b, name)) > 1:
                moves.append(lambda b=b, n=name: getattr(b, n).pop(rng.randrange(len(getattr(b, n)))))
        if b.sparse_op == "attention" and "efc" in space.sparse_ops:
            moves.append(lambda b=b: setattr(b, "sparse_op", "efc"))
    if moves:
        rng.choice(moves)()
    return Arch(blocks)
