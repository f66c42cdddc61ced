"""Tests of the RecTools reference runner's conversion and params, without RecTools's virtualenv.

Checks the interactions file byte for byte on a hand-made SequenceDataset, that its datetimes give back
our order and split, the items RecTools will know, and parameter validation.
"""
from __future__ import annotations


import numpy as np
import pandas as pd
import pytest

from benchmark_scripts import load
from recarch.data.sequences import SequenceDataset

ref = load("rectools_ref")


def _tiny() -> SequenceDataset:
    # user 0: 3 items, user 1: 1 item, user 2: 5 items; items 1..5
    return SequenceDataset(
        name="tiny", num_items=5,
        offsets=np.array([0, 3, 4, 9], dtype=np.int64),
        items=np.array([2, 1, 3, 4, 3, 3, 1, 2, 5], dtype=np.int64),
        user_ids=np.array(["a", "b", "c"]), item_ids=np.array(["", "v", "w", "x", "y", "z"]))


def test_write_interactions_exact_content(tmp_path):
    path = ref.write_interactions(_tiny(), tmp_path / "d" / "tiny.csv")
    assert path == tmp_path / "d" / "tiny.csv"
    assert path.read_text().splitlines() == [
        "user_id,item_id,weight,datetime",
        "0,2,1,1970-01-01 00:00:00", "0,1,1,1970-01-01 00:00:01", "0,3,1,1970-01-01 00:00:02",
        "1,4,1,1970-01-01 00:00:00",
        "2,3,1,1970-01-01 00:00:00", "2,3,1,1970-01-01 00:00:01", "2,1,1,1970-01-01 00:00:02",
        "2,2,1,1970-01-01 00:00:03", "2,5,1,1970-01-01 00:00:04",
    ]
    assert not list(path.parent.glob("*.tmp"))


def test_datetime_order_reproduces_our_split(tmp_path):
    # Sorting by datetime (as RecTools does, stable or not) and grouping by user must give back our
    # sequences; the last two per user are then our valid and test targets.
    ds = _tiny()
    frame = pd.read_csv(ref.write_interactions(ds, tmp_path / "t.csv"), parse_dates=["datetime"])
    assert str(frame["datetime"].dtype).startswith("datetime64")
    frame = frame.sample(frac=1.0, random_state=0).sort_values("datetime", kind="quicksort")
    seqs = frame.groupby("user_id", sort=True)["item_id"].agg(list)
    assert seqs.tolist() == [[2, 1, 3], [4], [3, 3, 1, 2, 5]]
    assert ds.items[ds.target_index("test")].tolist() == [seqs[0][-1], seqs[2][-1]]
    assert ds.items[ds.target_index("valid")].tolist() == [seqs[0][-2], seqs[2][-2]]


def test_split_differences_and_known_items():
    ds = _tiny()
    # training parts: user 0 [2] (1 item: RecTools drops the user), user 1 [4] (1 item), user 2 [3, 3, 1]
    assert ref.rectools_known_items(ds, max_len=50).tolist() == [False, True, False, True, False, False]
    # a window of max_len + 1 = 2 keeps only the last two training items of user 2: [3, 1]
    assert np.flatnonzero(ref.rectools_known_items(ds, max_len=1)).tolist() == [1, 3]
    diff = ref.split_differences(ds, max_len=50)
    assert diff["users_below_3_items"] == 1 and diff["users_with_3_items"] == 1
    assert diff["items_unknown_to_rectools"] == 3
    # valid targets: user 0 -> 1 (known), user 2 -> 2 (unknown); test targets: 3 (known), 5 (unknown)
    assert diff["valid_targets_unknown_to_rectools"] == 1 and diff["test_targets_unknown_to_rectools"] == 1
    assert diff["valid_users_outside_rectools_val"] == 2  # user 0 has 3 items, user 2's target unknown


def test_write_interactions_warns_on_missing_items(tmp_path):
    ds = _tiny()
    ds.num_items = 6  # item 6 never occurs
    with pytest.warns(UserWarning, match="1 of 6 items never occur"):
        ref.write_interactions(ds, tmp_path / "t.csv")


def test_resolve_params():
    p = ref.resolve_params({"n_factors": 32, "monitor": "recall@10"})
    assert p["n_factors"] == 32 and p["monitor"] == "recall@10" and p["negatives"] == 256
    assert p["loss"] == "sampled_softmax" and p["limit_train_batches"] == 0
    with pytest.raises(KeyError, match="did you mean 'n_factors'"):
        ref.resolve_params({"n_factor": 32})
    with pytest.raises(ValueError, match="monitor"):
        ref.resolve_params({"monitor": "ndcg@20"})
    with pytest.raises(ValueError, match="negatives"):
        ref.resolve_params({"negatives": 0})
    with pytest.raises(ValueError, match="patience"):
        ref.resolve_params({"patience": -1})
    with pytest.raises(ValueError, match="divisible"):
        ref.resolve_params({"n_factors": 64, "n_heads": 3})


def test_cli_rejects_bad_key_before_loading(capsys):
    with pytest.raises(SystemExit):
        ref.main(["--dataset", "no-such-dataset", "--set", "dropuot=0.1"])
    assert "did you mean 'dropout'" in capsys.readouterr().err
