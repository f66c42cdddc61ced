"""The CTR dataset registry: where each click data set's files live, how to get them, how to load them.

``get_ctr_dataset(name)`` resolves the data root (``data_dir``, ``$RECARCH_DATA``, the user cache),
checks the files are there (sha256 only when asked), then encodes them once into a memory-mapped
cache (:mod:`recarch.ctr.cache`) and returns a :class:`~recarch.ctr.table.CTRData`.

Registered data sets:

* ``frappe`` — the NFM libfm files; only ``frappe.test.libfm`` and ``frappe.validation.libfm`` are in
  the shared data (86,582 of 288,609 rows), so their union is the data and is re-split 8:1:1.
* ``ml-100k-ctr`` — MovieLens 100K as CTR, label = rating >= 4, from the RecBole atomic files or
  GroupLens' ``u.data``/``u.user``/``u.item`` (what ``recarch download ml-100k`` unpacks).
* ``ml-1m-ctr`` — MovieLens 1M as a click log: SASRec's ml-1m positives, one popularity-matched
  negative each (:mod:`recarch.ctr.readers.ml1m_ctr`), user and movie fields joined; about 2 M rows.
* ``criteo-sample``, ``avazu-sample`` (the first 999 rows of Avazu's train), ``movielens-sample`` —
  DeepCTR/other fixtures for parser and pipeline tests; far too small for accuracy claims.
* ``criteo``, ``avazu``, ``kdd12`` — the full Kaggle files, for users who have them (not shipped);
  random stratified 8:1:1 split with seed 2018 as in NASRec.

A user's own click log is read through ``data.table`` (:mod:`recarch.ctr.click_log`) instead of a name.

Default ``min_count``: 1, except criteo 10, avazu 2 and kdd12 10 (the thresholds of FuxiCTR's
Criteo_x4 / Avazu_x4 benchmark settings; kdd12 uses Criteo's); ``hash_buckets`` replaces the
vocabulary by hashing when memory for the vocabulary is short.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Tuple

from ..config import ConfigError
from ..data.datasets import DataFile, dataset_status, verify_files
from ..paths import data_root
from ..registry import Registry, suggest
from . import readers as R
from .click_log import ClickTableConfig
from .cache import (cached_encode, default_cache_root, encode_in_memory, file_fingerprints,
                    load_encoded, with_progress)
from .encode import ENCODING_VERSION, EncodeSettings
from .readers import RawChunk
from .table import CTRData

# chunks(paths of the present form, chunksize, skip_bad_rows) -> RawChunk stream
ChunkSource = Callable[[Tuple[Path, ...], int, bool], Iterable[RawChunk]]


@dataclass(frozen=True)
class CTRDatasetSpec:
    name: str
    description: str
    forms: Tuple[Tuple[DataFile, ...], ...]  # accepted sets of files, the first complete one is read
    chunks: ChunkSource
    source: str = ""  # where to get the files
    min_count: int = 1  # default vocabulary threshold
    reading: Optional[Dict] = None  # how a user's click log (data.table) is read: part of the cache key

    @property
    def files(self) -> Tuple[DataFile, ...]:
        return self.forms[0]

    def present_form(self, root: Path) -> Optional[Tuple[Path, ...]]:
        for form in self.forms:
            paths = tuple(root / f.path for f in form)
            if all(p.is_file() for p in paths):
                return paths
        return None

    def missing(self, root: Path) -> List[Path]:
        """Files of the first form absent under ``root`` (empty when any form is complete)."""
        if self.present_form(root) is not None:
            return []
        return [root / f.path for f in self.forms[0] if not (root / f.path).is_file()]

    def folder(self, root: Path) -> Path:
        return root / Path(self.forms[0][0].path).parent


CTR_DATASETS: Registry[CTRDatasetSpec] = Registry("CTR dataset")


def _add(spec: CTRDatasetSpec) -> CTRDatasetSpec:
    return CTR_DATASETS.register(spec.name)(spec)


# ---- chunk sources -----------------------------------------------------------------------------
def _each(reader: Callable[..., Iterator[RawChunk]]) -> ChunkSource:
    """The union of the files, in order, read with ``reader(path, chunksize=, skip_bad_rows=)``."""
    def chunks(paths: Tuple[Path, ...], chunksize: int, skip_bad_rows: bool) -> Iterator[RawChunk]:
        for p in paths:
            yield from reader(p, chunksize=chunksize, skip_bad_rows=skip_bad_rows)
    return chunks


def _movielens(paths: Tuple[Path, ...], chunksize: int, skip_bad_rows: bool) -> Iterator[RawChunk]:
    first = paths[0]
    if first.name == "u.data":
        return R.iter_movielens_grouplens(first.parent, chunksize, skip_bad_rows)
    return R.iter_movielens_atomic(first.parent, first.name[:-len(".inter")], chunksize, skip_bad_rows)


def _kdd12(paths: Tuple[Path, ...], chunksize: int, skip_bad_rows: bool) -> Iterator[RawChunk]:
    profiles = R.read_kdd12_profiles(paths[1], skip_bad_rows)
    return R.iter_kdd12(paths[0], profiles, chunksize, skip_bad_rows)


def _ml1m_ctr(paths: Tuple[Path, ...], chunksize: int, skip_bad_rows: bool) -> Iterator[RawChunk]:
    return R.iter_ml1m_ctr(paths[0].parent, chunksize, skip_bad_rows)


# ---- registrations -----------------------------------------------------------------------------
_KAGGLE_TERMS = "competition data: research use under the competition's terms; do not redistribute"

_add(CTRDatasetSpec(
    "frappe", "Frappe app usage (NFM's libfm test + validation files): 86,582 rows, 10 categorical "
    "fields, 1/3 positive; union re-split 8:1:1 stratified (seed 2018)",
    ((DataFile("frappe/frappe.test.libfm", "a2ebaef3a9af8e55f8bb0d08bc4923965e42e43760ebd7635ac2f8c5db99e097"),
      DataFile("frappe/frappe.validation.libfm", "fdf4be563a7dd9b15f7a6e8b32671e90e6e7a2a2bd3af4e10bf13c5ad7e76e9e")),),
    _each(R.iter_frappe),
    source="data/frappe/ of github hexiangnan/neural_factorization_machine (Baltrunas et al., "
           "arXiv 1505.03014; research use, no redistribution)",
))
_add(CTRDatasetSpec(
    "ml-100k-ctr", "MovieLens 100K as CTR (RecBole atomic files): 100,000 ratings, label = rating >= 4; "
    "fields user_id, item_id, age, gender, occupation, zip_code, release_year, first genre",
    ((DataFile("ml-100k/ml-100k.inter", "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff"),
      DataFile("ml-100k/ml-100k.user", "4f670007d9cfbeb9807e757209af1555b9bcc186bde25e767f67cb67c6dd5972"),
      DataFile("ml-100k/ml-100k.item", "51d7cdf777ce5c0f5b32c1d947a4a81fe07d75e78abbe761e0cd4d0756064532")),
     (DataFile("ml-100k/u.data"), DataFile("ml-100k/u.user"), DataFile("ml-100k/u.item"))),
    _movielens,
    source="RecBole's ml-100k atomic files (recbole/dataset_example/ml-100k in the recbole wheel), or "
           "GroupLens' ml-100k.zip unpacked into <data root>/ml-100k/ (`recarch download ml-100k` "
           "fetches it); research use only",
))
_add(CTRDatasetSpec(
    "ml-1m-ctr", "MovieLens 1M as a click log: SASRec's 999,611 ml-1m interactions (label 1), each with one "
    "popularity-matched negative (label 0): 1,999,222 rows; fields user_id, item_id, gender, age, occupation, "
    "zip_code, release_year, genre, genre2; 8:1:1 stratified split (seed 2018)",
    ((DataFile("ml-1m/ml-1m.sasrec.txt.gz", "7c5d534ef3a363c21c424a260fa8e4e0dd0237d8370eb1a250280afbf03fd7dd"),
      DataFile("ml-1m/sas_to_original_users.txt", "121893a66ab13fad83a67e12e3b3e6ddc56bcd01f0bcedf2ccb10bd8405e6239"),
      DataFile("ml-1m/sas_to_original_items.txt", "9ae42c23af0b0fe2f189b9d5acc6cf3936bffe1a9568390cf5d100c0c1b1fca1"),
      DataFile("ml-1m/users.dat", "1dc3a95300cb19f7c10e027daf29b8cdf1d908dab65b5edfb45950aa389a10a3"),
      DataFile("ml-1m/movies.dat", "0140fc2356357c1a851d0f52e893a1e4d3696df632c4141cea8d5bc3d621f0b9")),),
    _ml1m_ctr,
    source="the files of the sequential data set ml-1m (SASRec's data/ml-1m.txt gzipped, the id maps of github "
           "asash/ml1m-sas-mapping) and GroupLens users.dat and movies.dat (research use; do not redistribute); "
           "negatives drawn as recarch.ctr.readers.ml1m_ctr describes",
))
_add(CTRDatasetSpec(
    "criteo-sample", "Criteo sample (DeepCTR examples/criteo_sample.txt): 200 rows, 13 numeric + 26 "
    "categorical; a test fixture",
    ((DataFile("ctr-samples/criteo_sample.txt", "08b84f12a22438fb534e989a5e4fa245726b2bda001983556bc2aea2f094f724"),),),
    _each(R.iter_criteo),
    source="examples/criteo_sample.txt of github shenweichen/DeepCTR (Apache-2.0)",
))
_add(CTRDatasetSpec(
    "avazu-sample", "Avazu, the first 999 rows of the Kaggle train file (one hour, 159 clicks); a test fixture",
    ((DataFile("ctr-samples/avazu_head999.csv", "2ac6dd243d185b8349879675e12311434e6870fde85d9dbded74a0751d6756e6"),),),
    _each(R.iter_avazu),
    source="data/avazu_sample.txt of github Ringares/Pytorch_Prac (commit df50b6f); Avazu data under "
           "Kaggle's competition terms",
))
_add(CTRDatasetSpec(
    "movielens-sample", "MovieLens-1M sample (DeepCTR examples/movielens_sample.txt): 200 ratings as CTR, "
    "label = rating >= 4; a test fixture",
    ((DataFile("ctr-samples/movielens_sample.txt", "68e7d5f05253e3e55065e33c6068a13079bce904036969a610eccccab042c25f"),),),
    _each(R.iter_movielens_csv),
    source="examples/movielens_sample.txt of github shenweichen/DeepCTR (MovieLens data: GroupLens terms)",
))
_add(CTRDatasetSpec(
    "criteo", "Criteo Display Advertising Challenge (Kaggle 2014) train.txt: 45,840,617 rows, 13 numeric "
    "+ 26 categorical; 8:1:1 stratified split (seed 2018), min_count 10",
    ((DataFile("criteo/train.txt"),), (DataFile("criteo/train.txt.gz"),)),
    _each(R.iter_criteo),
    source="the Kaggle Display Advertising Challenge data set (dac.tar.gz, from Criteo AI Lab: "
           "https://ailab.criteo.com/ressources/ or "
           "https://go.criteo.net/criteo-research-kaggle-display-advertising-challenge-dataset.tar.gz); "
           "unpack train.txt into <data root>/criteo/; " + _KAGGLE_TERMS,
    min_count=10,
))
_add(CTRDatasetSpec(
    "avazu", "Avazu CTR Prediction (Kaggle 2014) train: 40,428,967 rows, 24 categorical fields "
    "(21 columns, hour of day, weekday, weekend); 8:1:1 stratified split (seed 2018), min_count 2",
    ((DataFile("avazu/train.gz"),), (DataFile("avazu/train"),), (DataFile("avazu/train.csv"),)),
    _each(R.iter_avazu),
    source="train.gz of the Kaggle competition avazu-ctr-prediction "
           "(https://www.kaggle.com/c/avazu-ctr-prediction/data), gzipped or not, into "
           "<data root>/avazu/; " + _KAGGLE_TERMS,
    min_count=2,
))
_add(CTRDatasetSpec(
    "kdd12", "KDD Cup 2012 track 2 training.txt: 149,639,105 rows, label = clicks > 0; numeric "
    "Impression, Depth, Position; 10 categorical (8 ids + gender, age from userid_profile.txt); "
    "8:1:1 stratified split (seed 2018), min_count 10",
    ((DataFile("kdd12/training.txt"), DataFile("kdd12/userid_profile.txt")),),
    _kdd12,
    source="training.txt and userid_profile.txt of the Kaggle competition kddcup2012-track2 "
           "(https://www.kaggle.com/c/kddcup2012-track2/data) into <data root>/kdd12/; " + _KAGGLE_TERMS,
    min_count=10,
))


# ---- public functions --------------------------------------------------------------------------
def _not_found(spec: CTRDatasetSpec, root: Path) -> FileNotFoundError:
    if spec.reading is not None:
        return FileNotFoundError(f"click log {spec.name!r}: missing {', '.join(str(p) for p in spec.missing(root))} "
                                 f"({spec.source})")
    msg = (f"CTR dataset {spec.name!r} is not under the data root {root} (set it with --data-dir or "
           f"$RECARCH_DATA); missing: {', '.join(str(p) for p in spec.missing(root))}.")
    if len(spec.forms) > 1:
        others = "; ".join(", ".join(str(root / f.path) for f in form) for form in spec.forms[1:])
        msg += f" Also accepted instead: {others}."
    if spec.source:
        msg += f" Get it from: {spec.source}."
    return FileNotFoundError(msg)


def table_dataset(table: ClickTableConfig) -> CTRDatasetSpec:
    """A user's click log (``data.table``) in the form of a registered data set."""
    return CTRDatasetSpec(table.name, f"click log {', '.join(str(p) for p, _ in table.files())}",
                          (tuple(DataFile(str(p)) for p, _ in table.files()),), table.chunks,
                          source="the files that data.table names", reading=table.reading_key())


