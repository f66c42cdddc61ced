"""EASRec's supernet (DESIGN.md §1): one SASRec-with-gates at full size whose weights K candidate
widths share, a transformer controller α (one vector for all layers) and a depth controller β.

Candidate k runs the whole network at width d_k = d·(1 − p_k) and FFN width f_k = d_ff·(1 − q_k) on
the leading slices of every weight — the released code's "zero the last m_k / n_k dimensions" made
physical, with the residual stream, LayerNorms and embeddings narrowed too, so that ``derive`` returns
a plain SASRec that computes exactly what the supernet computes on the chosen path.
  Eq. 10: ``H^l = Σ_k w_k · T_k^l(H^{l-1})``, ``w = relax(α, τ)``.
  Eq. 11: ``H = Σ_l v_l · H^l``, ``v = relax(β, τ)``; scores ``r = H·Mᵀ`` (Eq. 12).
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Iterator, List, Literal, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from recarch.config import ConfigError
from recarch.models.attention import last_position
from recarch.models.base import SeqModelConfig, SequentialRecommender
from recarch.models.packing import packing_for
from recarch.models.sasrec import SASRec


@dataclass
class SearchSpaceConfig:
    attn_intensities: List[float] = field(default_factory=lambda: [0.0, 0.25, 0.5])  # p_k, of d
    ffn_intensities: List[float] = field(default_factory=lambda: [0.0, 0.25, 0.5])  # q_k, of d_ff
    gates: Literal[0, 1, 2] = 2
    relaxation: Literal["softmax", "gumbel"] = "softmax"  # the released code / the paper

    def validate(self) -> None:
        if len(self.attn_intensities) != len(self.ffn_intensities) or not self.attn_intensities:
            raise ConfigError("search.attn_intensities and search.ffn_intensities: expected two lists of the "
                              "same, non-zero length (one pair per candidate)")
        if any(not 0.0 <= p < 1.0 for p in self.attn_intensities + self.ffn_intensities):
            raise ConfigError("search intensities: expected fractions in [0, 1)")


def candidate_widths(model: SeqModelConfig, space: SearchSpaceConfig) -> List[tuple]:
    """(d_k, f_k) per candidate; d_k must hold whole heads of the full model's head size (a single-head
    model narrows its one head to any width)."""
    head = model.hidden_size // model.n_heads if model.n_heads > 1 else 1
    out = []
    for p, q in zip(space.attn_intensities, space.ffn_intensities):
        d, f = round(model.hidden_size * (1 - p)), round(model.inner_size * (1 - q))
        if d < head or d % head or f < 1:
            raise ConfigError(f"search intensity {p} of hidden_size {model.hidden_size} leaves width {d}, "
                              f"which is not a positive multiple of the head size {head}")
        out.append((d, f))
    return out


SubnetPath = Tuple[int, int]  # (candidate k, depth L): one sub-network of the supernet


def relax(logits: torch.Tensor, tau: float, kind: str, training: bool) -> torch.Tensor:
    """softmax(logits/τ), or a Gumbel-softmax sample while training (the paper's relaxation)."""
    if kind == "gumbel" and training:
        return F.gumbel_softmax(logits, tau=tau, hard=False)
    return torch.softmax(logits / tau, dim=-1)


def _pad(x: torch.Tensor, width: int) -> torch.Tensor:
    return F.pad(x, (0, width - x.shape[-1]))


class EASRecSupernet(SequentialRecommender):
    def __init__(self, num_items: int, cfg: SeqModelConfig, space: SearchSpaceConfig) -> None:
        super().__init__()
        if cfg.item_width:
            raise ConfigError(f"model.item_width {cfg.item_width}: EASRec's space ties the item table to each "
                              "candidate width; search the table's own width with strategy elastic and elastic.item_widths")
        self.num_items, self.space = num_items, space
        self.config = replace(cfg, gates=space.gates)
        self.widths = candidate_widths(cfg, space)
        self.backbone = SASRec(num_items, self.config)
        self.alpha = nn.Parameter(torch.zeros(len(self.widths)))  # transformer controller
        self.beta = nn.Parameter(torch.zeros(cfg.n_layers))  # depth controller
        self.tau = 1.0
        self.path_sampling = False  # ProxylessNAS: one sampled (candidate, depth) path per forward
        self.rival_paths = False  # ProxylessNAS's controller steps: a second sampled path for the gradient
        self.path: Optional[Tuple[int, int]] = None  # (k, depth): run that sub-network alone (``on_path``)

    def arch_parameters(self) -> List[nn.Parameter]:
        return [self.alpha, self.beta]

    def weight_parameters(self) -> List[nn.Parameter]:
        return list(self.backbone.parameters())

    @contextmanager
    def on_path(self, path: SubnetPath) -> Iterator[None]:
        """Within the block the supernet computes candidate k at ``depth`` layers alone, as ``derive(k,
        depth)`` would, whatever the controllers hold (the sandwich rule's and the path scores' forward)."""
        k, depth = path
        saved, self.path = self.path, (k, depth - 1)
        try:
            yield
        finally:
            self.path = saved

    def crop(self, path: SubnetPath, batch: tuple) -> tuple:
        """The training batch as ``path`` reads it: every path reads the whole window."""
        return batch

    def path_name(self, path: SubnetPath) -> str:
        """A path in the user's terms: 'width 32, FFN 32, 1 layer(s)'."""
        (d, f), depth = self.widths[path[0]], path[1]
        return f"width {d}, FFN {f}, {depth} layer(s)"

    def _gates(self, logits: torch.Tensor, fixed: Optional[int] = None) -> Tuple[torch.Tensor, List[int]]:
        """(w, paths): the weights of the paths and the paths to compute. ``fixed``: that path alone,
        weight 1 (``on_path``). Relaxed: every path of
        non-zero weight (a controller forced one-hot by ``fix_path`` runs one path). Path
        sampling (ProxylessNAS's binary gates): one sampled path in value, argmax when evaluating; the
        gradient reaches the controller straight through the sampled gate, or, with ``rival_paths``,
        through the gates of two paths drawn from p, their probabilities rescaled to sum to one
        (ProxylessNAS §3.2.1): the rival is computed for its gate's gradient and weighs 0 in value."""
        if fixed is not None:
            return F.one_hot(torch.tensor(fixed), len(logits)).to(logits), [fixed]
        p = relax(logits, self.tau, self.space.relaxation, self.training)
        if not self.path_sampling:
            return p, torch.nonzero(p.detach()).flatten().tolist()
        if not self.training:
            k = p.argmax()
            return F.one_hot(k, len(p)).to(p), [int(k)]
        if self.rival_paths and len(p) > 1:
            pair = torch.multinomial(p.detach(), 2)
            q = torch.softmax(logits[pair] / self.tau, 0)
            k = pair[torch.multinomial(q.detach(), 1)[0]]
            gate = torch.zeros_like(p).index_put((pair,), q)
            return F.one_hot(k, len(p)).to(p) - gate.detach() + gate, sorted(pair.tolist())
        k = torch.multinomial(p.detach(), 1)[0]
        return F.one_hot(k, len(p)).to(p) - p.detach() + p, [int(k)]

    def candidate_weights(self) -> torch.Tensor:
        return self._gates(self.alpha)[0]

    def depth_weights(self) -> torch.Tensor:
        return self._gates(self.beta)[0]

    def encode(self, seq, lengths, last_only=False):
        k, layer = self.path or (None, None)
        (w, active), (v, exits) = self._gates(self.alpha, k), self._gates(self.beta, layer)
        full = self.config.hidden_size
        packing = packing_for(lengths, seq.shape[1])  # every stream runs on the real positions only
        embed = {k: self.backbone.embedding(seq, width=self.widths[k][0], packing=packing) for k in active}
        h = sum(w[k] * _pad(embed[k], full) for k in active)
        last = max(exits)  # layers past the last exit cannot change the output
        encoder, out = self.backbone.encoder, 0.0
        for l, layer in enumerate(encoder.layers[: last + 1]):
            final = last_only and l == last  # later layers need every position; the last exit only one
            streams = {k: layer(h[..., : self.widths[k][0]], lengths, final, embed[k] if self.config.gates else None,
                                self.widths[k][1], packing=packing) for k in active}
            h = sum(w[k] * _pad(streams[k], full) for k in active)
            # an exit ends the stack there: the pre-norm types' final LayerNorm at each candidate's width
            exit_h = h if encoder.norm is None else sum(w[k] * _pad(encoder.finish(streams[k]), full) for k in active)
            if last_only and not final:
                exit_h = packing.last_tokens(exit_h) if packing is not None else last_position(exit_h, lengths)
            out = out + v[l] * exit_h
        return out if packing is None or last_only else packing.unpack(out, full=True)

    def item_embeddings(self):
        return self.backbone.item_embeddings()

    # ---- derive ---------------------------------------------------------------------------------
    def chosen(self) -> tuple:
        """(k*, L*) = (argmax α, argmax β + 1), EASRec Eq. 18."""
        return int(self.alpha.argmax()), int(self.beta.argmax()) + 1

    def derived_config(self, k: int, depth: int) -> SeqModelConfig:
        d, f = self.widths[k]
        heads = max(d * self.config.n_heads // self.config.hidden_size, 1)
        return replace(self.config, name="sasrec", hidden_size=d, inner_size=f, n_layers=depth, n_heads=heads)

    def derive(self, k: int | None = None, depth: int | None = None) -> SASRec:
        """A plain SASRec (with gates) at the physical widths of candidate k and depth L, holding the
        leading slices of the supernet's weights (once-for-all's ``get_active_subnet`` contract)."""
        if k is None or depth is None:
            k, depth = self.chosen()
        model = SASRec(self.num_items, self.derived_config(k, depth))
        source = self.backbone.state_dict()
        with torch.no_grad():
            for name, target in model.state_dict().items():
                target.copy_(source[name][tuple(slice(0, n) for n in target.shape)])
        return model

    def fix_path(self, k: int, depth: int) -> None:
        """Force the controllers one-hot on (k, depth): the supernet then runs that path alone."""
        with torch.no_grad():
            self.alpha.fill_(-1e9)
            self.alpha[k] = 0.0
            self.beta.fill_(-1e9)
            self.beta[depth - 1] = 0.0
