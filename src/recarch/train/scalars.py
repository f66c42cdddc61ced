"""Every epoch's scalars for TensorBoard (``run_dir/tensorboard/``), written when the optional
``tensorboard`` package is installed (``pip install 'recarch[tensorboard]'``); the run folder's
``metrics.csv`` holds the same numbers either way.

A history row's lists become one scalar each under the list's name (``alpha_softmax/0``, …): the
controllers' probabilities, τ and the resource term of a search sit beside the loss and the
validation metric."""
from __future__ import annotations

import math
from numbers import Number
from pathlib import Path
from typing import Dict, Optional


def scalars(row: Dict) -> Dict[str, float]:
    """The row's numbers by TensorBoard tag (lists spread over ``name/i``; text and None left out)."""
    out = {}
    for key, value in row.items():
        values = enumerate(value) if isinstance(value, (list, tuple)) else [(None, value)]
        for i, v in values:
            if isinstance(v, Number) and not isinstance(v, bool) and math.isfinite(v):
                out[key if i is None else f"{key}/{i}"] = float(v)
    return out


class ScalarLog:
    """Writes history rows to TensorBoard event files in ``folder`` (made on the first row)."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.writer = Path(folder), None

    @staticmethod
    def available() -> bool:
        try:
            import tensorboard  # noqa: F401
        except ImportError:
            return False
        return True

    def write(self, step: int, row: Dict) -> None:
        if self.writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.folder))
        for tag, value in scalars(row).items():
            self.writer.add_scalar(tag, value, step)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def scalar_log(run_dir: Optional[Path], enabled: bool) -> Optional[ScalarLog]:
    """A ScalarLog in ``run_dir/tensorboard`` when asked for and tensorboard is installed, else None."""
    return ScalarLog(Path(run_dir) / "tensorboard") if run_dir is not None and enabled and ScalarLog.available() else None
