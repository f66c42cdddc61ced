"""A per-layer elastic space (once-for-all / BigNAS style) on the SASRec family, in one shared-weight
supernet whose every sub-network ``derive`` returns exactly.

An architecture (:class:`Arch`) picks
- the width d of the residual stream, and that of the item embeddings: tied to d (the items are
  scored against the hidden states), or with ``item_widths`` a width e of its own, the items entering
  through P (d×e) and scored as (Pᵀh)·E_j (model.item_width);
- the history length N the model reads (its last N items; positions embedded for N);
- the layer type (post-norm, pre-norm, SASRec's, LiGR; one for the whole model);
- the depth L, and for each layer independently its attention width a_l (queries, keys, values),
  its number of heads h_l (a_l / h_l per head) and its FFN width f_l.

Every choice runs on the leading slices of the full-size weights: item embeddings [:, :e] (e = d
when tied), P [:d, :e], positions [:N, :d],
``W_Q``, ``W_K``, ``W_V`` [:a_l, :d], ``W_O`` [:d, :a_l], the FFN [:f_l, :d] and [:d, :f_l], LayerNorms [:d].
A path reading N < N_max items sees the last N columns of the window, which is what a model built for
N trains and is evaluated on (one window per user, its last items), so the path and the derived model
compute the same function on the same batches. EASRec's space (one width for every layer, depths 1..L)
stays in recarch.search.supernet, so the paper's tables still reproduce.
"""
from __future__ import annotations

import random
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Callable, Iterator, List, Sequence, Tuple

import torch

from recarch.config import ConfigError
from recarch.cost.flops import flops_per_sequence
from recarch.models.base import SeqModelConfig, SequentialRecommender
from recarch.models.packing import packing_for
from recarch.models.sasrec import SASRec
from recarch.models.sublayer import LAYER_TYPES, sliced_layer_norm

LayerShape = Tuple[int, int, int]  # (attention width a_l, heads h_l, FFN width f_l)


@dataclass
class ElasticSpaceConfig:
    """The choices; the supernet is built at the largest of each."""

    widths: List[int] = field(default_factory=lambda: [64, 48, 32, 16])  # d
    attn_widths: List[int] = field(default_factory=lambda: [64, 32, 16])  # a_l
    heads: List[int] = field(default_factory=lambda: [1, 2])  # h_l
    ffn_widths: List[int] = field(default_factory=lambda: [256, 128, 64, 32])  # f_l
    depths: List[int] = field(default_factory=lambda: [1, 2, 3, 4])  # L
    max_lens: List[int] = field(default_factory=list)  # N (empty: the model's max_len only)
    layer_types: List[str] = field(default_factory=list)  # (empty: the model's layer type only)
    item_widths: List[int] = field(default_factory=list)  # e (empty: the item table tied to d)

    def validate(self) -> None:
        for key in ("widths", "attn_widths", "heads", "ffn_widths", "depths"):
            values = getattr(self, key)
            if not values or min(values) < 1:
                raise ConfigError(f"elastic.{key}: expected a non-empty list of integers ≥ 1, got {values}")
        if self.item_widths and min(self.item_widths) < 1:
            raise ConfigError(f"elastic.item_widths: expected widths ≥ 1, got {self.item_widths}")
        if self.max_lens and min(self.max_lens) < 1:
            raise ConfigError(f"elastic.max_lens: expected lengths ≥ 1, got {self.max_lens}")
        for t in self.layer_types:
            if t not in LAYER_TYPES:
                raise ConfigError(f"elastic.layer_types: {t!r} is not a layer type; expected some of {', '.join(LAYER_TYPES)}")
        for a in self.attn_widths:
            if not any(a % h == 0 for h in self.heads):
                raise ConfigError(f"elastic.attn_widths: {a} is divisible by none of elastic.heads {self.heads}")

    def resolved(self, model: SeqModelConfig) -> "ElasticSpaceConfig":
        """Empty lists filled from the model (its history length, its layer type), choices sorted."""
        return replace(self, widths=sorted(set(self.widths)), attn_widths=sorted(set(self.attn_widths)),
                       heads=sorted(set(self.heads)), ffn_widths=sorted(set(self.ffn_widths)),
                       depths=sorted(set(self.depths)), max_lens=sorted(set(self.max_lens or [model.max_len])),
                       layer_types=list(dict.fromkeys(self.layer_types or [model.layer])),
                       item_widths=sorted(set(self.item_widths)))


