"""recarch: automated architecture design of recommender models."""
__version__ = "0.1.0"
