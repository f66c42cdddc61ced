"""MovieLens 1M as a click log (``ml-1m-ctr``): SASRec's ml-1m interactions with popularity-matched
negatives, joined with the GroupLens user and movie tables.

Positives (label 1): every (user, item) line of SASRec's ml-1m file, 999,611 of them. Negatives (label
0): one per positive, an item drawn with probability proportional to its number of positives (a uniform
draw from the positives' item column), redrawn until the user never interacted with it; seeded. Drawn
that way, the task is not "popular against random" as it is with uniform negatives: a model must learn
who likes what. The redraws away from a user's own items (often popular ones) leave negatives somewhat
less popular than positives on average, so a popularity-only scorer still sits above AUC 0.5; the CTR
baselines benchmark is to report that floor beside the models.

Fields (one id each, "" = missing): ``user_id`` and ``item_id`` (the original MovieLens ids, through
asash/ml1m-sas-mapping's maps), ``gender``, ``age``, ``occupation``, ``zip_code`` (users.dat),
``release_year``, ``genre`` and ``genre2`` (movies.dat: the year in the title, the first two listed
genres). Rows come as each positive followed by its negative, in the file's order; the CTR pipeline
splits them 8:1:1 stratified (seed 2018) like every data set without given splits.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from ...data import readers as seq_readers
from .core import DEFAULT_CHUNKSIZE, PathLike, RawChunk

ML1M_CTR_FIELDS = ("user_id", "item_id", "gender", "age", "occupation", "zip_code", "release_year", "genre",
                   "genre2")
NEGATIVE_SEED = 2018


def popularity_matched_negatives(users: np.ndarray, items: np.ndarray, seed: int = NEGATIVE_SEED,
                                 max_rounds: int = 1000) -> np.ndarray:
    """One negative item per (user, item) positive, drawn ∝ the items' positive counts, never one of the
    user's own items. Ids are positive integers."""
    users, stride = users.astype(np.int64), int(items.max()) + 1
    seen = np.unique(users * stride + items)
    rng = np.random.default_rng(seed)
    out = items[rng.integers(0, len(items), len(items))]
    rows = np.arange(len(items))
    for _ in range(max_rounds):
        keys = users[rows] * stride + out[rows]
        rows = rows[seen[np.minimum(np.searchsorted(seen, keys), len(seen) - 1)] == keys]  # items the user has seen
        if len(rows) == 0:
            return out
        out[rows] = items[rng.integers(0, len(items), len(rows))]
    raise RuntimeError(f"popularity-matched negatives: {len(rows)} rows still clash after {max_rounds} rounds")


def _by_id(ids: pd.Series, values: pd.Series, size: int) -> np.ndarray:
    """A lookup array: position id → value ("" where no row gives one)."""
    out = np.full(size, "", dtype=object)
    out[ids.to_numpy(np.int64)] = values.fillna("").astype(str).to_numpy()
    return out


def iter_ml1m_ctr(folder: PathLike, chunksize: int = DEFAULT_CHUNKSIZE, skip_bad_rows: bool = False,
                  seed: int = NEGATIVE_SEED) -> Iterator[RawChunk]:
    """Stream ``ml-1m-ctr``'s rows (see the module docstring) from the files in ``folder``."""
    d = Path(folder)
    pairs = seq_readers.read_user_item_pairs(d / "ml-1m.sasrec.txt.gz", skip_bad_rows=skip_bad_rows)
    users, items = pairs["user"].to_numpy(np.int64), pairs["item"].to_numpy(np.int64)
    to_user = seq_readers.read_delimited(d / "sas_to_original_users.txt", ("user", "original"), " ",
                                         skip_bad_rows=skip_bad_rows)
    to_movie = seq_readers.read_delimited(d / "sas_to_original_items.txt", ("item", "original"), " ",
                                          skip_bad_rows=skip_bad_rows)
    people = seq_readers.read_movielens_users(d / "users.dat", skip_bad_rows).astype({"user": str})
    movies = seq_readers.read_movielens_movies(d / "movies.dat", skip_bad_rows).astype({"item": str})
    to_user, to_movie = (t.astype({key: np.int64, "original": str}) for t, key in ((to_user, "user"), (to_movie, "item")))
    people = to_user.merge(people.rename(columns={"user": "original"}), on="original", how="left")
    movies = to_movie.merge(movies.rename(columns={"item": "original"}), on="original", how="left")
    genres = movies["genres"].fillna("").astype(str).str.split("|", n=2, regex=False)
    movies["genre"], movies["genre2"] = genres.str[0].fillna(""), genres.str[1].fillna("")
    movies["release_year"] = movies["year"].astype("string").fillna("")
    n_users, n_items = max(users.max(), to_user["user"].max()) + 1, max(items.max(), to_movie["item"].max()) + 1
    user_fields = {"user_id": "original", "gender": "gender", "age": "age", "occupation": "occupation",
                   "zip_code": "zip"}
    item_fields = {"item_id": "original", "release_year": "release_year", "genre": "genre", "genre2": "genre2"}
    by_user = {f: _by_id(people["user"], people[c], n_users) for f, c in user_fields.items()}
    by_item = {f: _by_id(movies["item"], movies[c], n_items) for f, c in item_fields.items()}
    negatives = popularity_matched_negatives(users, items, seed)
    step = max(chunksize // 2, 1)
    for start in range(0, len(users), step):
        u = np.repeat(users[start:start + step], 2)
        i = np.stack([items[start:start + step], negatives[start:start + step]], 1).ravel()
        cat = pd.DataFrame({f: (by_user[f][u] if f in by_user else by_item[f][i]) for f in ML1M_CTR_FIELDS})
        label = np.tile(np.array([1.0, 0.0], np.float32), len(u) // 2)
        yield RawChunk(cat, np.zeros((len(u), 0)), label, [], source=str(d / "ml-1m.sasrec.txt.gz"))
