"""DARTS as a strategy on EASRec's search space (a baseline of the paper's Table III)."""
from __future__ import annotations

from recarch.search.easrec import STRATEGIES, EASRecArchitect


@STRATEGIES.register("darts")
class DARTSArchitect(EASRecArchitect):
    """DARTS (Liu et al., ICLR 2019) on the same space: softmax relaxation, first-order bilevel steps,
    no resource term, no gates; argmax derive. (DARTS also has a second-order step; we keep first
    order, as EASRec does.)"""

    paper_name = "DARTS"

    space_overrides = {"gates": 0, "relaxation": "softmax"}
    uses_resource = False
