"""The dataset registry: where each sequential data set's files live, how to get them, how to load them.

``get_dataset(name)`` resolves the data root (``--data-dir``, ``$RECARCH_DATA``, the user cache),
checks the files are there (sha256 only when asked), and returns a SequenceDataset.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import pandas as pd

from ..paths import data_root
from ..registry import Registry
from . import readers as R
from .tables import epoch_seconds
from .download import download as fetch_url
from .download import sha256_file
from .errors import DataFormatError
from .preprocess import Preprocessing, build_sequences
from .sequences import SequenceDataset


@dataclass(frozen=True)
class DataFile:
    path: str  # relative to the data root
    sha256: Optional[str] = None  # from the folder's SOURCE.md; None where none is published


@dataclass(frozen=True)
class Download:
    url: str
    sha256: str  # of the archive
    into: str = "."  # folder under the data root that the archive is unpacked into
    checksum_source: str = ""


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    description: str
    files: Tuple[DataFile, ...]
    load: Callable[..., SequenceDataset]  # load(root: Path, skip_bad_rows: bool = False, prep=Preprocessing())
    download: Optional[Download] = None
    alt_files: Tuple[DataFile, ...] = ()  # another accepted form (e.g. what the download unpacks)
    source: str = ""  # where to get the files by hand

    def missing(self, root: Path) -> List[Path]:
        """Required files absent under ``root`` (empty when either accepted form is complete)."""
        gone = [root / f.path for f in self.files if not (root / f.path).is_file()]
        if gone and self.alt_files and all((root / f.path).is_file() for f in self.alt_files):
            return []
        return gone

    def folder(self, root: Path) -> Path:
        return root / Path(self.files[0].path).parent


DATASETS: Registry[DatasetSpec] = Registry("dataset")


def _add(spec: DatasetSpec) -> DatasetSpec:
    return DATASETS.register(spec.name)(spec)


# ---- loaders -----------------------------------------------------------------------------------
def _load_ml100k(root: Path, skip_bad_rows: bool = False,
        prep: Preprocessing = Preprocessing()) -> SequenceDataset:
    d = root / "ml-100k"
    if (d / "ml-100k.inter").is_file():
        df = R.read_atomic_inter(d / "ml-100k.inter", skip_bad_rows)
        items = R.read_atomic(d / "ml-100k.item", skip_bad_rows)
        feats = R.atomic_item_features(items, {"class": "genre", "release_year": "year"})
        # release_year holds 'unkonwn' for one item
        feats = feats[~feats["feature"].str.startswith("year=")
                      | feats["feature"].str.fullmatch(r"year=\d{4}")]
    else:  # GroupLens ml-100k.zip as unpacked
        df = R.read_ml100k_ratings(d / "u.data", skip_bad_rows)
        feats = R.movielens_item_features(R.read_ml100k_items(d / "u.item", skip_bad_rows))
    return build_sequences(df, "ml-100k", item_features=feats, **prep.kwargs())


def _load_ml1m_sasrec(root: Path, skip_bad_rows: bool = False,
        prep: Preprocessing = Preprocessing()) -> SequenceDataset:
    d = root / "ml-1m"
    df = R.read_user_item_pairs(d / "ml-1m.sasrec.txt.gz", skip_bad_rows=skip_bad_rows)
    movie_feats = R.movielens_item_features(R.read_movielens_movies(d / "movies.dat", skip_bad_rows))
    to_movie = R.read_delimited(d / "sas_to_original_items.txt", ("item", "movie"), " ",
                                skip_bad_rows=skip_bad_rows)
    to_movie["movie"] = to_movie["movie"].astype(str)
    # features are keyed by MovieID; the sequences use SASRec's item ids
    feats = to_movie[["item", "movie"]].merge(movie_feats.rename(columns={"item": "movie"}),
                                               on="movie")[["item", "feature"]]
    return build_sequences(df, "ml-1m", item_features=feats, **prep.kwargs())


def _load_ml1m_raw(root: Path, skip_bad_rows: bool = False,
        prep: Preprocessing = Preprocessing()) -> SequenceDataset:
    d = root / "ml-1m"
    df = R.read_movielens_ratings(d / "ratings.dat", skip_bad_rows)
    feats = R.movielens_item_features(R.read_movielens_movies(d / "movies.dat", skip_bad_rows))
    return build_sequences(df, "ml-1m-raw", item_features=feats, **prep.kwargs())


def _pairs_loader(name: str, rel: str) -> Callable[..., SequenceDataset]:
    def load(root: Path, skip_bad_rows: bool = False,
        prep: Preprocessing = Preprocessing()) -> SequenceDataset:
        return build_sequences(R.read_user_item_pairs(root / rel, skip_bad_rows=skip_bad_rows), name, **prep.kwargs())
    return load


def _s3rec_loader(name: str, stem: str) -> Callable[..., SequenceDataset]:
    def load(root: Path, skip_bad_rows: bool = False,
        prep: Preprocessing = Preprocessing()) -> SequenceDataset:
        d = root / "s3rec-amazon-yelp-lastfm"
        df = R.read_user_sequences(d / f"{stem}.txt", skip_bad_rows=skip_bad_rows)
        feats = R.read_item_attributes_json(d / f"{stem}_item2attributes.json")
        return build_sequences(df, name, item_features=feats, **prep.kwargs())
    return load


def _load_gowalla_checkins(root: Path, skip_bad_rows: bool = False,
        prep: Preprocessing = Preprocessing()) -> SequenceDataset:
    df = R.read_delimited(root / "gowalla-checkins" / "Gowalla_checkins.txt",
                          ("user", "item", "timestamp"), "\t", skip_bad_rows=skip_bad_rows)
    # the file is newest-first per user: among equal times the later line is the older check-in
    df["order"] = -df["order"]
    return build_sequences(df, "gowalla-checkins", **prep.kwargs())


def _load_gowalla(root: Path, skip_bad_rows: bool = False,
        prep: Preprocessing = Preprocessing()) -> SequenceDataset:
    d = root / "gowalla"
    if (d / "gowalla.inter").is_file():
        df = R.read_atomic_inter(d / "gowalla.inter", skip_bad_rows)
    else:
        path = d / "loc-gowalla_totalCheckins.txt.gz"
        df = R.read_delimited(path, ("user", "time", "lat", "lon", "item"), "\t",
                              skip_bad_rows=skip_bad_rows)
        t = pd.to_datetime(df["time"], format="%Y-%m-%dT%H:%M:%SZ", errors="coerce", utc=True)
        if t.isna().any():
            r = int(t.isna().to_numpy().argmax())
            raise DataFormatError(str(path), r + 1, "time", "an ISO time like 2010-10-19T23:55:27Z",
                                    repr(df["time"].iloc[r]))
        df = df[["user", "item", "order"]].assign(timestamp=epoch_seconds(t))
        df["order"] = -df["order"]  # SNAP lists each user's check-ins newest first
    # the EASRec/LinRec runs keep users and items with >= 5 interactions
    return build_sequences(df, "gowalla", **prep.kwargs(k_core=5))


def _load_douban(root: Path, skip_bad_rows: bool = False,
        prep: Preprocessing = Preprocessing()) -> SequenceDataset:
    return build_sequences(R.read_atomic_inter(root / "douban" / "douban.inter", skip_bad_rows),
                           "douban", **prep.kwargs())


# ---- registrations -----------------------------------------------------------------------------
_GROUPLENS = "tensorflow/datasets tensorflow_datasets/url_checksums/movielens.txt"
_S3REC = {
    "Beauty": ("226cce9c3105299ca0db9615d7d3fb32b3175e90da43100ae352599f0f0107b8",
               "129e40f67486f6877eff0f5318cfa8530ee8ac23d8b0d1de04e1bb7a2ba0b2d4"),
    "Toys_and_Games": ("176c680c688d497598c4a89a03b402c0fe78d795e5db335c2e78dd5f2d778a3f",
                       "d371acd25101eedac04afc727626464b7acec770c4eda708705d51eb76eb1ad0"),
    "Yelp": ("724b219106b81dd2349027da997334ddb6da9fe2f152ad6e0d97a93170f7caed",
             "f25acd5e1e680e0b22fd4e3f4fb6be4b2a7461e9222610616e3e1ee6702dd58d"),
    "LastFM": ("9ded486adb5b0fe9dc761950afa0a9a05e93ff018992e0c52bf11afec529f802",
               "a4ccd678dc9ff6d43fe5073f491db5c9b02eb98dfa4f8c0382913a784be217ef"),
}
_MOVIES_DAT = DataFile("ml-1m/movies.dat", "0140fc2356357c1a851d0f52e893a1e4d3696df632c4141cea8d5bc3d621f0b9")

_add(DatasetSpec(
    "ml-100k", "MovieLens 100K (RecBole atomic files): 943 users, 1,682 items, 100,000 ratings "
    "with timestamps; item features genre + release year",
    (DataFile("ml-100k/ml-100k.inter", "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff"),
     DataFile("ml-100k/ml-100k.item", "51d7cdf777ce5c0f5b32c1d947a4a81fe07d75e78abbe761e0cd4d0756064532")),
    _load_ml100k,
    Download("https://files.grouplens.org/datasets/movielens/ml-100k.zip",
             "50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229", ".", _GROUPLENS),
    alt_files=(DataFile("ml-100k/u.data"), DataFile("ml-100k/u.item")),
    source="GroupLens, https://grouplens.org/datasets/movielens/100k/ (research use; do not "
           "redistribute), or RecBole's ml-100k atomic files",
))
_add(DatasetSpec(
    "ml-1m", "MovieLens 1M as preprocessed for SASRec: 6,040 users, 3,416 items, 999,611 "
    "interactions in file (time) order, no timestamps; item features genre + year via movies.dat",
    (DataFile("ml-1m/ml-1m.sasrec.txt.gz", "7c5d534ef3a363c21c424a260fa8e4e0dd0237d8370eb1a250280afbf03fd7dd"),
     DataFile("ml-1m/sas_to_original_items.txt", "9ae42c23af0b0fe2f189b9d5acc6cf3936bffe1a9568390cf5d100c0c1b1fca1"),
     _MOVIES_DAT),
    _load_ml1m_sasrec,
    source="SASRec's data/ml-1m.txt (github kang205/SASRec) gzipped as ml-1m.sasrec.txt.gz, the id "
           "map sas_to_original_items.txt (github asash/ml1m-sas-mapping) and GroupLens movies.dat; "
           "for the raw GroupLens ratings use dataset 'ml-1m-raw'",
))
_add(DatasetSpec(
    "ml-1m-raw", "MovieLens 1M from GroupLens ratings.dat: 6,040 users, 3,706 items, 1,000,209 "
    "ratings sorted by timestamp (ties in file order), no filtering; genre + year features",
    (DataFile("ml-1m/ratings.dat"), _MOVIES_DAT),
    _load_ml1m_raw,
    Download("https://files.grouplens.org/datasets/movielens/ml-1m.zip",
             "a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20", ".", _GROUPLENS),
    source="GroupLens, https://grouplens.org/datasets/movielens/1m/ (research use; do not redistribute)",
))
_add(DatasetSpec(
    "amazon-games", "Amazon Video Games as preprocessed for SASRec ('Games'): 31,013 users, "
    "23,715 items, 287,107 interactions, file (time) order",
    (DataFile("amazon-video-games/Video.txt", "b7376fe24430743f411dc7f567285657b2adb3f74361cc7ba0aee94f3024b651"),),
    _pairs_loader("amazon-games", "amazon-video-games/Video.txt"),
    source="data/Video.txt of github kang205/SASRec",
))
_add(DatasetSpec(
    "beauty-bert4rec", "Amazon Beauty as preprocessed for BERT4Rec: 40,226 users, 54,542 items, "
    "353,962 interactions, file (time) order",
    (DataFile("amazon-beauty-bert4rec/beauty.txt", "f480b7a7403852342ffd8f9809bb30697dd669be31813d0e204b698fec86ef49"),),
    _pairs_loader("beauty-bert4rec", "amazon-beauty-bert4rec/beauty.txt"),
    source="data/beauty.txt of github FeiSun/BERT4Rec",
))
for _name, _stem, _desc in (
        ("beauty", "Beauty", "Amazon Beauty (S3-Rec, 5-core): 22,363 users, 12,101 items, 198,502"),
        ("toys", "Toys_and_Games", "Amazon Toys and Games (S3-Rec): 19,412 users, 11,924 items, 167,597"),
        ("yelp", "Yelp", "Yelp (S3-Rec): 30,431 users, 20,033 items, 316,354"),
        ("lastfm", "LastFM", "LastFM (S3-Rec): 1,090 users, 3,646 items, 52,551")):
    _add(DatasetSpec(
        _name, _desc + " interactions; item attributes (categories/brand/tags) as features",
        (DataFile(f"s3rec-amazon-yelp-lastfm/{_stem}.txt", _S3REC[_stem][0]),
         DataFile(f"s3rec-amazon-yelp-lastfm/{_stem}_item2attributes.json", _S3REC[_stem][1])),
        _s3rec_loader(_name, _stem),
        source=f"data/{_stem}.txt and data/{_stem}_item2attributes.json of github RUCAIBox/CIKM2020-S3Rec",
    ))
_add(DatasetSpec(
    "gowalla-checkins", "Gowalla check-ins, 1,000-user subset (LBSNDatasets Gowalla_3): 24,209 POIs, "
    "157,251 check-ins sorted by time (the file is newest-first)",
    (DataFile("gowalla-checkins/Gowalla_checkins.txt", "24fd30e965b5f155bf5c291c34382dfc533c8e29c07a373fc21fbc05a989455e"),),
    _load_gowalla_checkins,
    source="Gowalla/Gowalla_3/Gowalla_checkins.txt of github rahmanidashti/LBSNDatasets",
))
_add(DatasetSpec(
    "gowalla", "Gowalla check-ins as in EASRec (RecBole 'gowalla'), 5-core on users and items",
    (DataFile("gowalla/gowalla.inter"),),
    _load_gowalla,
    alt_files=(DataFile("gowalla/loc-gowalla_totalCheckins.txt.gz"),),
    source="RecBole's atomic gowalla.inter (https://github.com/RUCAIBox/RecSysDatasets), or SNAP's "
           "loc-gowalla_totalCheckins.txt.gz (https://snap.stanford.edu/data/loc-gowalla.html)",
))
_add(DatasetSpec(
    "douban", "Douban as in EASRec (RecBole atomic douban.inter), chronological, unfiltered",
    (DataFile("douban/douban.inter"),),
    _load_douban,
    source="RecBole's atomic douban.inter (https://github.com/RUCAIBox/RecSysDatasets)",
))


# ---- public functions --------------------------------------------------------------------------
def _not_found(spec: DatasetSpec, root: Path, missing: List[Path]) -> FileNotFoundError:
    msg = (f"dataset {spec.name!r} is not under the data root {root} (set it with --data-dir or "
           f"$RECARCH_DATA); missing: {', '.join(str(p) for p in missing)}.")
    if spec.alt_files:
        msg += f" Also accepted instead: {', '.join(str(root / f.path) for f in spec.alt_files)}."
    if spec.download:
        msg += (f" Download it with `recarch download {spec.name}` (or get_dataset({spec.name!r}, "
                f"download=True)), which fetches "
                f"{spec.download.url} (sha256-checked) into {root / spec.download.into}.")
    if spec.source:
        msg += f" Source: {spec.source}."
    return FileNotFoundError(msg)


def download_dataset(name: str, data_dir: Optional[str] = None, progress: bool = True) -> List[Path]:
    """Fetch and unpack a registered dataset's archive under the data root; returns the files."""
    spec = DATASETS.get(name)
    if spec.download is None:
        raise ValueError(f"dataset {name!r} has no download; get it by hand: {spec.source}")
    dest = data_root(data_dir) / spec.download.into
    return fetch_url(spec.download.url, dest, spec.download.sha256, progress=progress)


