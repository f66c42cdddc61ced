"""Evaluator and candidate protocols: hand-built masking cases, constant and oracle models, negative
sampling invariants on real ML-100K, popularity-following frequencies and determinism."""
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from recarch.data.sequences import SequenceDataset
from recarch.evaluation import PROTOCOLS, Evaluator, sample_negatives

INF = float("inf")
ML100K = Path("/work/shared/data/ml-100k/ml-100k.inter")
ALL = ("full", "uni100", "pop100", "pop100-recbole")


def make_dataset(seqs, num_items, name="toy"):
    lens = [len(s) for s in seqs]
    return SequenceDataset(
        name=name,
        num_items=num_items,
        offsets=np.concatenate([[0], np.cumsum(lens)]).astype(np.int64),
        items=np.concatenate([np.asarray(s, dtype=np.int64) for s in seqs]),
        user_ids=np.array([str(u) for u in range(len(seqs))]),
        item_ids=np.array([""] + [str(i) for i in range(1, num_items + 1)]),
    )


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # on a busy 2-core machine OpenMP threads wait on each other: small ops run 30x slower
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def ml100k():
    if not ML100K.exists():
        pytest.skip(f"{ML100K} is absent")
    import pandas as pd

    df = pd.read_csv(ML100K, sep="\t")
    df.columns = [c.split(":")[0] for c in df.columns]
    df = df.sort_values(["user_id", "timestamp"], kind="stable")
    item_ids, items = np.unique(df["item_id"].to_numpy(), return_inverse=True)
    user_ids, counts = np.unique(df["user_id"].to_numpy(), return_counts=True)
    return SequenceDataset(
        name="ml-100k",
        num_items=len(item_ids),
        offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        items=(items + 1).astype(np.int64),
        user_ids=user_ids.astype(str),
        item_ids=np.concatenate([[""], item_ids.astype(str)]),
    )


@pytest.fixture(scope="module")
def ev100k(ml100k):
    """One evaluator for the module, so each (split, protocol) is sampled once."""
    return Evaluator(ml100k, 50, protocols=ALL)


class Constant(nn.Module):
    def __init__(self, num_items):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))
        self.num_items = num_items

    def score_last(self, seq):
        return torch.zeros(seq.shape[0], self.num_items + 1) + self.w


class Oracle(nn.Module):
    """Knows each input window's next item through a lookup table keyed by a hash of the window."""

    def __init__(self, ev):
        super().__init__()
        self.coef = torch.randint(1, 2**40, (ev.max_len,), generator=torch.Generator().manual_seed(0))
        keys, targets = [], []
        for split in ("valid", "test"):
            keys.append(self.key(torch.from_numpy(ev.inputs(split))))
            targets.append(torch.from_numpy(ev.view(split).targets))
        keys, targets = torch.cat(keys), torch.cat(targets)
        order = torch.argsort(keys)
        self.keys, self.targets = keys[order], targets[order]
        self.num_items = ev.dataset.num_items
        self.saw_training = []

    def key(self, seq):
        return (seq * self.coef).sum(1)

    def score_last(self, seq):
        self.saw_training.append(self.training)
        k = self.key(seq)
        pos = torch.searchsorted(self.keys, k)
        assert torch.equal(self.keys[pos], k)
        scores = torch.zeros(seq.shape[0], self.num_items + 1)
        scores[torch.arange(seq.shape[0]), self.targets[pos]] = INF
        return scores


def test_full_history_masking_on_off_changes_the_rank():
    ds = make_dataset([[3, 1, 2, 4]], num_items=5)  # valid: history [3, 1], target 2
    scores = torch.tensor([[9.0, 0.1, 0.5, 0.9, 0.3, 0.2]])  # padding column scores highest
    masked = Evaluator(ds, 3, protocols=("full",), ks=(1,)).evaluate_scores(scores, "valid")
    off = Evaluator(ds, 3, protocols=("full",), ks=(1,), mask_history=False)
    unmasked = off.evaluate_scores(scores, "valid")
    assert masked["full"]["recall@1"] == 1.0  # item 3 (0.9) is history -> masked
    assert unmasked["full"]["recall@1"] == 0.0 and unmasked["full"]["mrr@1"] == 0.0
    ev = Evaluator(ds, 3, protocols=("full",), mask_history=False)
    assert ev.batch_ranks(scores, "valid", "full", 0).tolist() == [1]


