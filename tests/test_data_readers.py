"""Readers on small hand-made files: each format, and each malformed case with its file:line and field."""
import gzip
import json

import numpy as np
import pandas as pd
import pytest

from recarch.data import readers as R
from recarch.data import tables as T
from recarch.data.errors import DataFormatError, DataWarning


def write(tmp_path, name, text, encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
    return path


def assert_error(exc, path, line, field):
    msg = str(exc.value)
    assert path.name in msg and f":{line}:" in msg and repr(field) in msg, msg
    assert exc.value.line == line and exc.value.field == field


# ---- SASRec `user item` ------------------------------------------------------------------------
def test_pairs_read_types_and_order(tmp_path):
    p = write(tmp_path, "s.txt", "1 10\n1 11\n2 010\n")
    df = R.read_user_item_pairs(p)
    assert df["user"].tolist() == ["1", "1", "2"]
    assert df["item"].tolist() == ["10", "11", "10"]  # "010" is the same numeric id as "10"
    assert df["order"].tolist() == [0, 1, 2] and df["order"].dtype == np.int64
    assert list(df.columns) == ["user", "item", "order"]


def test_pairs_gzip_and_crlf_and_blank_lines(tmp_path):
    p = tmp_path / "s.txt.gz"
    p.write_bytes(gzip.compress(b"1 10\r\n\r\n2 11\r\n"))
    df = R.read_user_item_pairs(p)
    assert df[["user", "item"]].values.tolist() == [["1", "10"], ["2", "11"]]


def test_pairs_wrong_field_count_names_line(tmp_path):
    p = write(tmp_path, "s.txt", "1 10\n\n1 11 12\n")
    with pytest.raises(DataFormatError) as e:
        R.read_user_item_pairs(p)
    assert_error(e, p, 3, "line")  # the blank line 2 still counts
    assert "2 fields separated by ' '" in str(e.value) and "3 field(s)" in str(e.value)


def test_pairs_wrong_separator_hint(tmp_path):
    p = write(tmp_path, "s.txt", "1\t10\n1\t11\n")
    with pytest.raises(DataFormatError) as e:
        R.read_user_item_pairs(p)
    assert_error(e, p, 1, "line")
    assert "wrong separator" in str(e.value) and "'\\t'" in str(e.value)


def test_pairs_non_numeric_id(tmp_path):
    p = write(tmp_path, "s.txt", "1 10\n1 11\nabc 12\n")
    with pytest.raises(DataFormatError) as e:
        R.read_user_item_pairs(p)
    assert_error(e, p, 3, "user")
    assert "non-negative integer id" in str(e.value) and "'abc'" in str(e.value)
    p2 = write(tmp_path, "t.txt", "1 10\n1 -5\n")
    with pytest.raises(DataFormatError) as e:
        R.read_user_item_pairs(p2)
    assert_error(e, p2, 2, "item")


def test_error_names_earliest_bad_line_across_checks(tmp_path):
    # the field-count check runs before the id check, yet line 1 is reported, not line 2
    p = write(tmp_path, "s.txt", "1 x\n1 2 3\n")
    with pytest.raises(DataFormatError) as e:
        R.read_user_item_pairs(p)
    assert_error(e, p, 1, "item")


def test_empty_and_blank_file(tmp_path):
    for text in ("", "\n \n"):
        p = write(tmp_path, "e.txt", text)
        with pytest.raises(DataFormatError) as e:
            R.read_user_item_pairs(p)
        assert_error(e, p, 1, "file")
        assert "empty" in str(e.value)


def test_skip_bad_rows_counts_and_warns(tmp_path):
    p = write(tmp_path, "s.txt", "1 10\n1 x\n2 11\n2 12 13\n3 14\n")
    with pytest.warns(DataWarning) as w:
        df = R.read_user_item_pairs(p, skip_bad_rows=True)
    assert df["item"].tolist() == ["10", "11", "14"]
    assert df["order"].tolist() == [0, 1, 2]
    msg = str(w[0].message)
    assert "skipped 2 bad row(s) of 5" in msg and "s.txt:4" in msg and "s.txt:2" in msg


def test_skip_bad_rows_every_row_bad_still_raises(tmp_path):
    p = write(tmp_path, "s.txt", "1,10\n1,11\n")
    with pytest.raises(DataFormatError, match="every row was bad"):
        R.read_user_item_pairs(p, skip_bad_rows=True)


def test_invalid_utf8_names_line(tmp_path):
    p = write(tmp_path, "s.txt", b"1 10\n2 1\xff1\n")
    with pytest.raises(DataFormatError) as e:
        R.read_user_item_pairs(p)
    assert_error(e, p, 2, "encoding")


# ---- MovieLens -----------------------------------------------------------------------------------
def test_movielens_ratings(tmp_path):
    p = write(tmp_path, "ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::978298413\n")
    df = R.read_movielens_ratings(p)
    assert df["rating"].tolist() == [5.0, 3.0, 4.0] and df["rating"].dtype == np.float64
    assert df["timestamp"].tolist() == [978300760.0, 978302109.0, 978298413.0]
    assert df["item"].tolist() == ["1193", "661", "1193"]


@pytest.mark.parametrize("line,field", [("2::1193::4::soon", "timestamp"), ("2::1193::good::97",
                                                                              "rating"),
                                        ("2::1193::4", "line"), ("2:1193:4:97", "line")])
def test_movielens_ratings_malformed(tmp_path, line, field):
    p = write(tmp_path, "ratings.dat", f"1::1193::5::978300760\n{line}\n")
    with pytest.raises(DataFormatError) as e:
        R.read_movielens_ratings(p)
    assert_error(e, p, 2, field)


def test_movies_latin1_genres_year(tmp_path):
    text = "1::Toy Story (1995)::Animation|Children's|Comedy\n2::Café (2001)::Drama\n3::Untitled::Drama\n"
    p = write(tmp_path, "movies.dat", text, encoding="latin-1")
    m = R.read_movielens_movies(p)
    assert m["title"].tolist()[1] == "Café (2001)"
    assert m["year"].tolist()[:2] == [1995, 2001] and pd.isna(m["year"].iloc[2])
    f = R.movielens_item_features(m)
    got = sorted(map(tuple, f.values.tolist()))
    assert got == sorted([("1", "genre=Animation"), ("1", "genre=Children's"), ("1", "genre=Comedy"),
                          ("2", "genre=Drama"), ("3", "genre=Drama"), ("1", "year=1995"),
                          ("2", "year=2001")])


def test_movielens_users(tmp_path):
    p = write(tmp_path, "users.dat", "1::F::1::10::48067\n2::M::56::16::70072\n")
    u = R.read_movielens_users(p)
    assert u.values.tolist() == [["1", "F", "1", "10", "48067"], ["2", "M", "56", "16", "70072"]]


def test_ml100k_raw_files(tmp_path):
    p = write(tmp_path, "u.data", "196\t242\t3\t881250949\n186\t302\t3\t891717742\n")
    df = R.read_ml100k_ratings(p)
    assert df[["user", "item"]].values.tolist() == [["196", "242"], ["186", "302"]]
    flags = ["0"] * 19
    flags[3] = flags[5] = "1"  # Animation, Comedy
    row = "1|Toy Story (1995)|01-Jan-1995||http://x|" + "|".join(flags)
    row2 = "267|unknown||||" + "|".join(["1"] + ["0"] * 18)
    items = R.read_ml100k_items(write(tmp_path, "u.item", row + "\n" + row2 + "\n", "latin-1"))
    assert items["genres"].tolist() == ["Animation|Comedy", "unknown"]
    assert items["year"].iloc[0] == 1995 and pd.isna(items["year"].iloc[1])


# ---- RecBole atomic ------------------------------------------------------------------------------
INTER = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n196\t242\t3\t881250949\n186\t302\t3.5\t891717742\n"


def test_atomic_inter_maps_columns(tmp_path):
    df = R.read_atomic_inter(write(tmp_path, "x.inter", INTER))
    assert list(df.columns) == ["user", "item", "rating", "timestamp", "order"]
    assert df["rating"].tolist() == [3.0, 3.5]
    assert df["user"].tolist() == ["196", "186"]


def test_atomic_item_features(tmp_path):
    text = ("item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
            "1\tToy Story\t1995\tAnimation Comedy\n2\tHeat\t1995\tAction\n")
    items = R.read_atomic(write(tmp_path, "x.item", text))
    assert items["movie_title"].tolist() == ["Toy Story", "Heat"]
    f = R.atomic_item_features(items, {"class": "genre", "release_year": "year"})
    assert sorted(map(tuple, f.values.tolist())) == [
        ("1", "genre=Animation"), ("1", "genre=Comedy"), ("1", "year=1995"), ("2", "genre=Action"),
        ("2", "year=1995")]


def test_atomic_wrong_separator_header(tmp_path):
    p = write(tmp_path, "x.inter", INTER.replace("\t", ","))
    with pytest.raises(DataFormatError) as e:
        R.read_atomic_inter(p)
    assert_error(e, p, 1, "header")
    assert "tab-separated" in str(e.value) and "wrong separator" in str(e.value)


def test_atomic_bad_type_missing_column_bad_float(tmp_path):
    p = write(tmp_path, "x.inter", "user_id:token\titem_id:int\n1\t2\n")
    with pytest.raises(DataFormatError) as e:
        R.read_atomic_inter(p)
    assert_error(e, p, 1, "item_id:int")
    p = write(tmp_path, "y.inter", "user_id:token\titem:token\n1\t2\n")
    with pytest.raises(DataFormatError) as e:
        R.read_atomic_inter(p)
    assert_error(e, p, 1, "item_id")
    p = write(tmp_path, "z.inter", INTER + "5\t6\t4\tyesterday\n")
    with pytest.raises(DataFormatError) as e:
        R.read_atomic_inter(p)
    assert_error(e, p, 4, "timestamp")


def test_atomic_short_row(tmp_path):
    p = write(tmp_path, "x.inter", INTER + "5\t6\t4\n")
    with pytest.raises(DataFormatError) as e:
        R.read_atomic_inter(p)
    assert_error(e, p, 4, "line")
    assert "4 fields separated by '\\t'" in str(e.value)
    with pytest.warns(DataWarning, match="x.inter:4"):
        assert len(R.read_atomic_inter(p, skip_bad_rows=True)) == 2


def test_atomic_header_only(tmp_path):
    p = write(tmp_path, "x.inter", "user_id:token\titem_id:token\n")
    with pytest.raises(DataFormatError) as e:
        R.read_atomic_inter(p)
    assert_error(e, p, 2, "file")


# ---- S3-Rec `user item1 item2 ...` ---------------------------------------------------------------
def test_user_sequences(tmp_path):
    df = R.read_user_sequences(write(tmp_path, "B.txt", "1 5 6 7\n2 6\n"))
    assert df[["user", "item"]].values.tolist() == [["1", "5"], ["1", "6"], ["1", "7"], ["2", "6"]]
    assert df["order"].tolist() == [0, 1, 2, 3]


def test_user_sequences_malformed(tmp_path):
    p = write(tmp_path, "B.txt", "1 5 6\n2\n")
    with pytest.raises(DataFormatError) as e:
        R.read_user_sequences(p)
    assert_error(e, p, 2, "line")
    p = write(tmp_path, "C.txt", "1 5 6\n2 7 x8 y\n")
    with pytest.raises(DataFormatError) as e:
        R.read_user_sequences(p)
    assert_error(e, p, 2, "item")
    assert "'x8'" in str(e.value)
    p = write(tmp_path, "D.txt", "1 5 6\nu2 7 x8\n3 4 9\n")
    with pytest.warns(DataWarning, match=r"skipped 1 bad row\(s\) of 3"):
        df = R.read_user_sequences(p, skip_bad_rows=True)  # one bad line counted once
    assert df["item"].tolist() == ["5", "6", "4", "9"]


def test_item_attributes_json(tmp_path):
    p = write(tmp_path, "a.json", json.dumps({"1": [3, 4], "2": [], "3": [4]}))
    f = R.read_item_attributes_json(p)
    assert f.values.tolist() == [["1", "attr=3"], ["1", "attr=4"], ["3", "attr=4"]]
    p = write(tmp_path, "b.json", '{"1": [3,\n 4}')
    with pytest.raises(DataFormatError) as e:
        R.read_item_attributes_json(p)
    assert "b.json:2" in str(e.value)


# ---- generic tables ------------------------------------------------------------------------------
def test_csv_named_columns_and_features(tmp_path):
    text = "uid,iid,ts,stars,genre\nu1,a,10,4,Comedy|Drama\nu1,b,5,3,\nu2,a,7,5,Comedy\n"
    df = T.read_table(write(tmp_path, "x.csv", text), user="uid", item="iid", timestamp="ts",
                      rating="stars", features=["genre"])
    assert df["user"].tolist() == ["u1", "u1", "u2"]
    assert df["timestamp"].tolist() == [10.0, 5.0, 7.0] and df["rating"].dtype == np.float64
    assert df["genre"].tolist() == ["Comedy|Drama", "", "Comedy"]


def test_csv_missing_column_and_wrong_separator(tmp_path):
    p = write(tmp_path, "x.csv", "user,item,time\n1,2,3\n")
    with pytest.raises(DataFormatError) as e:
        T.read_table(p)
    assert_error(e, p, 1, "timestamp")
    assert "did you mean 'time'" in str(e.value)
    p = write(tmp_path, "y.csv", "user;item;timestamp\n1;2;3\n")
    with pytest.raises(DataFormatError) as e:
        T.read_table(p)
    assert_error(e, p, 1, "user")
    assert "wrong separator" in str(e.value)


def test_csv_bad_values_and_field_counts(tmp_path):
    p = write(tmp_path, "x.tsv", "user\titem\ttimestamp\n1\t2\t3\n1\t3\tlater\n")
    with pytest.raises(DataFormatError) as e:
        T.read_table(p, numeric_ids=True)
    assert_error(e, p, 3, "timestamp")
    p = write(tmp_path, "y.csv", "user,item,timestamp\n1,2,3\n1,3,4,5\n2,4,6\n")
    with pytest.raises(DataFormatError) as e:
        T.read_table(p)
    assert_error(e, p, 3, "line")
    with pytest.warns(DataWarning):
        df = T.read_table(p, skip_bad_rows=True)
    assert df["item"].tolist() == ["2", "4"]


def test_csv_iso_timestamps_and_parquet(tmp_path):
    p = write(tmp_path, "x.csv", "user,item,timestamp\n1,2,1970-01-01T00:01:00Z\n1,3,1970-01-02\n")
    df = T.read_table(p, timestamp_format="iso")
    assert df["timestamp"].tolist() == [60.0, 86400.0]
    pytest.importorskip("pyarrow")
    q = tmp_path / "x.parquet"
    pd.DataFrame({"user": [1, 2], "item": [7, 8], "timestamp": [1.5, 2.5],
                  "rating": [4, 5]}).to_parquet(q)
    df = T.read_table(q, rating="rating")
    assert df["user"].tolist() == ["1", "2"] and df["rating"].tolist() == [4.0, 5.0]


# ---- the real files, if present ------------------------------------------------------------------
def test_real_sasrec_ml1m_fast(shared_data):
    df = R.read_user_item_pairs(shared_data / "ml-1m" / "ml-1m.sasrec.txt.gz")
    assert len(df) == 999_611
    assert df[["user", "item"]].head(3).values.tolist() == [["1", "1"], ["1", "2"], ["1", "3"]]


@pytest.fixture
def shared_data():
    from pathlib import Path
    root = Path("/work/shared/data")
    if not (root / "ml-1m").is_dir():
        pytest.skip("shared data folder absent")
    return root


def test_a_csv_read_in_chunks_equals_one_read_and_names_lines_past_the_first_chunk(tmp_path, monkeypatch):
    """Chunks of 3 rows (and a blank line) give the rows, ids and sequences of a one-chunk read; the ids
    come back as categoricals; a bad value in the fourth chunk is reported at its own line."""
    from recarch.data.preprocess import build_sequences

    rows = [f"u{u % 4},{100 - 7 * u % 13},{u}" for u in range(11)]
    path = tmp_path / "log.csv"
    path.write_text("user,item,timestamp\n" + "\n".join(rows[:5] + [""] + rows[5:]) + "\n")
    whole = T.read_table(path)
    monkeypatch.setattr(T, "CHUNK_ROWS", 3)
    chunked = T.read_table(path)
    assert isinstance(chunked["user"].dtype, pd.CategoricalDtype) and len(chunked) == 11
    pd.testing.assert_frame_equal(chunked.astype({"user": str, "item": str}), whole.astype({"user": str, "item": str}))
    assert chunked["item"].astype(str).tolist() == [r.split(",")[1] for r in rows]
    a, b = build_sequences(whole, "log"), build_sequences(chunked.astype({"user": str, "item": str}), "log")
    assert (a.items == b.items).all() and (a.offsets == b.offsets).all() and list(a.item_ids) == list(b.item_ids)
    path.write_text("user,item,timestamp\n" + "\n".join(rows[:9] + ["u1,5,soon"] + rows[9:]) + "\n")
    with pytest.raises(DataFormatError, match=r"log.csv:11: field 'timestamp'"):
        T.read_table(path)