def verify_dataset(name: str, data_dir: Optional[str] = None) -> Dict[str, str]:
    """sha256 of each present file that has a published hash: path -> 'ok'; raises on mismatch."""
    spec = DATASETS.get(name)
    return verify_files(spec.files + spec.alt_files, data_root(data_dir))


def verify_files(files, root: Path) -> Dict[str, str]:
    """sha256 of each of ``files`` (DataFile) present under ``root`` that has a published hash."""
    result = {}
    for f in files:
        path = root / f.path
        if not f.sha256 or not path.is_file():
            continue
        actual = sha256_file(path)
        if actual != f.sha256:
            raise ValueError(f"{path}: sha256 mismatch: expected {f.sha256}, got {actual}")
        result[str(path)] = "ok"
    return result


def get_dataset(name: str, data_dir: Optional[str] = None, skip_bad_rows: bool = False,
                download: bool = False, verify: bool = False,
                prep: Preprocessing = Preprocessing()) -> SequenceDataset:
    """Load a registered dataset as a SequenceDataset.

    Missing files raise FileNotFoundError with what to put where (or, with ``download=True`` and a
    known archive, are fetched). ``verify=True`` checks sha256 first (skipped by default: hashing
    ml-1m on every run is wasted time)."""
    spec = DATASETS.get(name)
    root = data_root(data_dir)
    missing = spec.missing(root)
    if missing and download and spec.download:
        download_dataset(name, data_dir)
        missing = spec.missing(root)
    if missing:
        raise _not_found(spec, root, missing)
    if verify:
        verify_dataset(name, data_dir)
    return spec.load(root, skip_bad_rows=skip_bad_rows, prep=prep)


def dataset_status(data_dir: Optional[str] = None, registry: Optional[Registry] = None) -> List[dict]:
    """One row per dataset of ``registry`` (default: the sequential one): name, present ('yes'/'no'),
    path, downloadable, description. Specs need ``missing(root)``, ``folder(root)`` and ``description``."""
    root = data_root(data_dir)
    registry = DATASETS if registry is None else registry
    rows = []
    for name in registry.names():
        spec = registry.get(name)
        rows.append({
            "name": name,
            "present": "no" if spec.missing(root) else "yes",
            "path": str(spec.folder(root)),
            "downloadable": "yes" if getattr(spec, "download", None) else "no",
            "description": spec.description,
        })
    return rows
