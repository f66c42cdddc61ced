"""Training iHAS's retrained models: one backbone (a group model or a baseline) with early stopping, or
the whole shared-table ensemble at once (:class:`GroupsTrainer`)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict

import numpy as np
import torch
from torch import nn

from recarch.ctr.run import CTREvaluator, CTRTrainer
from recarch.ctr.table import CTRData, CTRTable, TrainBatches
from recarch.io import write_json_atomic
from recarch.train import TrainConfig


class SubsetEvaluator(CTREvaluator):
    """AUC and log loss on a split that may hold one class only (a small group): AUC is then ½, so
    early stopping on AUC − log loss follows the log loss."""

    def evaluate(self, model, split, protocols=None):
        label = np.asarray(self.data.split(split).label)
        if 0 < label.sum() < len(label):
            return super().evaluate(model, split, protocols)
        from recarch.ctr.metrics import log_loss
        loss = log_loss(label, self.probabilities(model, split))
        return {"ctr": {"auc": 0.5, "logloss": loss, "neg_logloss": -loss, "auc-logloss": 0.5 - loss, "rows": len(label)}}


def subset(table: CTRTable, rows: np.ndarray) -> CTRTable:
    return CTRTable(np.asarray(table.cat)[rows], np.asarray(table.num)[rows], np.asarray(table.label)[rows])


class GroupsTrainer(CTRTrainer):
    """An ensemble with shared tables trained on all the data: every group model scores every training row
    and the loss is the mean of the groups' (validation, through CTRTrainer's evaluator, runs the routed
    ensemble)."""

    def forward_batch(self, cat: torch.Tensor, num: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        return torch.stack([model(cat, num) for model in self.model.models])


def fit_model(model: nn.Module, data: CTRData, train_cfg: TrainConfig, run_dir: Path, log, eval_batch_size: int,
              trainer_cls=CTRTrainer) -> Dict[str, Any]:
    """Train with the CTR trainer (early stopping on validation), keep the best epoch, evaluate it."""
    evaluator = SubsetEvaluator(data, eval_batch_size)
    trainer = trainer_cls(model, TrainBatches(data.train, train_cfg.batch_size, train_cfg.seed), evaluator, train_cfg,
                         run_dir, log=log)
    fit = trainer.fit()
    trainer.load_best()
    model.eval()
    write_json_atomic(Path(run_dir) / "history.json", fit["history"])
    return {"best_epoch": fit["best_epoch"], "epochs_run": fit["epoch"], "train_seconds": fit["train_seconds"]}


def evaluate_both(model: nn.Module, data: CTRData, batch_size: int) -> Dict[str, Dict]:
    ev = CTREvaluator(data, batch_size)
    return {s: ev.evaluate(model, s)["ctr"] for s in ("valid", "test")}