def test_target_in_history_is_not_masked_and_whole_history_is():
    # valid target 2 already occurred first; history [2, 5, 1] is longer than max_len = 2
    ds = make_dataset([[2, 5, 1, 2, 4]], num_items=5)
    ev = Evaluator(ds, 2, protocols=("full",))
    scores = torch.tensor([[0.0, 0.8, 0.6, 0.1, 0.3, 0.9]])  # history items 5 and 1 beat the target
    assert ev.batch_ranks(scores, "valid", "full", 0).tolist() == [0]  # 5 masked though outside the window
    assert ev.inputs("valid").tolist() == [[5, 1]]
    # test split: target 4, history [2, 5, 1, 2] -> only item 3 is left to compete
    assert ev.batch_ranks(scores, "test", "full", 0).tolist() == [0]
    scores[0, 3] = 0.3
    assert ev.batch_ranks(scores, "test", "full", 0).tolist() == [1]  # tie with item 3


def test_model_inputs_follow_the_split():
    ds = make_dataset([[3, 1, 2, 4], [5, 4, 3, 2, 1], [1, 2]], num_items=5)
    ev = Evaluator(ds, 3, protocols=("full",))
    assert ev.inputs("valid").tolist() == [[0, 3, 1], [5, 4, 3]]  # user 2 (2 items) only trains
    assert ev.inputs("test").tolist() == [[3, 1, 2], [4, 3, 2]]
    assert ev.view("valid").targets.tolist() == [2, 2] and ev.view("test").targets.tolist() == [4, 1]


def test_constant_model_scores_zero_and_oracle_scores_one(ml100k, ev100k):
    ev = ev100k
    res = ev.evaluate(Constant(ml100k.num_items), "valid")
    assert res["num_users"] == 943
    for p in ALL:
        assert set(res[p].values()) == {0.0}, p
    oracle = Oracle(ev)
    oracle.train()
    for split in ("valid", "test"):
        res = ev.evaluate(oracle, split)
        for p in ALL:
            assert set(res[p].values()) == {1.0}, (split, p)
    assert oracle.training and not any(oracle.saw_training)  # eval mode inside, mode restored after
    ev_unmasked = Evaluator(ml100k, 50, protocols=("full",), mask_history=False)
    assert ev_unmasked.evaluate(oracle, "test")["full"]["ndcg@5"] == 1.0


def independent_history_keys(ds, split):
    """Sorted user-row * (I+1) + item keys of every item before the target, with a plain loop."""
    stride, keys = ds.num_items + 1, []
    for r, u in enumerate(ds.eval_users()):
        end = ds.offsets[u + 1] - (2 if split == "valid" else 1)
        keys.append(r * stride + ds.items[ds.offsets[u] : end])
    return np.unique(np.concatenate(keys))


def test_sampled_negatives_respect_history_and_target(ml100k, ev100k):
    ev = ev100k
    stride = ml100k.num_items + 1
    pop = ml100k.train_popularity()
    for split in ("valid", "test"):
        hist = independent_history_keys(ml100k, split)
        for p in ("uni100", "pop100", "pop100-recbole"):
            cols = ev.candidates(split, p).columns
            assert cols.shape == (943, 101)
            assert np.array_equal(cols[:, 0], ev.view(split).targets)
            neg = cols[:, 1:]
            assert neg.min() >= 1 and neg.max() <= ml100k.num_items
            assert (np.sort(neg, 1)[:, 1:] != np.sort(neg, 1)[:, :-1]).all()  # distinct per user
            assert not (neg == cols[:, :1]).any()  # never the target
            seen = np.isin(np.arange(943)[:, None] * stride + neg, hist)
            if p == "pop100-recbole":
                assert seen.sum() > 1000  # RecBole's form may draw the user's own history
            else:
                assert not seen.any()
            if p == "pop100":
                assert (pop[neg] > 0).all()
    assert ev.candidates("test", "pop100") is ev.candidates("test", "pop100")  # computed once


