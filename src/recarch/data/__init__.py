"""Data layer: readers for interaction files, preprocessing into per-user sequences, a dataset registry.

``get_dataset(name)`` is the entry point; ``build_sequences`` turns any reader's table into a SequenceDataset.
"""
from .datasets import DATASETS, DatasetSpec, dataset_status, download_dataset, get_dataset, verify_dataset
from .errors import DataFormatError
from .preprocess import Preprocessing, build_sequences, id_map_texts, load_id_maps, save_id_maps
from .tables import read_table
from .sequences import ItemFeatures, SequenceDataset

__all__ = [
    "DATASETS", "DatasetSpec", "DataFormatError", "ItemFeatures", "Preprocessing", "SequenceDataset",
    "build_sequences", "dataset_status", "read_table", "download_dataset", "get_dataset", "load_id_maps",
    "save_id_maps", "id_map_texts", "verify_dataset",
]
