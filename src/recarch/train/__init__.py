"""Training: losses, the loop, checkpoints."""
from recarch.train.trainer import Trainer, TrainConfig, TrainHooks, TrainingDiverged

__all__ = ["Trainer", "TrainConfig", "TrainHooks", "TrainingDiverged"]
