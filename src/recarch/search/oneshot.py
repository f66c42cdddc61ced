"""One-shot search without controllers, on EASRec's supernet (a baseline for its controllers)."""
from __future__ import annotations

from recarch.search.easrec import STRATEGIES
from recarch.train.trainer import TrainHooks


@STRATEGIES.register("oneshot")
class OneShot(TrainHooks):
    """Once-for-all / BigNAS (Cai et al., ICLR 2020; Yu et al., ECCV 2020) on the same space: the
    supernet's weights train alone (path by path with ``supernet.rule: sandwich``), no architecture
    step, and the derive keeps the path within the budget that scores best on the validation set with
    the supernet's weights (``derive_by: validation``). What EASRec's controllers must beat."""

    paper_name = "One-shot"

    space_overrides: dict = {}
    has_controllers = False
    flow = "supernet"

    def __init__(self, supernet, constraint, cfg, loss_fn, valid, dist=None) -> None:
        """The architect's signature (see EASRecArchitect); there is nothing to step."""
