"""Preprocessing (k-core, order, ids, features, id maps) on hand-computed cases; the registry on real data."""
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recarch.data import DATASETS, build_sequences, dataset_status, get_dataset
from recarch.data import datasets as D
from recarch.data.preprocess import k_core_mask, load_id_maps, make_item_features, save_id_maps

SHARED = Path("/work/shared/data")


def table(rows, cols=("user", "item")):
    df = pd.DataFrame(rows, columns=list(cols))
    df["order"] = np.arange(len(df))
    return df


def seqs(ds):
    """{original user: [original items]} read back through the id maps."""
    return {ds.user_ids[u]: ds.item_ids[ds.items[ds.offsets[u]:ds.offsets[u + 1]]].tolist()
            for u in range(ds.num_users)}


# ---- preprocessing -----------------------------------------------------------------------------
def test_k_core_needs_three_passes():
    # 2-core by hand: D (1 row) goes; then z has 1 row, so (C,z) goes; then C has 1 row, so (C,x) goes
    df = table([("A", "x"), ("A", "y"), ("B", "x"), ("B", "y"), ("C", "x"), ("C", "z"), ("D", "z")])
    u, _ = pd.factorize(df["user"])
    i, _ = pd.factorize(df["item"])
    assert k_core_mask(u, i, 2).tolist() == [True, True, True, True, False, False, False]
    ds = build_sequences(df, "t", k_core=2)
    assert seqs(ds) == {"A": ["x", "y"], "B": ["x", "y"]}
    assert ds.num_items == 2 and ds.num_interactions == 4
    assert seqs(build_sequences(df, "t", k_core=0)) == {
        "A": ["x", "y"], "B": ["x", "y"], "C": ["x", "z"], "D": ["z"]}


def test_chronological_stable_order():
    df = table([("1", "a", 5.0), ("2", "e", 1.0), ("1", "b", 3.0), ("1", "c", 5.0), ("1", "d", 1.0)],
               ("user", "item", "timestamp"))
    assert seqs(build_sequences(df, "t")) == {"1": ["d", "b", "a", "c"], "2": ["e"]}  # a, c tie: file order
    no_time = df.drop(columns="timestamp")
    assert seqs(build_sequences(no_time, "t")) == {"1": ["a", "b", "c", "d"], "2": ["e"]}
    flipped = df.assign(order=-df["order"])  # a reverse-chronological file breaks ties the other way
    assert seqs(build_sequences(flipped, "t"))["1"] == ["d", "b", "c", "a"]


def test_dense_ids_follow_original_id_order():
    ds = build_sequences(table([("10", "100"), ("9", "10"), ("10", "9"), ("2", "9")]), "t")
    assert ds.user_ids.tolist() == ["2", "9", "10"]  # numeric, not string, order
    assert ds.item_ids.tolist() == ["", "9", "10", "100"]
    assert ds.offsets.tolist() == [0, 1, 2, 4]
    assert ds.items.tolist() == [1, 2, 3, 1]
    ds = build_sequences(table([("u", "b"), ("u", "a"), ("u", "10")]), "t")
    assert ds.item_ids.tolist() == ["", "10", "a", "b"] and ds.items.tolist() == [3, 2, 1]


def test_min_rating_then_k_core():
    df = table([("1", "a", 5.0), ("1", "b", 2.0), ("2", "a", 4.0), ("2", "b", 4.0)],
               ("user", "item", "rating"))
    assert seqs(build_sequences(df, "t", min_rating=4)) == {"1": ["a"], "2": ["a", "b"]}
    assert seqs(build_sequences(df, "t", k_core=2)) == {"1": ["a", "b"], "2": ["a", "b"]}
    # the threshold runs first: (1,a) (2,a) (2,b) is not 2-core, and peeling it leaves nothing
    with pytest.raises(ValueError, match="no interactions left"):
        build_sequences(df, "t", min_rating=4, k_core=2)
    with pytest.raises(ValueError, match="needs a 'rating' column"):
        build_sequences(df.drop(columns="rating"), "t", min_rating=4)


