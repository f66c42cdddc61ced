import pytest
import torch

from recarch.cost import analytic_transformer_flops, count_flops
from recarch.models import SeqModelConfig, build_model
from recarch.models.attention import linear_attention, linrec_feature_map

torch.set_num_threads(1)


def model(name="sasrec", attention="softmax", **kw):
    torch.manual_seed(0)
    cfg = SeqModelConfig(name=name, attention=attention, max_len=8, hidden_size=16, inner_size=32, n_layers=2,
                         n_heads=2, dropout=0.0, attn_dropout=0.0, **kw)
    feats = torch.randint(0, 6, (31, 3))
    return build_model(cfg, 30, feats, 5).eval()


SEQ = torch.tensor([[0, 0, 0, 4, 9, 2, 7, 1], [3, 5, 8, 13, 21, 2, 7, 30], [0, 0, 0, 0, 0, 0, 0, 6]])


@pytest.mark.parametrize("name", ["sasrec", "fdsa", "sasrecf"])
@pytest.mark.parametrize("attention", ["softmax", "linear"])
def test_score_last_equals_the_last_position_of_the_full_pass(name, attention):
    m = model(name, attention)
    with torch.no_grad():
        full = m(SEQ)[:, -1] @ m.item_embeddings().T
        last = m.score_last(SEQ)
    assert last.shape == (3, 31)
    torch.testing.assert_close(last, full, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("attention", ["softmax", "linear"])
def test_causal_no_position_sees_the_future_or_the_padding(attention):
    m = model(attention=attention)
    with torch.no_grad():
        h = m(SEQ)
        # the prefix 4 9 2 of row 0, alone and left-padded, gives the same state at item 2
        prefix = m(torch.tensor([[0, 0, 0, 0, 0, 4, 9, 2]]))
    torch.testing.assert_close(prefix[0, -1], h[0, 5], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("n", [5, 32, 70])  # inside one chunk, exactly one, three with padding
def test_linear_attention_causal_form_matches_the_definition(n):
    torch.manual_seed(1)
    q, k, v = torch.randn(3, 2, 2, n, 4).unbind(0)
    got = linear_attention(q, k, v, None, causal=True)
    assert got.shape == (2, 2, n, 4)
    fq, fk = linrec_feature_map(q), linrec_feature_map(k)
    for t in range(n):  # A_t = φ(q_t) Σ_{s≤t} φ(k_s)ᵀ v_s / √d
        kv = fk[:, :, : t + 1].transpose(-1, -2) @ v[:, :, : t + 1]
        torch.testing.assert_close(got[:, :, t], (fq[:, :, t : t + 1] @ kv)[:, :, 0] / 2.0)
    # φ is an L2-normalised ELU per position
    torch.testing.assert_close(fq.norm(dim=-1), torch.ones(2, 2, n))


@pytest.mark.parametrize("attention", ["softmax", "linear"])
def test_counted_flops_match_the_analytic_formula(attention):
    m = model(attention=attention)
    counted = count_flops(m, (SEQ[1:2],), method_name="score_last")["flops"]
    formula = analytic_transformer_flops(8, 16, 32, 2, 2, 30, attention=attention, score="last",
                                         linear_form="chunked", last_only=True)["flops"]
    assert counted == formula


@pytest.mark.parametrize("gates", [1, 2])
@pytest.mark.parametrize("attention", ["softmax", "linear"])
def test_data_aware_gates_start_as_identity_and_get_gradients(gates, attention):
    plain, gated = model(attention=attention), model(attention=attention, gates=gates)
    gated.load_state_dict(plain.state_dict(), strict=False)
    with torch.no_grad():
        # zero-initialised gate biases and small weights: 2·σ(≈0) ≈ 1, so the gated model starts near the plain one
        torch.testing.assert_close(gated.score_last(SEQ), plain.score_last(SEQ), atol=0.05, rtol=0.05)
        torch.testing.assert_close(gated.score_last(SEQ), gated(SEQ)[:, -1] @ gated.item_embeddings().T,
                                   atol=1e-5, rtol=1e-5)
    gated.train()
    gated(SEQ).pow(2).mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for n, p in gated.named_parameters() if "gate" in n)


def test_feature_models_need_features():
    cfg = SeqModelConfig(name="fdsa")
    with pytest.raises(ValueError, match="needs item features"):
        build_model(cfg, 10)


def test_gradients_reach_every_parameter():
    m = model("fdsa").train()
    loss = m(SEQ).pow(2).mean() + m.score_last(SEQ).mean()
    loss.backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None]
    assert missing == []
