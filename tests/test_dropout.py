"""recarch.dropout.Dropout: nn.Dropout's distribution and gradient, identity in eval mode."""
import pytest
import torch

from recarch.dropout import Dropout


def test_keeps_one_minus_p_and_rescales():
    torch.manual_seed(0)
    x = torch.ones(1000, 1000)
    y = Dropout(0.2).train()(x)
    kept = y != 0
    assert kept.float().mean().item() == pytest.approx(0.8, abs=2e-3)
    assert torch.equal(y[kept], torch.full_like(y[kept], 1.25))
    assert y.mean().item() == pytest.approx(1.0, abs=3e-3)


def test_gradient_is_the_same_mask():
    torch.manual_seed(1)
    x = torch.randn(64, 32, requires_grad=True)
    y = Dropout(0.5).train()(x)
    y.sum().backward()
    assert torch.equal(x.grad, (y != 0).float() * 2.0)


def test_eval_and_p0_are_identity():
    x = torch.randn(8, 4)
    assert Dropout(0.3).eval()(x) is x
    assert Dropout(0.0).train()(x) is x


def test_rejects_bad_p():
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        Dropout(1.0)
