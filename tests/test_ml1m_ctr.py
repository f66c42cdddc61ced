"""ml-1m-ctr: SASRec's ml-1m positives with popularity-matched negatives (recarch.ctr.readers.ml1m_ctr)."""
import os
from pathlib import Path

import numpy as np
import pytest

from recarch.ctr import readers as R

SHARED = Path(os.environ.get("RECARCH_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def test_negatives_follow_popularity_and_avoid_the_users_items():
    # user 1 saw items 1, 2; user 2 saw 1; user 3 saw 1, 3: item 1 is 3/5 of the positives
    users, items = np.array([1, 1, 2, 3, 3] * 200), np.array([1, 2, 1, 1, 3] * 200)
    neg = R.popularity_matched_negatives(users, items, seed=0)
    seen = {(1, 1), (1, 2), (2, 1), (3, 1), (3, 3)}
    assert not any((u, j) in seen for u, j in zip(users.tolist(), neg.tolist()))
    assert set(neg[users == 1].tolist()) == {3} and set(neg[users == 3].tolist()) == {2}
    # user 2 may draw 2 or 3, in proportion to their positives (1 each): about half each
    assert 0.4 < np.mean(neg[users == 2] == 2) < 0.6
    assert np.array_equal(neg, R.popularity_matched_negatives(users, items, seed=0))  # seeded


@pytest.mark.skipif(not (SHARED / "ml-1m" / "users.dat").exists(), reason="ml-1m not present")
def test_ml1m_ctr_rows_fields_and_popularity_floor():
    chunks = list(R.iter_ml1m_ctr(SHARED / "ml-1m", chunksize=1_000_000))
    cat = np.concatenate([c.cat.to_numpy() for c in chunks])
    label = np.concatenate([c.label for c in chunks])
    assert len(label) == 2 * 999_611 and label.mean() == 0.5 and list(chunks[0].fields) == list(R.ML1M_CTR_FIELDS)
    assert tuple(cat[0]) == ("5988", "1198", "M", "25", "15", "94022", "1981", "Action", "Adventure")  # users.dat, movies.dat
    pos, neg = cat[label == 1], cat[label == 0]
    assert np.array_equal(pos[:, 0], neg[:, 0])  # each negative belongs to its positive's user
    popularity = dict(zip(*np.unique(pos[:, 1], return_counts=True)))
    mean_pos = np.mean([popularity[i] for i in pos[:, 1]])
    mean_neg = np.mean([popularity[i] for i in neg[:, 1]])
    assert 0.7 < mean_neg / mean_pos < 0.9  # popularity-matched, but a user's own items (often popular) are redrawn
    assert not (set(zip(neg[:, 0], neg[:, 1])) & set(zip(pos[:, 0], pos[:, 1])))
    assert (cat[:, 2:8] == "").sum() == 0  # every user and movie joined