def test_sampling_is_deterministic_for_a_seed(ml100k, ev100k):
    a = ev100k.candidates("test", "pop100").columns
    b = Evaluator(ml100k, 50).candidates("test", "pop100").columns
    c = Evaluator(ml100k, 50, seed=7).candidates("test", "pop100").columns
    assert np.array_equal(a, b)
    assert not np.array_equal(a[:, 1:], c[:, 1:])


def test_pop100_frequencies_follow_training_popularity(ml100k, ev100k):
    cols = ev100k.candidates("valid", "pop100").columns
    counts = np.bincount(cols[:, 1:].ravel(), minlength=ml100k.num_items + 1)[1:]
    pop = ml100k.train_popularity()[1:]
    assert np.corrcoef(counts, pop)[0, 1] > 0.9
    uni = ev100k.candidates("valid", "uni100").columns
    assert np.corrcoef(np.bincount(uni[:, 1:].ravel(), minlength=len(pop) + 1)[1:], pop)[0, 1] < 0.5


@pytest.mark.parametrize("scale", [1.0, 0.3])  # integer counts use a lookup table, others the CDF
def test_sampler_draws_proportionally_to_weights(scale):
    # one draw per row from weights over items 1..6 with item 4 blocked everywhere and item 5 weightless
    weights = np.array([5.0, 1, 2, 3, 4, 0, 10]) * scale
    rows = 40_000
    blocked = np.arange(rows, dtype=np.int64) * 7 + 4
    draws = sample_negatives(np.random.default_rng(0), weights, blocked, rows, num=1)
    counts = np.bincount(draws.ravel(), minlength=7)
    assert counts[[0, 4, 5]].tolist() == [0, 0, 0]
    expected = rows * np.array([1, 2, 3, 10]) / 16
    chi2 = ((counts[[1, 2, 3, 6]] - expected) ** 2 / expected).sum()
    assert chi2 < 3 + 5 * np.sqrt(6)  # df = 3; far beyond this is a wrong distribution
    # without replacement: 4 of the 4 drawable items, each exactly once per row
    draws = sample_negatives(np.random.default_rng(1), weights, blocked[:100], 100, num=4)
    assert (np.sort(draws, 1) == [1, 2, 3, 6]).all()


def test_errors_name_what_was_expected():
    ds = make_dataset([[3, 1, 2, 4]], num_items=5)
    with pytest.raises(ValueError, match="drawable"):
        Evaluator(ds, 3, protocols=("uni100",)).candidates("valid", "uni100")
    with pytest.raises(KeyError, match="pop100"):
        Evaluator(ds, 3, protocols=("pop10",))
    with pytest.raises(ValueError, match="split"):
        Evaluator(ds, 3).view("train")
    with pytest.raises(ValueError, match=r"\(1, 6\)"):
        Evaluator(ds, 3, protocols=("full",)).evaluate(Constant(4), "valid")
    assert set(ALL) <= set(PROTOCOLS.names())


def test_batches_shrink_to_bound_the_score_memory_and_metrics_do_not_change(ml100k, monkeypatch):
    import recarch.evaluation.evaluate as E

    torch.manual_seed(0)
    scores = torch.randn(len(ml100k.eval_users()), ml100k.num_items + 1)
    whole = Evaluator(ml100k, 50, protocols=("full", "pop100")).evaluate_scores(scores, "test")
    monkeypatch.setattr(E, "SCORE_BYTES", 8 * (ml100k.num_items + 1) * 7)  # room for 7 rows
    small = Evaluator(ml100k, 50, protocols=("full", "pop100"))
    assert small.batch_size == 7
    assert small.evaluate_scores(scores, "test") == whole
