import pytest
import torch

from recarch.cost import analytic_transformer_flops, count_flops
from recarch.models import SeqModelConfig, build_model
from recarch.models.base import to_right_padded
from recarch.models.attention import CausalSelfAttention, linear_attention, linrec_feature_map
from recarch.models.layers import FeedForward
from recarch.models.packing import Packing

torch.set_num_threads(1)


def model(name="sasrec", attention="softmax", **kw):
    torch.manual_seed(0)
    cfg = SeqModelConfig(name=name, attention=attention, max_len=8, hidden_size=16, inner_size=32, n_layers=2,
                         n_heads=2, dropout=0.0, attn_dropout=0.0, **kw)
    feats = torch.randint(0, 6, (31, 3))
    return build_model(cfg, 30, feats, 5).eval()


SEQ = torch.tensor([[0, 0, 0, 4, 9, 2, 7, 1], [3, 5, 8, 13, 21, 2, 7, 30], [0, 0, 0, 0, 0, 0, 0, 6]])


@pytest.mark.parametrize("layer", ["post_norm", "pre_norm", "sasrec", "ligr"])
@pytest.mark.parametrize("name", ["sasrec", "fdsa", "sasrecf"])
@pytest.mark.parametrize("attention,padding", [("softmax", "masked"), ("linear", "masked"), ("softmax", "visible")])
def test_score_last_equals_the_last_position_of_the_full_pass(name, attention, padding, layer):
    m = model(name, attention, layer=layer, activation="swiglu" if layer == "ligr" else "gelu", padding=padding)
    with torch.no_grad():
        full = m(SEQ)[:, -1] @ m.item_embeddings().T
        last = m.score_last(SEQ)
    assert last.shape == (3, 31)
    torch.testing.assert_close(last, full, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("layer", ["post_norm", "pre_norm", "sasrec", "ligr"])
@pytest.mark.parametrize("attention", ["softmax", "linear"])
def test_causal_no_position_sees_the_future_or_the_padding(attention, layer):
    m = model(attention=attention, layer=layer)
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


@pytest.mark.parametrize("layer,activation", [("post_norm", "gelu"), ("pre_norm", "relu"), ("ligr", "swiglu")])
@pytest.mark.parametrize("attention,padding", [("softmax", "masked"), ("linear", "masked"), ("softmax", "visible")])
def test_counted_flops_match_the_analytic_formula(attention, padding, layer, activation):
    m = model(attention=attention, layer=layer, activation=activation, padding=padding)
    counted = count_flops(m, (SEQ[1:2],), method_name="score_last")["flops"]
    formula = analytic_transformer_flops(8, 16, 32, 2, 2, 30, attention=attention, score="last",
                                         linear_form="chunked", last_only=True, layer=layer,
                                         activation=activation, padding_keys=padding == "visible")["flops"]
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


@pytest.mark.parametrize("layer", ["post_norm", "pre_norm", "sasrec", "ligr"])
def test_layer_types_join_the_residual_stream_as_defined(layer):
    """post_norm LN(x + f(x)); pre_norm x + f(LN x); sasrec LN(x) + f(LN x); ligr x + σ(W_g x + b_g) ⊙ f(LN x) — on the FFN
    with SwiGLU, f(a) = W2·(SiLU(W1 a) ⊙ W3 a), computed by hand from the module's weights."""
    torch.manual_seed(3)
    ffn = FeedForward(8, 12, dropout=0.0, layer=layer, activation="swiglu").eval()
    with torch.no_grad():
        for p in ffn.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
        x = torch.randn(2, 5, 8)
        ln = torch.nn.functional.layer_norm
        norm = lambda t: ln(t, (8,), ffn.norm.weight, ffn.norm.bias, ffn.norm.eps)  # noqa: E731
        f = lambda a: ffn.fc2(torch.nn.functional.silu(ffn.fc1(a)) * ffn.fc3(a))  # noqa: E731
        want = {"post_norm": lambda: norm(x + f(x)),
                "pre_norm": lambda: x + f(norm(x)),
                "sasrec": lambda: norm(x) + f(norm(x)),
                "ligr": lambda: x + torch.sigmoid(ffn.skip_gate(x)) * f(norm(x))}[layer]()
        torch.testing.assert_close(ffn(x), want)
        assert (ffn.skip_gate is not None) == (layer == "ligr")


def test_xavier_init_scales_each_matrix_by_its_fan():
    m = model(init="xavier")
    w = m.encoder.layers[0].attention.query.weight.detach()  # 16×16: std √(2/32) = 0.25
    assert 0.18 < float(w.std()) < 0.32
    assert float(m.encoder.layers[0].attention.query.bias.detach().abs().sum()) == 0.0
    assert float(model().encoder.layers[0].attention.query.weight.detach().std()) < 0.03  # N(0, 0.02)


@pytest.mark.parametrize("layer", ["post_norm", "pre_norm", "sasrec", "ligr"])
def test_visible_padding_is_attention_over_the_zeroed_padded_positions(layer):
    """model.padding: visible computes what SASRec's and RecTools's code do: left-padded windows with
    zero states at the padding and a causal mask only, so every real position also attends to the
    N − n padded ones. Checked against that computation written out, in every (real) position."""
    torch.manual_seed(5)
    n, d = 8, 8
    att = CausalSelfAttention(d, 2, dropout=0.0, attn_dropout=0.0, layer=layer, window=n).eval()
    lengths = torch.tensor([5, 8, 1, 2])
    with torch.no_grad():
        for p in att.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
        real = torch.arange(n)[None, :] < lengths[:, None]
        right = torch.randn(4, n, d) * real[..., None]  # right-padded, as the models hold sequences
        left = torch.stack([r.roll(int(n - k), 0) for r, k in zip(right, lengths)])  # zero states first
        a = att.sublayer_input(left)
        source = left if layer == "sasrec" else a
        q, k, v = (m(t).view(4, n, 2, 4).transpose(1, 2) for m, t in
                   ((att.query, a), (att.key, source), (att.value, source)))
        scores = (q @ k.transpose(-1, -2) / 2.0).masked_fill(~torch.ones(n, n, dtype=torch.bool).tril(), float("-inf"))
        ctx = (scores.softmax(-1) @ v).transpose(1, 2).reshape(4, n, d)
        want = att.join(left, a, att.out(ctx))
        got = att(right, lengths)
        last = att(right, lengths, last_only=True)
    for r, k in enumerate(lengths.tolist()):
        torch.testing.assert_close(got[r, :k], want[r, n - k:], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(last[r, 0], want[r, -1], rtol=1e-5, atol=1e-5)
    masked = CausalSelfAttention(d, 2, dropout=0.0, attn_dropout=0.0, layer=layer).eval()
    masked.load_state_dict(att.state_dict())
    with torch.no_grad():  # the padding keys matter where there is padding, nowhere else
        assert not torch.allclose(masked(right, lengths)[0, :5], got[0, :5], atol=1e-3)
        torch.testing.assert_close(masked(right, lengths)[1], got[1])


@pytest.mark.parametrize("positions", ["forward", "inverse"])
@pytest.mark.parametrize("layer", ["post_norm", "pre_norm", "sasrec", "ligr"])
@pytest.mark.parametrize("attention,padding,embedding_norm",
                         [("softmax", "masked", True), ("linear", "masked", True), ("softmax", "visible", False)])
def test_packed_layers_compute_exactly_what_the_padded_ones_do(attention, padding, embedding_norm, layer, positions):
    """The models run embedding and layers on the real positions only; outputs and gradients match
    the padded computation (the supernet's path), for every position and for the last one."""
    m = model(attention=attention, layer=layer, gates=2, positions=positions, padding=padding,
              embedding_norm=embedding_norm)
    right, lengths = to_right_padded(SEQ)
    real = torch.arange(8)[None, :] < lengths[:, None]

    def encode(packed: bool, last_only: bool):
        packing = Packing(lengths, 8) if packed else None
        e = m.embedding(right, packing=packing)
        return m.encoder(e, lengths, last_only, e, packing)

    for last_only, where in ((False, real), (True, torch.ones(3, 1, dtype=torch.bool))):
        torch.testing.assert_close(encode(True, last_only)[where], encode(False, last_only)[where],
                                   rtol=1e-5, atol=1e-5)
    grads = []
    for packed in (True, False):
        m.zero_grad()
        encode(packed, False)[real].pow(2).sum().backward()
        grads.append([p.grad.clone() for p in m.parameters() if p.grad is not None])
    assert len(grads[0]) == len(grads[1]) > 10
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_inverse_positions_count_back_from_the_most_recent_item():
    m = model(positions="inverse")
    right, lengths = to_right_padded(SEQ)  # lengths 5, 8, 1
    with torch.no_grad():
        m.embedding.position.weight.copy_(torch.arange(8.0)[:, None].expand(8, 16))
        m.embedding.item.weight.zero_()
        m.embedding.norm = None
        m.embedding.dropout.p = 0.0
        pos = m.embedding(right)[..., 0]
    assert pos[0, :5].tolist() == [4, 3, 2, 1, 0] and pos[1].tolist() == [7, 6, 5, 4, 3, 2, 1, 0]
    assert pos[2, 0] == 0


def test_visible_padding_needs_softmax_attention():
    from recarch.config import ConfigError
    with pytest.raises(ConfigError, match="model.padding: visible needs model.attention: softmax"):
        SeqModelConfig(attention="linear", padding="visible").validate()


@pytest.mark.parametrize("scale,norm", [(True, False), (False, False), (False, True)])
def test_embedding_is_item_times_root_width_plus_position(scale, norm):
    """SASRec's code: E = Dropout(M[s]·√d + P), no LayerNorm; EASRec's Eq. 3: Dropout(LayerNorm(M[s] + P))."""
    m = model(embedding_scale=scale, embedding_norm=norm)
    right, lengths = to_right_padded(SEQ)
    with torch.no_grad():
        m.embedding.item.weight.fill_(1.0)
        m.embedding.position.weight.copy_(torch.arange(8.0)[:, None].expand(8, 16))
        e = m.embedding(right)
    want = (4.0 if scale else 1.0) + torch.arange(8.0)[:, None].expand(8, 16)
    if norm:
        want = torch.nn.functional.layer_norm(want, (16,), eps=1e-12)
    torch.testing.assert_close(e[1], want)


@pytest.mark.parametrize("name", ["sasrec", "fdsa", "sasrecf"])
def test_item_dropout_drops_table_units_in_training_only(name):
    """model.item_dropout: while training, the scored table and the embedded inputs lose units at rate p
    (the rest scaled by 1/(1 − p)); evaluating, the model is the one without it."""
    plain, dropped = model(name), model(name, item_dropout=0.5)
    with torch.no_grad():
        torch.testing.assert_close(dropped.score_last(SEQ), plain.score_last(SEQ))
        weight = dropped.embedding.item.weight
        torch.testing.assert_close(dropped.item_embeddings(), weight)
        dropped.train()
        table = dropped.item_embeddings()
        kept = table != 0
        assert 0.4 < 1 - kept[1:].float().mean() < 0.6
        torch.testing.assert_close(table[kept], 2 * weight[kept])
        assert not torch.equal(dropped(SEQ), dropped(SEQ))  # the inputs are dropped too


def test_item_dropout_must_be_a_rate():
    from recarch.config import ConfigError
    with pytest.raises(ConfigError, match=r"model.item_dropout must be in \[0, 1\), got 1.0"):
        SeqModelConfig(item_dropout=1.0).validate()
