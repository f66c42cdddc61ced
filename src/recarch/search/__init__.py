"""Architecture search: EASRec's elastic supernet (strategies, constraint and CLI to follow)."""
from recarch.search.supernet import EASRecSupernet, SearchSpaceConfig, candidate_widths, relax

__all__ = ["EASRecSupernet", "SearchSpaceConfig", "candidate_widths", "relax"]