def test_item_features_from_mapping_and_table():
    item_ids = np.array(["", "9", "10", "100"])
    feats = {"10": ["genre=Comedy", "year=1995"], "9": ["genre=Drama", "genre=Comedy", "genre=Comedy"],
             "999": ["x=1"]}
    f = make_item_features(feats, item_ids)
    assert f.names == ["", "genre=Comedy", "genre=Drama", "year=1995"] and f.num_features == 3
    assert f.offsets.tolist() == [0, 0, 2, 4, 4]
    assert f.values.tolist() == [2, 1, 1, 3]  # item 9: Drama, Comedy (source order, deduplicated)
    assert f.padded().tolist() == [[0, 0], [2, 1], [1, 3], [0, 0]]
    long = pd.DataFrame({"item": ["10", "10", "9"], "feature": ["y=10", "y=9", "y=9"]})
    g = make_item_features(long, item_ids)
    assert g.names == ["", "y=9", "y=10"] and g.values.tolist() == [1, 2, 1]  # numbers numerically


def test_id_maps_round_trip_atomic(tmp_path):
    ds = build_sequences(table([("b", "x"), ("a", "y")]), "t")
    users, items = save_id_maps(ds, tmp_path / "run")
    assert users.read_text() == "user\toriginal_id\n0\ta\n1\tb\n"
    assert items.read_text() == "item\toriginal_id\n1\tx\n2\ty\n"
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["items.tsv", "users.tsv"]
    u, i = load_id_maps(tmp_path / "run")
    assert u.tolist() == ["a", "b"] and i.tolist() == ["", "x", "y"]


# ---- registry ----------------------------------------------------------------------------------
def test_registry_names_and_status(tmp_path):
    for name in ("ml-100k", "ml-1m", "ml-1m-raw", "amazon-games", "beauty", "beauty-bert4rec", "toys",
                 "yelp", "lastfm", "gowalla-checkins", "gowalla", "douban"):
        assert name in DATASETS
    rows = {r["name"]: r for r in dataset_status(str(tmp_path))}
    assert rows["ml-1m"]["present"] == "no" and rows["ml-1m"]["path"] == str(tmp_path / "ml-1m")
    with pytest.raises(KeyError, match="did you mean 'ml-1m'"):
        get_dataset("ml1m", data_dir=str(tmp_path))