def verify_ctr_dataset(name: str, data_dir: Optional[str] = None) -> Dict[str, str]:
    """sha256 of each present file that has a published hash: path -> 'ok'; raises on mismatch."""
    return _verify(CTR_DATASETS.get(name), data_root(data_dir))


def _verify(spec: CTRDatasetSpec, root: Path) -> Dict[str, str]:
    return verify_files([f for form in spec.forms for f in form], root)


def ctr_settings(spec: CTRDatasetSpec, paths: Tuple[Path, ...], settings: EncodeSettings,
                 skip_bad_rows: bool) -> dict:
    """Everything the encoded arrays depend on (the cache key is a hash of it)."""
    out = {"dataset": spec.name, "files": file_fingerprints(paths), "encode": settings.as_dict(),
           "skip_bad_rows": skip_bad_rows, "encoding_version": ENCODING_VERSION}
    if spec.reading is not None:
        out["reading"] = spec.reading
    return out


def get_ctr_dataset(name: str, data_dir: Optional[str] = None, min_count: Optional[int] = None,
                    hash_buckets: Optional[int] = None, seed: int = 2018, skip_bad_rows: bool = False,
                    cache: bool = True, *, cache_dir: Optional[str] = None, verify: bool = False,
                    progress: Optional[bool] = None, chunksize: int = R.DEFAULT_CHUNKSIZE,
                    table: Optional[ClickTableConfig] = None) -> CTRData:
    """Load a registered CTR data set, or with ``table`` a user's click log (:mod:`.click_log`),
    encoded (train-only vocabulary or hashing) and split 8:1:1 (or as the files are split).

    ``min_count`` defaults to the data set's own threshold. With ``cache`` the encoded arrays are
    built once under ``cache_dir`` (default: ``<data root>/.cache/ctr``, or the user cache when the
    data root is read-only) and returned memory-mapped; without it they are built in memory.
    Missing files raise FileNotFoundError naming the data root and where to get them; ``verify``
    checks published sha256s first; ``progress`` (default: only for inputs >= 64 MiB) shows a bar."""
    spec = table_dataset(table) if table is not None and table.enabled else CTR_DATASETS.get(name)
    name = spec.name
    root = data_root(data_dir)
    paths = spec.present_form(root)
    if paths is None:
        raise _not_found(spec, root)
    if verify:
        _verify(spec, root)
    settings = EncodeSettings(min_count=spec.min_count if min_count is None else min_count,
                              hash_buckets=hash_buckets, seed=seed)
    settings.validate()
    total = sum(p.stat().st_size for p in paths)

    def make_chunks() -> Iterable[RawChunk]:
        return with_progress(spec.chunks(paths, chunksize, skip_bad_rows), total,
                             f"encoding {name}", progress)

    if not cache:
        return encode_in_memory(name, make_chunks(), settings)
    cache_root = Path(cache_dir).expanduser() if cache_dir else default_cache_root(root)
    folder = cached_encode(name, make_chunks, settings, ctr_settings(spec, paths, settings, skip_bad_rows),
                           cache_root)
    return load_encoded(folder)


