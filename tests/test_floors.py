import numpy as np
import torch

from recarch.data.sequences import SequenceDataset
from recarch.evaluation import Evaluator
from recarch.models.floors import MarkovChain, Popularity

# training parts: [1 2 3] (valid 4, test 5), [2 3 1 2] (valid 5, test 4), [3 1] (too short to hold out)
DATA = SequenceDataset("t", 5, np.array([0, 5, 11, 13]), np.array([1, 2, 3, 4, 5, 2, 3, 1, 2, 5, 4, 3, 1]),
                       np.array(["a", "b", "c"]), np.array(["", "1", "2", "3", "4", "5"]))


def test_popularity_counts_the_training_parts_only():
    torch.testing.assert_close(Popularity(DATA).score_last(torch.tensor([[1]]))[0],
                               torch.tensor([0.0, 3, 3, 3, 0, 0], dtype=torch.float64))


def test_markov_chain_counts_transitions_inside_training_parts_with_popularity_below_one_count():
    scores = MarkovChain(DATA).score_last(torch.tensor([[0, 2], [1, 3], [0, 1], [0, 5]]))
    fill = 3 / 4  # popularity 3 scaled by 1 / (max + 1)
    want = torch.tensor([[0, fill, fill, 2 + fill, 0, 0],  # 2 → 3 twice
                         [0, 2 + fill, fill, fill, 0, 0],  # 3 → 1 twice (users b and c)
                         [0, fill, 2 + fill, fill, 0, 0],  # 1 → 2 twice; 3 → 4 and 4 → 5 are held out
                         [0, fill, fill, fill, 0, 0]], dtype=torch.float64)  # 5 never leads anywhere in training
    torch.testing.assert_close(scores, want)


def test_floors_are_ranked_by_the_evaluator_like_models():
    ev = Evaluator(DATA, max_len=4, protocols=["full"], ks=[1, 5])
    # valid: the history (1 2 3) is masked, items 4 and 5 both score 0, and a tie counts against the
    # target: rank 1 for both users, so recall@1 = 0 and NDCG@5 = 1 / log2(3)
    result = ev.evaluate(MarkovChain(DATA), "valid")["full"]
    assert result["recall@1"] == 0.0 and result["recall@5"] == 1.0
    assert abs(result["ndcg@5"] - 1 / np.log2(3)) < 1e-6
