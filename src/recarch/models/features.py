"""Item-feature models: FDSA (Zhang et al., IJCAI 2019) and SASRecF (RecBole's feature-fused SASRec).

Both read a fixed (I+1, F) table of feature ids per item (0 = none) and pool an item's feature
embeddings by their mean (RecBole's FDSA pools with a vanilla attention; mean is our choice).
"""
from __future__ import annotations

import torch
from torch import nn

from recarch.models.layers import TransformerEncoder
from recarch.models.packing import packing_for
from recarch.models.base import MODELS, SeqModelConfig, SequentialRecommender
from recarch.models.sasrec import SequenceEmbedding


class FeaturePooling(nn.Module):
    """Mean of an item's feature embeddings: (B, N) item ids -> (B, N, D)."""

    def __init__(self, item_features: torch.Tensor, num_features: int, hidden: int) -> None:
        super().__init__()
        self.register_buffer("item_features", item_features.long(), persistent=False)
        self.embedding = nn.Embedding(num_features + 1, hidden, padding_idx=0)

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        ids = self.item_features[seq]  # (B, N, F)
        summed = self.embedding(ids).sum(-2)
        count = (ids > 0).sum(-1, keepdim=True).clamp(min=1)
        return summed / count


def _encoder(cfg: SeqModelConfig) -> TransformerEncoder:
    return TransformerEncoder.from_config(cfg, gates=0)


class FeatureRecommender(SequentialRecommender):
    """Shared parts: the item stream's embedding (also the output table) and the feature pooling."""

    uses_features = True

    def __init__(self, num_items: int, cfg: SeqModelConfig, item_features: torch.Tensor,
                 num_features: int) -> None:
        super().__init__()
        self.num_items, self.config = num_items, cfg
        self.embedding = SequenceEmbedding.from_config(num_items, cfg)
        self.features = FeaturePooling(item_features, num_features, cfg.hidden_size)

    def item_embeddings(self):
        return self.embedding.table()


@MODELS.register("fdsa")
class FDSA(FeatureRecommender):
    """Two self-attention streams, one over items and one over pooled item features; their outputs
    are concatenated and projected back to D."""

    def __init__(self, num_items: int, cfg: SeqModelConfig, item_features: torch.Tensor,
                 num_features: int) -> None:
        super().__init__(num_items, cfg, item_features, num_features)
        self.feature_embedding = SequenceEmbedding.from_config(None, cfg)
        self.item_encoder, self.feature_encoder = _encoder(cfg), _encoder(cfg)
        self.concat = nn.Linear(2 * cfg.hidden_size, cfg.hidden_size)
        self.init_weights(cfg.init_std)

    def encode(self, seq, lengths, last_only=False):
        packing = packing_for(lengths, seq.shape[1])
        items = self.item_encoder(self.embedding(seq, packing=packing), lengths, last_only, packing=packing)
        feats = self.feature_encoder(self.feature_embedding(seq, self.features(seq), packing=packing), lengths,
                                     last_only, packing=packing)
        return self.concat(torch.cat([items, feats], dim=-1))


@MODELS.register("sasrecf")
class SASRecF(FeatureRecommender):
    """One stream whose input fuses each item's embedding with its pooled feature embedding
    (concatenate, then a linear map to D)."""

    def __init__(self, num_items: int, cfg: SeqModelConfig, item_features: torch.Tensor,
                 num_features: int) -> None:
        super().__init__(num_items, cfg, item_features, num_features)
        self.fuse = nn.Linear(2 * cfg.hidden_size, cfg.hidden_size)
        self.encoder = _encoder(cfg)
        self.init_weights(cfg.init_std)

    def encode(self, seq, lengths, last_only=False):
        packing = packing_for(lengths, seq.shape[1])
        fused = self.fuse(torch.cat([self.embedding.lookup(seq), self.features(seq)], dim=-1))
        return self.encoder(self.embedding(seq, fused, packing=packing), lengths, last_only, packing=packing)
