"""SASRec (Kang & McAuley, ICDM 2018) with switchable softmax or LinRec linear attention, and
optionally EASRec's data-aware gates (``gates: 1 | 2``) — the form a derived EASRec architecture takes.

Embedding (EASRec Eq. 3-4): ``E = Dropout(LayerNorm(M[s] + P))``, or ``Dropout(M[s] + P)`` with
``model.embedding_norm: false`` (SASRec's and RecTools's code), with ``M[s]·√d`` under
``model.embedding_scale`` (SASRec's code); scores ``r = H·Mᵀ`` with the item table
M tied between input and output.
"""
from __future__ import annotations

import torch
from torch import nn

from recarch.models.layers import TransformerEncoder
from recarch.models.packing import Packing, packing_for
from recarch.models.sublayer import sliced_layer_norm
from recarch.models.base import MODELS, SeqModelConfig, SequentialRecommender


class SequenceEmbedding(nn.Module):
    """Item plus learned position embedding, LayerNorm (unless ``norm=False``), dropout. Positions
    count from the first item (``inverse=False``) or back from the last one (RecTools's: the most
    recent input is always 0). ``scale``: item embeddings times √D first, D the width they run at
    (SASRec's code). ``item_dropout``: dropout on item embeddings while training, both where they are
    read (``lookup``) and on the table the hidden states are scored against (``table``), as RecTools's
    item net drops units of its embedding table; here the two draw their own masks."""

    def __init__(self, num_items: int | None, max_len: int, hidden: int, dropout: float,
                 inverse: bool = False, norm: bool = True, scale: bool = False, item_dropout: float = 0.0,
                 item_width: int = 0) -> None:
        super().__init__()
        self.inverse, self.scale = inverse, scale
        # num_items=None: a stream that embeds something else and passes it as ``extra``
        self.item = nn.Embedding(num_items + 1, item_width or hidden, padding_idx=0) if num_items else None
        # item_width: the table's width e, entering the stream through P (d×e); None when e = d, tied
        self.projection = nn.Linear(item_width, hidden, bias=False) if item_width else None
        self.item_dropout = nn.Dropout(item_dropout)
        self.position = nn.Embedding(max_len, hidden)
        self.norm = nn.LayerNorm(hidden, eps=1e-12) if norm else None
        self.dropout = nn.Dropout(dropout)

    @classmethod
    def from_config(cls, num_items: int | None, cfg: SeqModelConfig) -> "SequenceEmbedding":
        return cls(num_items, cfg.max_len, cfg.hidden_size, cfg.dropout, cfg.positions == "inverse",
                   cfg.embedding_norm, cfg.embedding_scale, cfg.item_dropout, cfg.item_width)

    def lookup(self, ids: torch.Tensor) -> torch.Tensor:
        """Item embeddings of ``ids`` (dropped out while training with ``item_dropout``)."""
        return self.item_dropout(self.item(ids))

    def to_items(self, h: torch.Tensor, width: int | None = None, item_width: int | None = None) -> torch.Tensor:
        """Hidden states as the item table scores them: Pᵀh at the table's width (h itself when tied);
        ``width``/``item_width``: a narrower candidate's slices of P."""
        if self.projection is None:
            return h
        return h @ self.projection.weight[:width, :item_width]

    def table(self) -> torch.Tensor:
        """The (I+1, D) output table (dropped out while training with ``item_dropout``)."""
        return self.item_dropout(self.item.weight)

    def forward(self, seq: torch.Tensor, extra: torch.Tensor | None = None, width: int | None = None,
                packing: Packing | None = None, item_width: int | None = None) -> torch.Tensor:
        """seq (B, N) right-padded -> (B, N, D), or the real positions (T, D) with ``packing``.
        width, item_width: embed with the first ``width`` features of the stream and the first
        ``item_width`` of the item table only (an elastic, narrower candidate)."""
        if packing is not None:
            ids, extra = packing.pack(seq), (packing.pack(extra) if extra is not None else None)
            position = self.position.weight[packing.inverse_positions if self.inverse else packing.positions]
        elif self.inverse:
            lengths = (seq > 0).sum(1, keepdim=True)
            ids, position = seq, self.position((lengths - 1 - torch.arange(seq.shape[1], device=seq.device)).clamp(min=0))
        else:
            ids, position = seq, self.position.weight[: seq.shape[1]]
        x = self.lookup(ids) if extra is None else extra
        if self.projection is not None and extra is None:
            e = item_width or x.shape[-1]
            x = x[..., :e] @ self.projection.weight[:width, :e].T
        if width is not None:
            x, position = x[..., :width], position[..., :width]
        if self.scale and extra is None:
            x = x * x.shape[-1] ** 0.5
        x = x + position
        return self.dropout(x if self.norm is None else sliced_layer_norm(x, self.norm))


@MODELS.register("sasrec")
class SASRec(SequentialRecommender):
    """Self-attentive sequential recommender: item + position embedding, a causal transformer stack."""

    def __init__(self, num_items: int, cfg: SeqModelConfig) -> None:
        super().__init__()
        self.num_items, self.config = num_items, cfg
        self.embedding = SequenceEmbedding.from_config(num_items, cfg)
        self.encoder = TransformerEncoder.from_config(cfg)
        self.init_weights(cfg.init_std)

    def encode(self, seq, lengths, last_only=False):
        packing = packing_for(lengths, seq.shape[1])
        e = self.embedding(seq, packing=packing)
        h = self.encoder(e, lengths, last_only, e if self.config.gates else None, packing)
        return self.embedding.to_items(h)

    def item_embeddings(self):
        return self.embedding.table()

    def row_wise_tables(self):
        """The item table, when no item dropout stands between it and the scores (positions are read by slices)."""
        return [self.embedding.item] if not self.config.item_dropout else []

    def scored_rows(self, ids):
        return self.embedding.item(ids) if self.embedding.item.sparse else super().scored_rows(ids)