def ctr_dataset_status(data_dir: Optional[str] = None) -> List[dict]:
    """One row per registered CTR data set: name, present ('yes'/'no'), path, description."""
    return dataset_status(data_dir, CTR_DATASETS)


@dataclass
class CTRDataConfig:
    """The ``data`` section of a CTR run config."""

    dataset: str = "frappe"  # a registered CTR data set, unless data.table names your own files
    table: ClickTableConfig = field(default_factory=ClickTableConfig)
    min_count: Optional[int] = None  # None: the data set's default threshold
    hash_buckets: Optional[int] = None  # hash ids into this many rows per field instead of a vocabulary
    split_seed: int = 2018
    skip_bad_rows: bool = False

    @property
    def name(self) -> str:
        """For run folders and logs: the registered name, or the click log's file stem."""
        return self.table.name if self.table.enabled else self.dataset

    def validate(self) -> None:
        self.table.validate()
        if not self.table.enabled and self.dataset not in CTR_DATASETS:
            raise ConfigError(f"data.dataset: unknown CTR dataset {self.dataset!r}"
                              f"{suggest(self.dataset, CTR_DATASETS)}; registered: "
                              f"{', '.join(CTR_DATASETS.names())}")
        if self.min_count is not None and self.min_count < 1:
            raise ConfigError(f"data.min_count must be >= 1, got {self.min_count}")
        if self.hash_buckets is not None and self.hash_buckets < 2:
            raise ConfigError(f"data.hash_buckets must be >= 2 (id 0 is kept for missing), "
                              f"got {self.hash_buckets}")

    def load(self, data_dir: Optional[str] = None, cache: bool = True,
             cache_dir: Optional[str] = None, progress: Optional[bool] = None) -> CTRData:
        self.validate()
        return get_ctr_dataset(self.dataset, data_dir, min_count=self.min_count,
                               hash_buckets=self.hash_buckets, seed=self.split_seed,
                               skip_bad_rows=self.skip_bad_rows, cache=cache, cache_dir=cache_dir,
                               progress=progress, table=self.table)
