"""How a training ended: by patience (its validation score stopped improving) or by its epoch cap while
it still improved — a "capped" run, whose score is not evidence of converged accuracy."""
from __future__ import annotations


def stopped_by(epochs_run: int, best_epoch: int, patience: int) -> str:
    """``"patience"`` when the last ``patience`` epochs brought no better validation score, else ``"cap"``."""
    return "patience" if patience > 0 and epochs_run - best_epoch >= patience else "cap"
