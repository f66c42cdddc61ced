"""iHAS search stage: the backbone, its block-gated embedding and the gate network trained jointly.

The loss is the click log loss plus λ_s · sparsity + λ_b · bi-polarisation (recarch.ihas.gates). The
regularisers are off for the first ``reg_warmup_epochs`` epochs and then ramped in linearly over
``reg_ramp_epochs``: embeddings start near zero (std 1e-4), so at first the log loss says nothing about
a block (∂L/∂z ∝ the block's values) while Adam would turn even a tiny regulariser gradient into
full-size steps on the gate biases — without the warm-up the gates close before the embeddings have
learnt anything, and a closed block gets no gradient to reopen it. The gate network gets its own learning rate (``gate_lr``). The search
runs a fixed number of epochs (``search.patience`` 0 by default) and keeps the last weights: the
validation score, taken with deterministic gates, is logged with the active fraction but does not pick
the epoch, since the sparsity target is reached only towards the end.
"""
from __future__ import annotations

import math
from typing import Dict, Iterator, Optional, Tuple

import torch
from torch import nn

from recarch.ctr.models import FieldEmbedding, build_ctr_model
from recarch.ctr.run import CTREvaluator, CTRTrainer
from recarch.ctr.table import CTRData, CTRSchema, CTRTable, TrainBatches, batches
from recarch.devices import move
from recarch.ihas.cluster import PatternCollector, Patterns
from recarch.ihas.config import IHASConfig
from recarch.ihas.embedding import BlockMaskedEmbedding
from recarch.ihas.gates import Gates, bipolar_loss, sparsity_loss
from recarch.modes import eval_mode
from recarch.train import TrainHooks
from recarch.train.optimizers import decay_groups, make_optimizer



def field_weights(schema: CTRSchema, weighting: str) -> Optional[torch.Tensor]:
    """Per-field weights of the active fraction: ``params`` — vocab_f / Σ vocab (each block of field f
    costs vocab_f × block columns, so the weighted fraction is the embedding-parameter fraction);
    ``dims`` — equal (the fraction of dimensions)."""
    if weighting == "dims":
        return None
    vocab = torch.tensor(schema.vocab_sizes, dtype=torch.float32)
    return vocab / vocab.sum()


def build_search_model(schema: CTRSchema, cfg: IHASConfig) -> nn.Module:
    torch.manual_seed(cfg.search.seed)
    model = build_ctr_model(schema, cfg.model)
    if not isinstance(getattr(model, "embedding", None), FieldEmbedding):
        raise ValueError(f"backbone {cfg.model.name!r} has no FieldEmbedding `embedding`; iHAS supports "
                         "dlrm, deepfm, dcnv2 and autoint")
    model.embedding = BlockMaskedEmbedding(model.embedding, Gates(schema, cfg.blocks, cfg.gate), cfg.blocks)
    return model


