"""The CTR data layer: readers, encoding (train-only vocabulary, hashing, log numerics, stratified
split), the memory-mapped cache and the dataset registry — on hand-made files and the shared data."""
import math
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recarch.config import ConfigError, from_dict
from recarch.ctr import readers as R
from recarch.ctr.cache import load_encoded
from recarch.ctr.datasets import (CTR_DATASETS, CTRDataConfig, ctr_dataset_status, get_ctr_dataset,
                                  verify_ctr_dataset)
from recarch.ctr.encode import (EncodeSettings, apply_vocab, build_vocab, encode_to_folder, fnv1a_64,
                                hash_ids, log1p_numeric, stratified_split)
from recarch.data.errors import DataFormatError, DataWarning

SHARED = Path(os.environ.get("RECARCH_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


@pytest.fixture(scope="module")
def shared():
    if not (SHARED / "frappe").is_dir():
        pytest.skip("shared data folder absent")
    return SHARED


@pytest.fixture(scope="module")
def frappe(shared, tmp_path_factory):
    return get_ctr_dataset("frappe", str(shared), cache_dir=str(tmp_path_factory.mktemp("cache")))


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def chunk(values, labels, split=None, field="f"):
    return R.RawChunk(pd.DataFrame({field: values}), np.zeros((len(values), 0)),
                      np.asarray(labels, np.float32), [], split=split)


FRAPPE_LINE = "1 1:1 2:1 3:1 4:1 5:1 6:1 7:1 8:1 9:1 10:1 \n"
CRITEO_HEADER = ",".join(R.CRITEO_COLUMNS) + "\n"


def criteo_row(label="0", i5="7"):
    ints = ["", "-1", "260", "", i5] + ["1"] * 8
    return ",".join([label] + ints + ["68fd1e64"] + [""] * 25) + "\n"


# ---- Frappe on the shared files ----------------------------------------------------------------
def test_frappe_rows_fields_labels_and_split(frappe):
    assert frappe.schema.fields == list(R.FRAPPE_FIELDS) and frappe.schema.numeric == []
    n = [len(frappe.split(s)) for s in ("train", "valid", "test")]
    assert sum(n) == 86_582
    assert [round(k / sum(n), 3) for k in n] == [0.8, 0.1, 0.1]
    labels = np.concatenate([np.asarray(frappe.split(s).label) for s in ("train", "valid", "test")])
    assert set(np.unique(labels)) == {0.0, 1.0}
    assert labels.sum() == 28_599 and abs(labels.mean() - 1 / 3) < 0.01
    rates = [float(np.mean(frappe.split(s).label)) for s in ("train", "valid", "test")]
    assert max(rates) - min(rates) < 0.001  # stratified
    for s in ("train", "valid", "test"):
        t = frappe.split(s)
        assert t.cat.dtype == np.int64 and t.cat.shape == (len(t), 10) and t.num.shape == (len(t), 0)
        assert (np.asarray(t.cat) >= 0).all() and (np.asarray(t.cat) < frappe.schema.vocab_sizes).all()


def test_stratified_split_is_disjoint_seeded_and_stratified():
    labels = np.array([1] * 300 + [0] * 700, dtype=np.float32)
    split = stratified_split(labels, seed=2018)
    parts = [np.flatnonzero(split == i) for i in range(3)]
    assert sorted(np.concatenate(parts).tolist()) == list(range(1000))  # disjoint, covering
    assert [len(p) for p in parts] == [800, 100, 100]
    assert [int(labels[p].sum()) for p in parts] == [240, 30, 30]
    assert (stratified_split(labels, seed=2018) == split).all()
    assert (stratified_split(labels, seed=7) != split).any()


def test_frappe_vocab_is_built_on_train_only(frappe):
    train = np.asarray(frappe.train.cat)
    for f, size in enumerate(frappe.schema.vocab_sizes):
        # every id is used in train (so nothing outside train got one), and test ids are within it
        assert set(np.unique(train[:, f])) - {0} == set(range(1, size))
    raw = R.read_libfm(SHARED / "frappe" / "frappe.test.libfm", fields=R.FRAPPE_FIELDS)
    assert raw.cat["user"].iloc[0] == "204"


def test_min_count_maps_rare_values_to_zero(shared, tmp_path):
    d = get_ctr_dataset("frappe", str(shared), min_count=20, cache=False)
    train = np.asarray(d.train.cat)
    for f in range(train.shape[1]):
        counts = np.bincount(train[:, f])
        assert counts[1:].min() >= 20
    assert (train[:, 1] == 0).any()  # rare items pooled
    assert d.schema.vocab_sizes[1] < 4000


def test_value_seen_only_in_valid_or_test_maps_to_zero(tmp_path):
    chunks = [chunk(["a", "a", "b", "", "c"], [1, 0, 1, 0, 1], "train"),
              chunk(["a", "z"], [1, 0], "valid"), chunk(["b", "z", "c"], [0, 1, 1], "test")]
    schema, rows = encode_to_folder(chunks, tmp_path, EncodeSettings(min_count=1))
    d = load_encoded_from(tmp_path, schema, rows)
    assert rows == {"train": 5, "valid": 2, "test": 3}
    assert d["train_cat"][:, 0].tolist() == [1, 1, 2, 0, 3] and schema.vocab_sizes == [4]
    assert d["valid_cat"][:, 0].tolist() == [1, 0] and d["test_cat"][:, 0].tolist() == [2, 0, 3]
    schema, _ = encode_to_folder(chunks, tmp_path, EncodeSettings(min_count=2))  # b, c are rare
    assert schema.vocab_sizes == [2]
    assert np.load(tmp_path / "train_cat.npy")[:, 0].tolist() == [1, 1, 0, 0, 0]
    assert not list(tmp_path.glob("raw_*"))  # scratch files removed
    vocab = build_vocab(["x", "y", "x", ""], min_count=2)
    assert vocab == {"x": 1} and apply_vocab(["x", "y", "", "new"], vocab).tolist() == [1, 0, 0, 0]


def load_encoded_from(folder, schema, rows):
    return {f"{s}_{p}": np.load(folder / f"{s}_{p}.npy") for s in rows for p in ("cat", "num", "label")}


def test_hashing_is_deterministic_and_in_range():
    def reference(text):  # FNV-1a 64 written out by hand
        h = 0xCBF29CE484222325
        for byte in text.encode("utf-8"):
            h = ((h ^ byte) * 0x100000001B3) % 2 ** 64
        return h
    values = ["a", "68fd1e64", "", "é", "a much longer value than the others"]
    assert fnv1a_64(["a"])[0] == 0xAF63DC4C8601EC8C  # the published test vector
    assert fnv1a_64(values).tolist() == [reference(v) for v in values]
    ids = hash_ids(values, 1000)
    assert ids.tolist() == hash_ids(values, 1000).tolist()
    assert ids[2] == 0 and ((ids[[0, 1, 3, 4]] >= 1) & (ids[[0, 1, 3, 4]] <= 999)).all()
    assert ids[0] == reference("a") % 999 + 1


def test_hash_buckets_dataset(shared):
    d = get_ctr_dataset("criteo-sample", str(shared), hash_buckets=50, cache=False)
    assert d.schema.vocab_sizes == [50] * 26
    allcat = np.concatenate([d.train.cat, d.valid.cat, d.test.cat])
    assert allcat.min() >= 0 and allcat.max() <= 49
    again = get_ctr_dataset("criteo-sample", str(shared), hash_buckets=50, cache=False)
    assert (np.asarray(again.train.cat) == np.asarray(d.train.cat)).all()


# ---- the samples -------------------------------------------------------------------------------
def test_criteo_sample_parses_with_log_numerics(shared):
    raw = R.read_criteo(shared / "ctr-samples" / "criteo_sample.txt")
    assert len(raw) == 200 and raw.num.shape == (200, 13) and raw.cat.shape == (200, 26)
    assert raw.numeric == list(R.CRITEO_NUMERIC) and raw.fields == list(R.CRITEO_CATEGORICAL)
    assert raw.cat["C1"].iloc[0] == "05db9164" and raw.cat["C19"].iloc[0] == ""
    # first row: I1 empty, I2 = 3, I3 = 260.0; second row: I2 = -1
    x = log1p_numeric(raw.num)
    assert x.dtype == np.float32 and x[0, 0] == 0.0
    assert math.isclose(x[0, 2], math.log(261.0), rel_tol=1e-6) and math.isclose(x[0, 1], math.log(4.0), rel_tol=1e-6)
    assert raw.num[1, 1] == -1 and x[1, 1] == 0.0  # negative -> clamped to 0
    d = get_ctr_dataset("criteo-sample", str(shared), cache=False)
    assert sum(len(d.split(s)) for s in ("train", "valid", "test")) == 200
    assert d.schema.numeric == list(R.CRITEO_NUMERIC) and d.train.num.dtype == np.float32
    assert (np.asarray(d.train.num) >= 0).all()


def test_criteo_tab_separated_without_header(tmp_path):
    rows = [criteo_row("1"), criteo_row("0", "")]
    p = write(tmp_path / "train.txt", "".join(r.replace(",", "\t") for r in rows))
    raw = R.read_criteo(p)
    assert raw.label.tolist() == [1.0, 0.0] and np.isnan(raw.num[1, 4]) and raw.num[0, 4] == 7


def test_avazu_head_parses(shared):
    raw = R.read_avazu(shared / "ctr-samples" / "avazu_head999.csv")
    assert len(raw) == 999 and raw.label.sum() == 159
    assert "id" not in raw.fields and "click" not in raw.fields and len(raw.fields) == 24
    assert raw.fields[:2] == ["hour", "C1"] and raw.fields[-2:] == ["weekday", "weekend"]
    first = raw.cat.iloc[0]
    assert (first["hour"], first["weekday"], first["weekend"]) == ("00", "2", "0")  # Tue 2014-10-21
    d = get_ctr_dataset("avazu-sample", str(shared), cache=False)
    assert sum(float(np.sum(d.split(s).label)) for s in ("train", "valid", "test")) == 159


def test_movielens_sample_quoted_titles(shared):
    c = R.concat_chunks(list(R.iter_movielens_csv(shared / "ctr-samples" / "movielens_sample.txt")))
    assert len(c) == 200 and c.fields == list(R.MOVIELENS_FIELDS)
    raw = pd.read_csv(shared / "ctr-samples" / "movielens_sample.txt", dtype=str)
    assert c.label.tolist() == (raw["rating"].astype(int) >= 4).astype(np.float32).tolist()
    assert c.cat["genre"].tolist() == raw["genres"].str.split("|").str[0].tolist()
    row = c.cat[raw["title"].str.contains(",")].iloc[0]  # a quoted title with a comma
    assert row["release_year"].isdigit() and row["gender"] in ("F", "M")


def test_ml100k_ctr_matches_pandas(shared):
    d = get_ctr_dataset("ml-100k-ctr", str(shared), cache=False)
    labels = np.concatenate([np.asarray(d.split(s).label) for s in ("train", "valid", "test")])
    assert len(labels) == 100_000
    inter = pd.read_csv(shared / "ml-100k" / "ml-100k.inter", sep="\t")
    assert labels.sum() == (inter["rating:float"] >= 4).sum() == 55_375
    assert d.schema.fields == list(R.MOVIELENS_FIELDS)
    c = R.concat_chunks(list(R.iter_movielens_atomic(shared / "ml-100k")))
    assert c.cat.iloc[0].tolist() == ["196", "242", "49", "M", "writer", "55105", "1996", "Comedy"]


def test_kdd12_reader(tmp_path):
    p = write(tmp_path / "training.txt", "0\t2\tu1\ta1\tv1\t2\t1\tq\tk\tt\td\t7\n"
                                         "3\t5\tu2\ta2\tv1\t3\t2\tq\tk\tt\td\t8\n")
    prof = R.read_kdd12_profiles(write(tmp_path / "userid_profile.txt", "7\t1\t3\n"))
    c = R.concat_chunks(list(R.iter_kdd12(p, prof)))
    assert c.label.tolist() == [0.0, 1.0] and c.numeric == ["Impression", "Depth", "Position"]
    assert c.num[1].tolist() == [5, 3, 2]
    assert c.cat[["UserID", "Gender", "Age"]].values.tolist() == [["7", "1", "3"], ["8", "", ""]]


# ---- malformed files ---------------------------------------------------------------------------
def test_libfm_wrong_feature_count(tmp_path):
    p = write(tmp_path / "bad.libfm", FRAPPE_LINE * 2 + "1 1:1 2:1\n" + FRAPPE_LINE)
    with pytest.raises(DataFormatError) as e:
        R.read_libfm(p, fields=R.FRAPPE_FIELDS)
    assert (e.value.file, e.value.line, e.value.field) == (str(p), 3, "features")
    assert "10 features" in e.value.expected and e.value.found == "2 features"
    with pytest.warns(DataWarning, match="skipped 1 bad row"):
        c = R.read_libfm(p, fields=R.FRAPPE_FIELDS, skip_bad_rows=True)
    assert len(c) == 3


def test_libfm_non_numeric_label_in_a_later_chunk(tmp_path):
    p = write(tmp_path / "bad.libfm", FRAPPE_LINE * 5 + FRAPPE_LINE.replace("1", "yes", 1) + FRAPPE_LINE)
    with pytest.raises(DataFormatError) as e:
        R.read_libfm(p, fields=R.FRAPPE_FIELDS, chunksize=2)
    assert (e.value.line, e.value.field, e.value.found) == (6, "label", "'yes'")
    with pytest.warns(DataWarning):
        assert len(R.read_libfm(p, fields=R.FRAPPE_FIELDS, chunksize=2, skip_bad_rows=True)) == 6


def test_criteo_non_numeric_integer_field(tmp_path):
    p = write(tmp_path / "criteo.csv", CRITEO_HEADER + criteo_row() + criteo_row(i5="abc") + criteo_row("x"))
    with pytest.raises(DataFormatError) as e:
        R.read_criteo(p)
    assert (e.value.file, e.value.line, e.value.field) == (str(p), 3, "I5")
    assert "number" in e.value.expected and "abc" in e.value.found
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        c = R.read_criteo(p, skip_bad_rows=True)
    assert len(c) == 1 and "skipped 2 bad row(s) of 3" in str(w[0].message)
    assert ":3:" in str(w[0].message) and ":4:" in str(w[0].message)


def test_criteo_header_and_empty_file(tmp_path):
    with pytest.raises(DataFormatError, match="header"):
        R.read_criteo(write(tmp_path / "h.csv", "label,I1\n" + criteo_row()))
    with pytest.raises(DataFormatError, match="empty file"):
        R.read_criteo(write(tmp_path / "e.csv", ""))


def test_all_rows_bad_is_an_error_even_when_skipping(tmp_path):
    p = write(tmp_path / "bad.libfm", "x 1:1\ny 1:1\n")
    with pytest.raises(DataFormatError, match="every row was bad"):
        R.read_libfm(p, skip_bad_rows=True)


# ---- the cache ---------------------------------------------------------------------------------
def test_cache_round_trip_and_key(shared, tmp_path):
    first = get_ctr_dataset("criteo-sample", str(shared), cache_dir=str(tmp_path))
    folders = [p for p in tmp_path.iterdir()]
    assert len(folders) == 1 and folders[0].name.startswith("criteo-sample-")
    assert isinstance(first.train.cat, np.memmap) and isinstance(first.test.num, np.memmap)
    mtime = (folders[0] / "train_cat.npy").stat().st_mtime_ns
    second = get_ctr_dataset("criteo-sample", str(shared), cache_dir=str(tmp_path))
    assert (folders[0] / "train_cat.npy").stat().st_mtime_ns == mtime  # not rebuilt
    for s in ("train", "valid", "test"):
        for part in ("cat", "num", "label"):
            assert np.array_equal(getattr(first.split(s), part), getattr(second.split(s), part))
    assert second.schema == first.schema
    for change in ({"min_count": 2}, {"seed": 1}, {"hash_buckets": 64}, {"skip_bad_rows": True}):
        get_ctr_dataset("criteo-sample", str(shared), cache_dir=str(tmp_path), **change)
    assert len(list(tmp_path.iterdir())) == 5  # one folder per setting
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp")]
    assert load_encoded(folders[0]).schema == first.schema
    in_memory = get_ctr_dataset("criteo-sample", str(shared), cache=False)
    assert not isinstance(in_memory.train.cat, np.memmap)
    assert np.array_equal(in_memory.train.cat, first.train.cat)


def test_failed_build_leaves_no_temp_files(tmp_path):
    root = tmp_path / "data"
    write(root / "frappe" / "frappe.test.libfm", FRAPPE_LINE * 3)
    write(root / "frappe" / "frappe.validation.libfm", FRAPPE_LINE + "1 1:1\n")
    cache = tmp_path / "cache"
    with pytest.raises(DataFormatError) as e:
        get_ctr_dataset("frappe", str(root), cache_dir=str(cache))
    assert e.value.file.endswith("frappe.validation.libfm") and e.value.line == 2
    assert list(cache.iterdir()) == []
    with pytest.warns(DataWarning):
        d = get_ctr_dataset("frappe", str(root), cache_dir=str(cache), skip_bad_rows=True)
    assert sum(len(d.split(s)) for s in ("train", "valid", "test")) == 4
    assert [p.name.startswith("frappe-") for p in cache.iterdir()] == [True]


def test_default_cache_under_a_writable_data_root(tmp_path, monkeypatch):
    root = tmp_path / "data"
    write(root / "frappe" / "frappe.test.libfm", FRAPPE_LINE * 10)
    write(root / "frappe" / "frappe.validation.libfm", FRAPPE_LINE.replace("1", "-1", 1) * 10)
    monkeypatch.delenv("RECARCH_DATA", raising=False)
    d = get_ctr_dataset("frappe", str(root))
    assert len(list((root / ".cache" / "ctr").glob("frappe-*"))) == 1
    assert [len(d.split(s)) for s in ("train", "valid", "test")] == [16, 2, 2]


# ---- the registry ------------------------------------------------------------------------------
def test_registry_names_errors_and_status(tmp_path):
    for name in ("frappe", "ml-100k-ctr", "criteo-sample", "avazu-sample", "movielens-sample",
                 "criteo", "avazu", "kdd12"):
        assert name in CTR_DATASETS
    with pytest.raises(KeyError, match="did you mean 'frappe'.*registered: avazu"):
        get_ctr_dataset("frape")
    with pytest.raises(FileNotFoundError) as e:
        get_ctr_dataset("criteo", str(tmp_path))
    msg = str(e.value)
    assert str(tmp_path) in msg and "criteo/train.txt" in msg and "train.txt.gz" in msg and "Kaggle" in msg
    rows = {r["name"]: r for r in ctr_dataset_status(str(tmp_path))}
    assert set(rows) == set(CTR_DATASETS.names()) and rows["frappe"]["present"] == "no"


def test_status_and_verify_on_shared(shared):
    rows = {r["name"]: r["present"] for r in ctr_dataset_status(str(shared))}
    assert rows["frappe"] == rows["criteo-sample"] == rows["ml-100k-ctr"] == "yes"
    assert list(verify_ctr_dataset("avazu-sample", str(shared)).values()) == ["ok"]


def test_data_config_validates_dataset_names():
    cfg = from_dict(CTRDataConfig, {"dataset": "criteo-sample", "min_count": 2, "hash_buckets": None})
    assert cfg.min_count == 2 and cfg.split_seed == 2018
    with pytest.raises(ConfigError, match="unknown CTR dataset 'fraape'.*did you mean 'frappe'"):
        CTRDataConfig(dataset="fraape").validate()
    with pytest.raises(ConfigError, match="min_count"):
        CTRDataConfig(min_count=0).validate()
    with pytest.raises(ConfigError, match="hash_buckets"):
        CTRDataConfig(hash_buckets=1).validate()


def test_libfm_feature_that_is_not_one_hot(tmp_path):
    p = write(tmp_path / "bad.libfm", FRAPPE_LINE + FRAPPE_LINE.replace("7:1", "7:0.5") + FRAPPE_LINE)
    with pytest.raises(DataFormatError) as e:
        R.read_libfm(p, fields=R.FRAPPE_FIELDS)
    assert (e.value.line, e.value.field, e.value.found) == (2, "cost", "'7:0.5'")
    with pytest.warns(DataWarning):
        c = R.read_libfm(p, fields=R.FRAPPE_FIELDS, skip_bad_rows=True)
    assert len(c) == 2 and c.cat["cost"].tolist() == ["7", "7"] and c.label.tolist() == [1.0, 1.0]


def test_grouplens_ml100k_files_give_the_atomic_rows(shared, tmp_path):
    """Rebuild GroupLens u.data/u.user/u.item (latin-1, genre flags) from the atomic files: both
    readers must give the same CTR rows."""
    from recarch.data.readers import ML100K_GENRES

    src = shared / "ml-100k"
    inter = pd.read_csv(src / "ml-100k.inter", sep="\t", dtype=str, nrows=3000)
    users = pd.read_csv(src / "ml-100k.user", sep="\t", dtype=str)
    items = pd.read_csv(src / "ml-100k.item", sep="\t", dtype=str, keep_default_na=False)
    atomic = tmp_path / "atomic"
    atomic.mkdir()
    inter.to_csv(atomic / "ml-100k.inter", sep="\t", index=False)
    for name in ("ml-100k.user", "ml-100k.item"):
        (atomic / name).write_bytes((src / name).read_bytes())
    gl = tmp_path / "grouplens"
    gl.mkdir()
    inter.to_csv(gl / "u.data", sep="\t", header=False, index=False)
    users.to_csv(gl / "u.user", sep="|", header=False, index=False)
    lines = []
    for _, r in items.iterrows():
        year = r["release_year:token"]
        date = f"01-Jan-{year}" if year.isdigit() else ""
        flags = ["1" if g in r["class:token_seq"].split(" ") else "0" for g in ML100K_GENRES]
        title = "Café" if r["item_id:token"] == "1" else r["movie_title:token_seq"]
        lines.append("|".join([r["item_id:token"], title, date, "", "http://x"] + flags))
    (gl / "u.item").write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    a = R.concat_chunks(list(R.iter_movielens_atomic(atomic)))
    g = R.concat_chunks(list(R.iter_movielens_grouplens(gl)))
    assert len(a) == len(g) == 3000
    assert a.label.tolist() == g.label.tolist()
    pd.testing.assert_frame_equal(a.cat, g.cat, check_dtype=False)


def test_full_criteo_form_accepts_gzip(tmp_path):
    import gzip

    rows = "".join(criteo_row(str(i % 2)).replace(",", "\t") for i in range(30))
    (tmp_path / "criteo").mkdir()
    (tmp_path / "criteo" / "train.txt.gz").write_bytes(gzip.compress(rows.encode()))
    d = get_ctr_dataset("criteo", str(tmp_path), min_count=1, cache=False)
    n = [len(d.split(s)) for s in ("train", "valid", "test")]
    assert n[0] == 24 and sum(n) == 30
    assert d.schema.vocab_sizes[0] == 2 and d.schema.vocab_sizes[1] == 1  # C1 one value; C2 all missing


def test_read_only_data_root_caches_in_the_user_cache(tmp_path, monkeypatch):
    root = tmp_path / "data"
    write(root / "ctr-samples" / "criteo_sample.txt", CRITEO_HEADER + criteo_row("1") + criteo_row())
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    root.chmod(0o555)  # read-only by intent, even for root
    try:
        d = get_ctr_dataset("criteo-sample", str(root))
    finally:
        root.chmod(0o755)
    assert not (root / ".cache").exists()
    assert len(list((tmp_path / "xdg" / "recarch" / "ctr").glob("criteo-sample-*"))) == 1
    assert sum(len(d.split(s)) for s in ("train", "valid", "test")) == 2