@dataclass(frozen=True)
class Arch:
    """One sub-network of the elastic space (see the module docstring)."""

    width: int
    max_len: int
    layer: str
    layers: Tuple[LayerShape, ...]
    item_width: int = 0  # e; 0: the item table tied to the width

    @property
    def depth(self) -> int:
        return len(self.layers)

    def name(self) -> str:
        """In the user's terms: 'width 48, items 32, N 50, sasrec, 2 layer(s): attn 32×1 ffn 128; attn 64×2 ffn 64'."""
        shapes = "; ".join(f"attn {a}×{h} ffn {f}" for a, h, f in self.layers)
        items = f", items {self.item_width}" if self.item_width else ""
        return f"width {self.width}{items}, N {self.max_len}, {self.layer}, {self.depth} layer(s): {shapes}"

    def folder(self) -> str:
        """A short folder name: 'd48-e32-n50-sasrec-a32h1f128-a64h2f64'."""
        items = [f"e{self.item_width}"] if self.item_width else []
        return "-".join([f"d{self.width}", *items, f"n{self.max_len}", self.layer] +
                        [f"a{a}h{h}f{f}" for a, h, f in self.layers])

    def to_dict(self) -> dict:
        return {"width": self.width, "item_width": self.item_width, "max_len": self.max_len, "layer": self.layer,
                "layers": [{"attn": a, "heads": h, "ffn": f} for a, h, f in self.layers]}

    @classmethod
    def from_dict(cls, d: dict) -> "Arch":
        return cls(d["width"], d["max_len"], d["layer"], tuple((l["attn"], l["heads"], l["ffn"]) for l in d["layers"]),
                   d.get("item_width", 0))


def sample_arch(space: ElasticSpaceConfig, index: Callable[[int], int]) -> Arch:
    """An architecture drawn uniformly choice by choice; ``index(n)`` draws an integer in [0, n)
    (from a checkpointed torch generator while training, from a seeded ``random.Random`` in the search)."""
    def pick(values: Sequence):
        return values[index(len(values))]

    width, max_len, layer, depth = pick(space.widths), pick(space.max_lens), pick(space.layer_types), pick(space.depths)
    layers = []
    for _ in range(depth):
        a = pick(space.attn_widths)
        layers.append((a, pick([h for h in space.heads if a % h == 0]), pick(space.ffn_widths)))
    return Arch(width, max_len, layer, tuple(layers), pick(space.item_widths) if space.item_widths else 0)


def largest(space: ElasticSpaceConfig) -> Arch:
    a = space.attn_widths[-1]
    h = max(h for h in space.heads if a % h == 0)
    return Arch(space.widths[-1], space.max_lens[-1], space.layer_types[0],
                ((a, h, space.ffn_widths[-1]),) * space.depths[-1], (space.item_widths or [0])[-1])


def smallest(space: ElasticSpaceConfig) -> Arch:
    a = space.attn_widths[0]
    h = min(h for h in space.heads if a % h == 0)
    return Arch(space.widths[0], space.max_lens[0], space.layer_types[0],
                ((a, h, space.ffn_widths[0]),) * space.depths[0], (space.item_widths or [0])[0])


class ElasticSpace:
    """The sandwich rule's view of the space (recarch.search.sandwich.SandwichTrainer): its two ends and
    uniform draws on the trainer's generator."""

    def __init__(self, space: ElasticSpaceConfig) -> None:
        self.config = space
        self.ends = [largest(space), smallest(space)]

    def draw(self, generator: torch.Generator, n: int) -> List[Arch]:
        return [sample_arch(self.config, lambda k: int(torch.randint(k, (1,), generator=generator)))
                for _ in range(n)]


def backbone_layer(types: Sequence[str]) -> str:
    """The layer type the supernet is built with: one that owns every weight the chosen types use
    (LiGR's skip gates, the pre-norm types' final LayerNorm)."""
    if "ligr" in types:
        return "ligr"
    return "post_norm" if set(types) == {"post_norm"} else "pre_norm"