class SearchTrainer(CTRTrainer):
    def __init__(self, model: nn.Module, data: CTRData, cfg: IHASConfig, evaluator, run_dir, log) -> None:
        train_batches = TrainBatches(data.train, cfg.search.batch_size, cfg.search.seed)
        super().__init__(model, train_batches, evaluator, cfg.search, run_dir, log=log,
                         hooks=SearchHooks(model, data.valid, cfg.eval_batch_size,
                                            field_weights(data.schema, cfg.target_weighting), log))
        gate_ids = {id(p) for p in model.embedding.gates.parameters()}
        groups = decay_groups(model, [p for p in self.params if id(p) not in gate_ids], cfg.search)
        groups.append({"params": [p for p in self.params if id(p) in gate_ids], "lr": cfg.gate_lr,
                       "weight_decay": cfg.search.weight_decay})
        self.optimizer = make_optimizer(cfg.search.optimizer, groups, cfg.search.lr)
        self.ihas = cfg
        self.weights = field_weights(data.schema, cfg.target_weighting)
        self.warmup_steps = math.ceil(cfg.reg_warmup_epochs * len(train_batches))
        self.ramp_steps = math.ceil(cfg.reg_ramp_epochs * len(train_batches))

    def loss(self, cat: torch.Tensor, num: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        loss = super().loss(cat, num, label)
        prob = self.model.embedding.last_prob
        ramp = regulariser_scale(self.state["step"], self.warmup_steps, self.ramp_steps)
        if ramp == 0:
            return loss
        weights = None if self.weights is None else self.weights.to(prob.device)
        reg = self.ihas.sparsity_weight * sparsity_loss(prob, self.ihas.target, weights, self.ihas.one_sided)
        if self.ihas.bipolar_weight:
            reg = reg + self.ihas.bipolar_weight * bipolar_loss(prob)
        return loss + ramp * reg


def regulariser_scale(step: int, warmup_steps: int, ramp_steps: int) -> float:
    """0 during the warm-up, then linear up to 1 over ``ramp_steps`` (``step`` counts finished steps)."""
    if step < warmup_steps:
        return 0.0
    return min(1.0, (step - warmup_steps + 1) / ramp_steps) if ramp_steps > 0 else 1.0


class SearchHooks(TrainHooks):
    """After each epoch: the deterministic gates' active fractions and distinct patterns on validation."""

    def __init__(self, model: nn.Module, valid: CTRTable, batch_size: int, weights: Optional[torch.Tensor],
                 log=print) -> None:
        self.model, self.valid, self.batch_size, self.weights, self.log = model, valid, batch_size, weights, log

    def after_epoch(self, epoch: int, stats: Dict) -> None:
        patterns, _ = gate_outputs(self.model, self.valid, self.batch_size)
        summary = pattern_summary(patterns, self.weights)
        stats.update(summary)
        self.log(f"search epoch {epoch}: deterministic gates keep {summary['active_dims_fraction']:.1%} of the "
                 f"dimensions, {summary['active_params_fraction']:.1%} of the embedding parameters; "
                 f"{summary['distinct_patterns']} distinct patterns on validation")


def pattern_summary(patterns: Patterns, weights: Optional[torch.Tensor]) -> Dict:
    """The rows' mean active fractions (as :func:`~recarch.ihas.gates.active_fraction`: each distinct pattern's, weighted by
    its share of the rows) and the number of distinct patterns."""
    share = patterns.counts.double() / len(patterns)
    per_field = patterns.codes.double().mean(-1)  # (P, F)
    by_params = per_field.mean(-1) if weights is None else (per_field * weights.double()).sum(-1)
    return {"active_dims_fraction": float(share @ per_field.mean(-1)),
            "active_params_fraction": float(share @ by_params),
            "distinct_patterns": len(patterns.codes)}


@torch.no_grad()
def gate_outputs(model: nn.Module, table: CTRTable, batch_size: int) -> Tuple[Patterns, torch.Tensor]:
    """With deterministic gates: the rows' patterns, and σ(logits) averaged over the rows (F, K)."""
    emb: BlockMaskedEmbedding = model.embedding
    device = next(model.parameters()).device
    patterns, total = PatternCollector(), 0.0
    with eval_mode(model), torch.no_grad():
        for cat, num, _ in batches(table, batch_size):
            logits = emb.gates.logits(move(cat, device), move(num, device)).cpu()
            patterns.add(logits > 0)
            total = total + torch.sigmoid(logits).sum(0, dtype=torch.float64)
    return patterns.result(), (total / len(table)).float()


def masked_tokens(model: nn.Module, table: CTRTable, batch_size: int) -> Iterator[torch.Tensor]:
    """Batch by batch, the rows' categorical tokens with the deterministic gates' closed blocks zeroed,
    flattened (B, F·width): what ``embeddings`` clustering compares."""
    emb: BlockMaskedEmbedding = model.embedding
    device = next(model.parameters()).device
    with eval_mode(model), torch.no_grad():
        for cat, num, _ in batches(table, batch_size):
            yield emb.deterministic(move(cat, device), move(num, device))[1].flatten(1).cpu()


def run_search(cfg: IHASConfig, data: CTRData, run_dir, log, resume: bool = False) -> Tuple[nn.Module, Dict]:
    model = build_search_model(data.schema, cfg)
    evaluator = CTREvaluator(data, cfg.eval_batch_size)
    trainer = SearchTrainer(model, data, cfg, evaluator, run_dir, log)
    log(f"search: {cfg.model.name} with {cfg.blocks} blocks × {model.embedding.block_size} columns per field, "
        f"{cfg.gate.estimator} gates, target {cfg.target:.2f} ({cfg.target_weighting}), "
        f"λ_sparsity {cfg.sparsity_weight}, λ_bipolar {cfg.bipolar_weight}")
    fit = trainer.fit(resume=resume and trainer.can_resume())
    last = fit["history"][-1]
    info = {"epochs": fit["epoch"], "seconds": fit["train_seconds"], "history": fit["history"],
            "valid_score_last": last[f"valid_{cfg.search.valid_metric}"],
            **{k: last[k] for k in ("active_dims_fraction", "active_params_fraction", "distinct_patterns")}}
    return model.eval(), info
