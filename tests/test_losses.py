import math

import pytest
import torch

from recarch.train.losses import Teacher, draw_negatives, full_ce, sampled_softmax, select_targets


def test_full_ce_is_the_softmax_cross_entropy_over_all_items():
    hidden = torch.tensor([[1.0, 0.0]])
    items = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])  # logits 0, 1, 0
    expected = -math.log(math.e / (1 + math.e + 1))
    assert math.isclose(full_ce(hidden, torch.tensor([1]), items).item(), expected, rel_tol=1e-6)


def test_select_targets_drops_padding_positions():
    hidden = torch.arange(12.0).view(1, 4, 3)
    h, t = select_targets(hidden, torch.tensor([[0, 0, 5, 6]]))
    assert t.tolist() == [5, 6] and h.tolist() == [[6.0, 7.0, 8.0], [9.0, 10.0, 11.0]]


def test_sampled_softmax_masks_a_negative_equal_to_the_target():
    hidden = torch.tensor([[1.0, 0.0]])
    items = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    # with only items 1 and 2 to draw from, every draw of item 1 collides with the target
    drawn = draw_negatives(2, 50, torch.Generator().manual_seed(0), "cpu")
    assert set(drawn.tolist()) == {1, 2}
    loss = sampled_softmax(hidden, torch.tensor([1]), items, drawn)
    n2 = int((drawn == 2).sum())
    expected = -math.log(math.e / (math.e + n2))
    assert math.isclose(loss.item(), expected, rel_tol=1e-6)


def test_per_sequence_negatives_score_each_position_against_its_sequence_set():
    """(B, K) sets: every real position of sequence b is scored against set b only; the batched
    product equals the same loss computed position by position."""
    torch.manual_seed(0)
    items = torch.randn(9, 4)
    hidden = torch.randn(2, 3, 4)
    target = torch.tensor([[0, 3, 5], [0, 7, 1]])  # a padded first column in every row: trimmed
    negatives = torch.tensor([[1, 3, 8, 8], [4, 2, 6, 5]])  # sequence 0 draws its own target 3 once
    got = sampled_softmax(hidden, target, items, negatives, reduction="sum")
    want = 0.0
    for b in range(2):
        for n in range(3):
            t = int(target[b, n])
            if t == 0:
                continue
            h = hidden[b, n]
            neg = [float(h @ items[j]) for j in negatives[b].tolist() if j != t]
            logits = torch.tensor([float(h @ items[t])] + neg)
            want += float(-torch.log_softmax(logits, 0)[0])
    assert math.isclose(got.item(), want, rel_tol=1e-5)
    # the last-position form (one target per sequence) agrees with its own hand computation
    last = sampled_softmax(hidden[:, -1], target[:, -1], items, negatives, reduction="sum")
    assert math.isclose(last.item(), sampled_softmax(hidden[:, -1:], target[:, -1:], items, negatives,
                                                     reduction="sum").item(), rel_tol=1e-6)


def test_chunked_full_ce_matches_cross_entropy_over_all_logits_with_gradients(monkeypatch):
    import recarch.train.losses as losses

    monkeypatch.setattr(losses, "CHUNK_ELEMENTS", 40)  # 8 rows: chunks of 5 columns over 23
    torch.manual_seed(0)
    hidden = torch.randn(8, 6, dtype=torch.float64, requires_grad=True)
    items = torch.randn(23, 6, dtype=torch.float64, requires_grad=True)
    target = torch.tensor([1, 5, 22, 3, 3, 9, 17, 2])
    got = full_ce(hidden, target, items, reduction="sum")
    g_hidden, g_items = torch.autograd.grad(got, (hidden, items))
    want = torch.nn.functional.cross_entropy(hidden @ items.T, target, reduction="sum")
    w_hidden, w_items = torch.autograd.grad(want, (hidden, items))
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(g_hidden, w_hidden)
    torch.testing.assert_close(g_items, w_items)
    torch.testing.assert_close(full_ce(hidden, target, items), want / 8)