def test_missing_files_explain_where_and_how(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        get_dataset("ml-100k", data_dir=str(tmp_path))
    msg = str(e.value)
    assert str(tmp_path / "ml-100k" / "ml-100k.inter") in msg and "u.data" in msg
    assert "https://files.grouplens.org/datasets/movielens/ml-100k.zip" in msg and "download=True" in msg
    with pytest.raises(FileNotFoundError, match="RecSysDatasets") as e:
        get_dataset("douban", data_dir=str(tmp_path))
    assert str(tmp_path / "douban" / "douban.inter") in str(e.value)


def test_download_flag_fetches_then_loads(tmp_path, monkeypatch):
    calls = []

    def fake_fetch(url, dest, sha256, progress=True):
        calls.append((url, Path(dest), sha256))
        d = Path(dest) / "ml-100k"
        d.mkdir(parents=True)
        (d / "u.data").write_text("1\t5\t4\t100\n1\t6\t3\t50\n2\t5\t5\t10\n")
        (d / "u.item").write_text("5|A (1990)|01-Jan-1990||u|" + "|".join(["0", "1"] + ["0"] * 17)
                                  + "\n6|B|||u|" + "|".join(["0"] * 19) + "\n")
        return []

    monkeypatch.setattr(D, "fetch_url", fake_fetch)
    ds = get_dataset("ml-100k", data_dir=str(tmp_path), download=True)
    assert calls == [("https://files.grouplens.org/datasets/movielens/ml-100k.zip", tmp_path,
                      DATASETS.get("ml-100k").download.sha256)]
    assert seqs(ds) == {"1": ["6", "5"], "2": ["5"]}  # u.data form, sorted by time
    assert ds.item_features.names == ["", "genre=Action", "year=1990"]


def test_verify_only_when_asked(tmp_path):
    d = tmp_path / "amazon-video-games"
    d.mkdir()
    (d / "Video.txt").write_text("1 1\n1 2\n2 1\n")
    assert get_dataset("amazon-games", data_dir=str(tmp_path)).num_interactions == 3
    with pytest.raises(ValueError, match="sha256 mismatch: expected b7376fe2"):
        get_dataset("amazon-games", data_dir=str(tmp_path), verify=True)


# ---- the real data sets ------------------------------------------------------------------------
@pytest.fixture
def shared():
    if not SHARED.is_dir():
        pytest.skip("shared data folder absent")
    return str(SHARED)


@pytest.mark.parametrize("name,users,items,inter", [
    ("ml-1m", 6040, 3416, 999_611), ("amazon-games", 31_013, 23_715, 287_107),
    ("ml-100k", 943, 1682, 100_000), ("beauty", 22_363, 12_101, 198_502),
    ("lastfm", 1090, 3646, 52_551)])
def test_published_counts(shared, name, users, items, inter):
    ds = get_dataset(name, data_dir=shared)
    assert (ds.num_users, ds.num_items, ds.num_interactions) == (users, items, inter)
    assert ds.items.min() == 1 and ds.items.max() == items


def test_ml1m_file_order_and_features(shared):
    ds = get_dataset("ml-1m", data_dir=shared)
    assert ds.items[:3].tolist() == [1, 2, 3] and ds.user_ids[0] == "1"
    f = ds.item_features
    # SASRec item 1 is MovieID 1198, Raiders of the Lost Ark (1981), Action|Adventure
    names = [f.names[v] for v in f.values[f.offsets[1]:f.offsets[2]]]
    assert names == ["genre=Action", "genre=Adventure", "year=1981"]


def test_ml100k_features(shared):
    ds = get_dataset("ml-100k", data_dir=shared)
    f = ds.item_features
    assert ds.item_ids[1] == "1"
    names = [f.names[v] for v in f.values[f.offsets[1]:f.offsets[2]]]
    assert names == ["genre=Animation", "genre=Children's", "genre=Comedy", "year=1995"]


def test_gowalla_checkins_sorted_by_time(shared):
    ds = get_dataset("gowalla-checkins", data_dir=shared)
    assert ds.num_users == 1000 and ds.num_interactions == 157_251
    raw = pd.read_csv(SHARED / "gowalla-checkins" / "Gowalla_checkins.txt", sep="\t", header=None,
                      names=["user", "item", "t"], dtype={"user": str, "item": str})
    first = raw[raw["user"] == "0"].iloc[::-1]  # oldest first; the file is newest-first
    first = first.sort_values("t", kind="stable")
    assert seqs_user(ds, 0) == first["item"].tolist()


def seqs_user(ds, u):
    return ds.item_ids[ds.items[ds.offsets[u]:ds.offsets[u + 1]]].tolist()


def test_user_filters_apply_on_top_of_a_registered_dataset():
    from recarch.data import Preprocessing

    root = Path(os.environ.get("RECARCH_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    if not (root / "ml-100k" / "ml-100k.inter").exists():
        pytest.skip("ml-100k not present")
    full = get_dataset("ml-100k", data_dir=str(root))
    kept = get_dataset("ml-100k", data_dir=str(root), prep=Preprocessing(min_rating=4, k_core=10))
    assert kept.num_interactions < full.num_interactions
    assert kept.lengths().min() >= 10
    assert np.bincount(kept.items)[1:].min() >= 10
