"""bench_ctr.py's popularity floor on a hand-computed case."""
from __future__ import annotations

import numpy as np
import pytest

from benchmark_scripts import load
from recarch.ctr.table import CTRData, CTRSchema, CTRTable


def table(items, labels) -> CTRTable:
    cat = np.stack([np.zeros(len(items), np.int64), np.asarray(items, np.int64)], 1)
    return CTRTable(cat, np.zeros((len(items), 0), np.float32), np.asarray(labels, np.float32))


def test_the_popularity_floor_scores_rows_by_their_items_training_clicks():
    # training clicks: item 1 → 2, item 2 → 1, item 3 → 0 (shown but never clicked)
    train = table([1, 1, 1, 2, 2, 3], [1, 1, 0, 1, 0, 0])
    # test scores 2, 1, 0, 2: positives {2, 0} vs negatives {1, 2}; pairs (2>1) 1, (2=2) ½, (0<1) 0, (0<2) 0 → 1.5 / 4
    test = table([1, 2, 3, 1], [1, 0, 1, 0])
    data = CTRData("tiny", CTRSchema(fields=["user_id", "item_id"], vocab_sizes=[1, 4], numeric=[]), train, test, test)
    assert load("bench_ctr").popularity_auc(data, "item_id") == pytest.approx(1.5 / 4)
