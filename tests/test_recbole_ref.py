"""Tests of the RecBole reference runner's conversion and config, without RecBole's virtualenv.

Checks the atomic file byte for byte on a hand-made SequenceDataset, and the split keys RecBole gets.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmark_scripts import load
from recarch.data.sequences import SequenceDataset

ref = load("recbole_ref")


def _tiny() -> SequenceDataset:
    # user 0: 3 items, user 1: 1 item, user 2: 4 items; items 1..4
    return SequenceDataset(
        name="tiny", num_items=4,
        offsets=np.array([0, 3, 4, 8], dtype=np.int64),
        items=np.array([2, 1, 3, 4, 3, 3, 1, 2], dtype=np.int64),
        user_ids=np.array(["a", "b", "c"]), item_ids=np.array(["", "w", "x", "y", "z"]))


def test_write_atomic_exact_content(tmp_path):
    path = ref.write_atomic(_tiny(), tmp_path, "recarch-tiny")
    assert path == tmp_path / "recarch-tiny" / "recarch-tiny.inter"
    lines = path.read_text().splitlines()
    assert lines == [
        "user_id:token\titem_id:token\ttimestamp:float",
        "0\t2\t0", "0\t1\t1", "0\t3\t2",
        "1\t4\t0",
        "2\t3\t0", "2\t3\t1", "2\t1\t2", "2\t2\t3",
    ]
    assert not list(path.parent.glob("*.tmp"))


def test_time_order_reproduces_our_split(tmp_path):
    # Sorting by timestamp (as RecBole's ``order: TO`` does, stable or not) and grouping by user
    # must give back our sequences; the last two per user are then our valid and test targets.
    ds = _tiny()
    path = ref.write_atomic(ds, tmp_path, "t")
    frame = pd.read_csv(path, sep="\t")
    frame = frame.sample(frac=1.0, random_state=0).sort_values("timestamp:float", kind="quicksort")
    seqs = frame.groupby("user_id:token", sort=True)["item_id:token"].agg(list)
    assert seqs.tolist() == [[2, 1, 3], [4], [3, 3, 1, 2]]
    assert ds.items[ds.target_index("test")].tolist() == [seqs[0][-1], seqs[2][-1]]
    assert ds.items[ds.target_index("valid")].tolist() == [seqs[0][-2], seqs[2][-2]]
    assert ref.split_differences(ds)["users_with_3_items"] == 1
    assert ref.split_differences(ds)["users_below_3_items"] == 1


def test_write_atomic_warns_on_missing_items(tmp_path):
    ds = _tiny()
    ds.num_items = 5  # item 5 never occurs
    with pytest.warns(UserWarning, match="1 of 5 items never occur"):
        ref.write_atomic(ds, tmp_path, "t")


def test_recbole_config_keys(tmp_path):
    cfg = ref.recbole_config(tmp_path, {"hidden_size": 32, "threads": 1}, "pop100", tmp_path / "ck")
    assert cfg["eval_args"] == {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user",
                                "mode": {"valid": "pop100", "test": "pop100"}}
    assert cfg["hidden_size"] == 32 and cfg["inner_size"] == 256
    assert cfg["train_neg_sample_args"] is None and cfg["loss_type"] == "CE"
    assert cfg["load_col"] == {"inter": ["user_id", "item_id", "timestamp"]}
    assert "threads" not in cfg and cfg["gpu_id"] == "" and cfg["use_gpu"] is False
    with pytest.raises(KeyError, match="did you mean 'hidden_size'"):
        ref.recbole_config(tmp_path, {"hiden_size": 32}, "full", tmp_path)
    with pytest.raises(ValueError, match="eval_mode"):
        ref.recbole_config(tmp_path, {}, "pop", tmp_path)


def test_ml100k_conversion_matches_real_file(tmp_path):
    src = Path("/work/shared/data/ml-100k/ml-100k.inter")
    if not src.exists():
        pytest.skip("shared ml-100k data absent")
    from recarch.data import get_dataset

    ds = get_dataset("ml-100k", data_dir="/work/shared/data")
    path = ref.write_atomic(ds, tmp_path, "m")
    frame = pd.read_csv(path, sep="\t")
    assert len(frame) == 100_000 and frame["user_id:token"].nunique() == 943
    assert frame["item_id:token"].min() == 1 and frame["item_id:token"].max() == 1682
    # positions restart at 0 per user and run to length - 1
    assert (frame.groupby("user_id:token")["timestamp:float"].max() + 1).tolist() == ds.lengths().tolist()