def test_per_position_negatives_score_each_position_against_its_own_set():
    """(B, N, K) sets (RecTools's): position (b, n) is scored against set (b, n) only, padded positions'
    sets unused."""
    torch.manual_seed(0)
    items = torch.randn(9, 4)
    hidden = torch.randn(2, 3, 4)
    target = torch.tensor([[0, 3, 5], [0, 7, 1]])
    negatives = torch.randint(1, 9, (2, 3, 5))
    negatives[0, 1, 0] = 3  # a draw equal to its position's target is masked
    got = sampled_softmax(hidden, target, items, negatives, reduction="sum")
    want = 0.0
    for b in range(2):
        for n in range(1, 3):
            t, h = int(target[b, n]), hidden[b, n]
            neg = [float(h @ items[j]) for j in negatives[b, n].tolist() if j != t]
            want += float(-torch.log_softmax(torch.tensor([float(h @ items[t])] + neg), 0)[0])
    assert math.isclose(got.item(), want, rel_tol=1e-5)


def distilled_ce(student: torch.Tensor, teacher: torch.Tensor, alpha: float) -> torch.Tensor:
    """Σ_m −Σ_j q_mj log softmax(student)_mj, q = (1 − α)·onehot(column 0) + α·softmax(teacher), written out."""
    q = alpha * torch.softmax(teacher, 1)
    q[:, 0] += 1 - alpha
    return -(q * torch.log_softmax(student, 1)).sum()


def test_distilled_full_ce_mixes_the_teachers_softmax_into_the_target_with_gradients(monkeypatch):
    """Chunked over 5 columns, the student's loss and gradients equal the written-out cross entropy
    against (1 − α)·onehot + α·softmax(teacher) over all 23 items; α = 0 is the plain full_ce."""
    import recarch.train.losses as losses

    monkeypatch.setattr(losses, "CHUNK_ELEMENTS", 40)
    torch.manual_seed(1)
    hidden = torch.randn(8, 6, dtype=torch.float64, requires_grad=True)
    items = torch.randn(23, 6, dtype=torch.float64, requires_grad=True)
    t_hidden, t_items = torch.randn(8, 4, dtype=torch.float64), torch.randn(23, 4, dtype=torch.float64)
    target = torch.tensor([1, 5, 22, 3, 3, 9, 17, 2])
    got = full_ce(hidden, target, items, reduction="sum", teacher=Teacher(t_hidden, t_items, 0.3))
    g_hidden, g_items = torch.autograd.grad(got, (hidden, items))
    s, u = hidden @ items.T, t_hidden @ t_items.T
    q = 0.3 * torch.softmax(u, 1)
    q[torch.arange(8), target] += 0.7
    want = -(q * torch.log_softmax(s, 1)).sum()
    w_hidden, w_items = torch.autograd.grad(want, (hidden, items))
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(g_hidden, w_hidden)
    torch.testing.assert_close(g_items, w_items)
    plain = full_ce(hidden, target, items, reduction="sum")
    torch.testing.assert_close(full_ce(hidden, target, items, reduction="sum", teacher=Teacher(t_hidden, t_items, 0.0)), plain)


@pytest.mark.parametrize("shape", ["batch", "sequence", "position"])
def test_distilled_sampled_softmax_uses_the_teachers_scores_on_the_same_candidates(shape):
    """Per target: the candidates are the target and its negatives (a negative equal to the target
    dropped); the student's loss is the cross entropy against (1 − α)·onehot + α·softmax(teacher's
    scores of those candidates)."""
    torch.manual_seed(2)
    items, t_items = torch.randn(9, 4), torch.randn(9, 3)
    hidden, t_hidden = torch.randn(2, 3, 4), torch.randn(2, 3, 3)
    target = torch.tensor([[0, 3, 5], [0, 7, 1]])
    negatives = torch.randint(1, 9, {"batch": (5,), "sequence": (2, 5), "position": (2, 3, 5)}[shape])
    negatives.view(-1)[0] = 3  # equal to a target somewhere
    got = sampled_softmax(hidden, target, items, negatives, reduction="sum", teacher=Teacher(t_hidden, t_items, 0.4))
    want = 0.0
    for b in range(2):
        for n in range(1, 3):
            t = int(target[b, n])
            drawn = negatives if shape == "batch" else negatives[b] if shape == "sequence" else negatives[b, n]
            ids = [t] + [j for j in drawn.tolist() if j != t]
            s = (items[ids] @ hidden[b, n])[None]
            u = (t_items[ids] @ t_hidden[b, n])[None]
            want += float(distilled_ce(s, u, 0.4))
    assert math.isclose(got.item(), want, rel_tol=1e-5)
    plain = sampled_softmax(hidden, target, items, negatives, reduction="sum")
    zero = sampled_softmax(hidden, target, items, negatives, reduction="sum", teacher=Teacher(t_hidden, t_items, 0.0))
    assert math.isclose(zero.item(), plain.item(), rel_tol=1e-6)