class ElasticSupernet(SequentialRecommender):
    """The shared-weight supernet of an :class:`ElasticSpaceConfig`; ``on_path(arch)`` runs one
    sub-network alone (the largest outside such a block), ``derive(arch)`` returns it as a plain SASRec."""

    def __init__(self, num_items: int, cfg: SeqModelConfig, space: ElasticSpaceConfig) -> None:
        super().__init__()
        space = space.resolved(cfg)
        self.num_items, self.space, self.base = num_items, space, cfg
        depth = space.depths[-1]
        self.config = replace(cfg, name="sasrec", hidden_size=space.widths[-1], max_len=space.max_lens[-1],
                              n_layers=depth, layer=backbone_layer(space.layer_types), n_heads=1,
                              inner_size=space.ffn_widths[-1], attn_sizes=[space.attn_widths[-1]] * depth,
                              layer_heads=[1] * depth, inner_sizes=[space.ffn_widths[-1]] * depth,
                              item_width=(space.item_widths or [0])[-1])
        self.backbone = SASRec(num_items, self.config)
        self.sampler = ElasticSpace(space)
        self._flops: dict = {}
        self._set(largest(space))

    def weight_parameters(self) -> List[torch.nn.Parameter]:
        return list(self.parameters())

    @contextmanager
    def on_path(self, arch: Arch) -> Iterator[None]:
        """Within the block the supernet computes ``arch`` alone, as ``derive(arch)`` would."""
        saved = self.arch
        self._set(arch)
        try:
            yield
        finally:
            self._set(saved)

    def _set(self, arch: Arch) -> None:
        self.arch = arch
        for layer in self.backbone.encoder.layers:
            layer.attention.layer = layer.ffn.layer = arch.layer
            if layer.attention.window is not None:
                layer.attention.window = arch.max_len

    def crop(self, arch: Arch, batch: tuple) -> tuple:
        """The training batch as ``arch`` reads it: the last N columns of the windows (and targets)."""
        return tuple(t[:, -arch.max_len:] if t.dim() == 2 else t for t in batch)

    def path_name(self, arch: Arch) -> str:
        return arch.name()

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        return super().forward(seq[:, -self.arch.max_len:])

    def hidden_last(self, seq: torch.Tensor) -> torch.Tensor:
        return super().hidden_last(seq[:, -self.arch.max_len:])

    def encode(self, seq, lengths, last_only=False):
        arch, encoder = self.arch, self.backbone.encoder
        packing = packing_for(lengths, seq.shape[1])
        embedding = self.backbone.embedding
        e = embedding(seq, width=arch.width, packing=packing, item_width=arch.item_width or None)
        h = e
        for l, (a, heads, f) in enumerate(arch.layers):
            final = last_only and l == arch.depth - 1
            h = encoder.layers[l](h, lengths, final, e if self.config.gates else None, f, packing=packing,
                                  attn=a, heads=heads)
        if arch.layer != "post_norm":
            h = sliced_layer_norm(h, encoder.norm)
        h = embedding.to_items(h, arch.width, arch.item_width or None)
        if packing is None or h.dim() == 3:
            return h
        return packing.last_tokens(h) if last_only else packing.unpack(h, full=True)

    def item_embeddings(self) -> torch.Tensor:
        return self.backbone.item_embeddings()[:, : self.arch.item_width or self.arch.width]

    def derived_config(self, arch: Arch) -> SeqModelConfig:
        a, h, f = (list(v) for v in zip(*arch.layers))
        return replace(self.base, name="sasrec", hidden_size=arch.width, max_len=arch.max_len, layer=arch.layer,
                       n_layers=arch.depth, n_heads=h[0], inner_size=f[0], attn_sizes=a, layer_heads=h, inner_sizes=f,
                       item_width=arch.item_width)

    def derive(self, arch: Arch) -> SASRec:
        """A plain SASRec of ``arch``'s shape holding the leading slices of the supernet's weights."""
        model = SASRec(self.num_items, self.derived_config(arch))
        source = self.backbone.state_dict()
        with torch.no_grad():
            for name, target in model.state_dict().items():
                target.copy_(source[name][tuple(slice(0, n) for n in target.shape)])
        return model

    def flops(self, arch: Arch) -> int:
        """Counted FLOPs per sequence of the derived model scoring every item after N items (what a
        run's cost.json reports as flops_per_sequence); counted once per architecture."""
        if arch not in self._flops:
            self._flops[arch] = model_flops(self.num_items, self.derived_config(arch))
        return self._flops[arch]


def model_flops(num_items: int, cfg: SeqModelConfig) -> int:
    """Counted FLOPs per sequence of a SASRec of ``cfg`` scoring every item after ``max_len`` items."""
    return flops_per_sequence(SASRec(num_items, cfg), cfg.max_len, method="score_last")["flops_per_sequence"]


def candidate_archs(space: ElasticSpaceConfig, n: int, seed: int, fits: Callable[[Arch], bool],
                    tries: int = 50, ends: bool = True) -> List[Arch]:
    """Up to ``n`` distinct architectures within the budget (``fits``): the largest and the smallest
    when they fit (``ends``), then uniform draws (at most ``tries`` × n of them)."""
    rng = random.Random(seed)
    out: List[Arch] = []
    first = [largest(space), smallest(space)] if ends else []
    for arch in first + [sample_arch(space, rng.randrange) for _ in range(tries * n)]:
        if len(out) == n:
            break
        if arch not in out and fits(arch):
            out.append(arch)
    return out
