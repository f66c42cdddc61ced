"""Sequential recommenders; importing this package registers every model."""
from recarch.models import features, sasrec  # noqa: F401  (registration)
from recarch.models.base import MODELS, SeqModelConfig, SequentialRecommender, build_model

__all__ = ["MODELS", "SeqModelConfig", "SequentialRecommender", "build_model"]
