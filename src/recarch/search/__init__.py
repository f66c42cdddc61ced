"""Architecture search: EASRec's elastic supernet, resource constraint, strategies and the search job."""
from recarch.search import darts, oneshot, proxylessnas, recnas  # noqa: F401  (registration)
from recarch.search.easrec import STRATEGIES, ArchitectConfig, EASRecArchitect
from recarch.search.supernet import EASRecSupernet, SearchSpaceConfig, candidate_widths, relax

__all__ = ["STRATEGIES", "ArchitectConfig", "EASRecArchitect", "EASRecSupernet", "SearchSpaceConfig",
           "candidate_widths", "relax"]

from recarch.search import elastic_search, front, random_search  # noqa: E402,F401  (register their flows; they import the job)
