"""recarch.devices.move: the one place batches cross to a device."""
import pytest
import torch

from recarch.devices import move


def test_a_cpu_target_gets_the_same_values():
    t = torch.arange(6).reshape(2, 3)
    assert torch.equal(move(t, "cpu"), t) and move(t, torch.device("cpu")).device.type == "cpu"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_a_cuda_target_is_copied_from_pinned_memory():
    t = torch.arange(6).reshape(2, 3)
    out = move(t, "cuda")
    assert out.device.type == "cuda" and torch.equal(out.cpu(), t)
