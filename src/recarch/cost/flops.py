"""FLOPs of a model: counted with torch's FlopCounterMode (attention fixed on CPU) and analytic.

Unit everywhere: FLOPs, 2 per multiply-add (fvcore/ptflops/thop report multiply-adds: half of ours).
Only matrix products are counted (mm, addmm, bmm, convolution, attention); elementwise work is not.
"""
from __future__ import annotations

from typing import Any, Literal, Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from recarch.models.attention import LINEAR_CHUNK
from recarch.modes import eval_mode

UNIT = "FLOPs (2 per multiply-add)"
aten = torch.ops.aten


def _attention_flops(q_shape: Sequence[int], k_shape: Sequence[int], v_shape: Sequence[int]) -> int:
    """QKᵀ plus AV for q (B, H, Nq, d), k (B, Hk, Nk, d), v (B, Hk, Nk, dv); the full Nq×Nk square
    is counted even when causal, because the kernels and the math path compute it (or most of it)."""
    b, h, n_q, d = q_shape
    n_k, d_v = k_shape[-2], v_shape[-1]
    return 2 * b * h * n_q * n_k * d + 2 * b * h * n_q * n_k * d_v


def _sdpa_cpu_flop(q_shape, k_shape, v_shape, *args, out_shape=None, **kwargs) -> int:
    return _attention_flops(q_shape, k_shape, v_shape)


def _sdpa_cpu_backward_flop(grad_shape, q_shape, k_shape, v_shape, *args, out_shape=None,
                            **kwargs) -> int:
    # The backward recomputes QKᵀ, then dP = dO·Vᵀ, dV = Pᵀ·dO, dQ = dS·K, dK = dSᵀ·Q.
    b, h, n_q, d = q_shape
    n_k, d_v = k_shape[-2], v_shape[-1]
    return 2 * b * h * n_q * n_k * (3 * d + 2 * d_v)


def _mha_projection_and_attention(b: int, n_q: int, n_k: int, e: int, heads: int) -> int:
    projections = 2 * b * n_q * e * e * 2 + 2 * b * n_k * e * e * 2  # Q and out; K and V
    d = e // heads
    return projections + _attention_flops((b, heads, n_q, d), (b, heads, n_k, d), (b, heads, n_k, d))


def _native_mha_flop(q_shape, k_shape, v_shape, embed_dim, num_head, *args, out_shape=None,
                     **kwargs) -> int:
    # nn.MultiheadAttention's fused eval path: one opaque op for projections plus attention.
    return _mha_projection_and_attention(q_shape[0], q_shape[1], k_shape[1], embed_dim, num_head)


def _native_encoder_layer_flop(src_shape, embed_dim, num_heads, qkv_weight, qkv_bias, proj_weight,
                               proj_bias, use_gelu, norm_first, eps, nw1, nb1, nw2, nb2,
                               ffn_weight_1, *args, out_shape=None, **kwargs) -> int:
    # nn.TransformerEncoderLayer's fused eval path (batch_first, dense input).
    b, n = src_shape[0], src_shape[1]
    ffn = 2 * 2 * b * n * embed_dim * ffn_weight_1[0]
    return _mha_projection_and_attention(b, n, n, embed_dim, num_heads) + ffn


def attention_flop_mapping() -> dict[Any, Any]:
    """``custom_mapping`` for FlopCounterMode: the attention ops it counts as zero on CPU.

    ``aten._scaled_dot_product_attention_math`` needs no entry: it is a composite op that reaches
    the counter already decomposed into bmm calls (the path SDPA takes with dropout or float masks).
    Nested-tensor inputs to the fused nn.Transformer paths are not handled."""
    mapping: dict[Any, Any] = {
        aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_cpu_flop,
        aten._scaled_dot_product_flash_attention_for_cpu_backward: _sdpa_cpu_backward_flop,
        aten._native_multi_head_attention: _native_mha_flop,
        aten._transformer_encoder_layer_fwd: _native_encoder_layer_flop,
    }
    # Present in torch 2.13; guarded so an older or newer build without it still imports.
    for name in ("_scaled_dot_product_fused_attention_overrideable",):
        if hasattr(aten, name):
            mapping[getattr(aten, name)] = _sdpa_cpu_flop
    return mapping


class _MethodCall(nn.Module):
    """Calls ``model.<method>`` through nn.Module.__call__, so the counter's module tracker enters
    the model and names its submodules by path even when the method is not forward."""

    def __init__(self, model: nn.Module, method: str) -> None:
        super().__init__()
        self.model, self.method = model, method

    def forward(self, *args: Any) -> Any:
        return getattr(self.model, self.method)(*args)


def count_flops(model: nn.Module, example_inputs: tuple, method_name: str = "forward",
                fix_attention: bool = True) -> dict:
    """FLOPs of one inference call ``model.<method_name>(*example_inputs)``: in eval mode (restored
    afterwards, so BatchNorm statistics stay as they were) under no_grad.

    Returns {"flops": int, "by_module": {module path: int}, "by_op": {op name: int}, "unit": str}.
    fix_attention=False runs the stock counter, which misses CPU attention (kept to show the gap)."""
    if not isinstance(example_inputs, tuple):
        raise TypeError(f"count_flops: example_inputs must be a tuple, "
                        f"got {type(example_inputs).__name__}")
    if not callable(getattr(model, method_name, None)):
        raise AttributeError(f"count_flops: {type(model).__name__} has no method {method_name!r}")
    counter = FlopCounterMode(display=False,
                              custom_mapping=attention_flop_mapping() if fix_attention else None)
    with eval_mode(model), torch.no_grad(), counter:
        _MethodCall(model, method_name)(*example_inputs)
    counts = counter.get_flop_counts()
    root, prefix = type(model).__name__, f"{_MethodCall.__name__}.model"
    by_module = {(name.replace(prefix, root, 1) if name.startswith(prefix) else root): int(sum(ops.values()))
                 for name, ops in counts.items() if name != "Global"}
    by_op = {str(op): int(n) for op, n in counts.get("Global", {}).items()}
    return {"flops": int(counter.get_total_flops()), "by_module": by_module, "by_op": by_op,
            "unit": UNIT}


def flops_per_sequence(model: nn.Module, seq_len: int, batch: int = 1,
                       method: str = "forward") -> dict:
    """FLOPs per sequence of ``model.<method>(ids)`` with ids = ones((batch, seq_len)) (item 1 at
    every position, so no padding), in eval mode; the model's training flag is restored.

    Returns {"flops_per_sequence", "flops_total", "batch", "seq_len", "method", "unit"}; the total
    is divided by ``batch`` (exact for models whose cost is linear in the batch)."""
    if seq_len < 1 or batch < 1:
        raise ValueError(f"flops_per_sequence: seq_len and batch must be >= 1, got {seq_len}, {batch}")
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    ids = torch.ones((batch, seq_len), dtype=torch.long, device=device)
    was_training = model.training
    model.eval()
    try:
        counted = count_flops(model, (ids,), method)
    finally:
        model.train(was_training)
    return {"flops_per_sequence": counted["flops"] // batch, "flops_total": counted["flops"],
            "batch": batch, "seq_len": seq_len, "method": method, "unit": UNIT}


def analytic_layer_flops(n_q: int, n_k: int, hidden: int, inner: int, n_heads: int,
                         attention: Literal["softmax", "linear"] = "softmax",
                         linear_form: Literal["kv", "chunked"] = "kv", chunk: int = LINEAR_CHUNK,
                         layer: str = "post_norm", activation: str = "gelu", padding_keys: bool = False) -> dict:
    """Matmul FLOPs of one transformer layer whose queries, output projection and FFN see
    n_q positions while keys and values see n_k (n_q = n_k = N for a full layer; n_q = 1 for a
    last-position-only layer). D = hidden, d = D/H per head.

    - projections: Q and O 2·2·n_q·D², K and V 2·2·n_k·D²;
    - softmax attention: QKᵀ 2·n_q·n_k·D plus AV the same (all heads together);
    - linear, form "kv": per head φ(K)ᵀV (d×n_k)(n_k×d) = 2·n_k·d², then φ(Q)·(φ(K)ᵀV) = 2·n_q·d²,
      i.e. 2·(n_k + n_q)·D²/H for all heads (a causal prefix-sum form costs the same);
    - linear, form "chunked" (the causal path of recarch.models.attention.linear_attention, n_q = n_k = N
      padded to N' = a multiple of C = min(``chunk``, N)): per chunk the masked φ(Q)φ(K)ᵀ and its product with V,
      2·2·N'·C·d per head, and the chunk's φ(K)ᵀV and φ(Q) times the earlier chunks' sum, 2·2·N'·d²;
      i.e. 4·N'·(C·D + D²/H) for all heads;
    - FFN: 2·2·n_q·D·D_ff, plus 2·n_q·D·D_ff for SwiGLU's third matrix (``activation="swiglu"``);
    - LiGR's skip gates (``layer="ligr"``): 2·2·n_q·D² (one D×D gate per sublayer); the layer types
      differ otherwise only in LayerNorms, which are free here;
    - visible padding keys (``padding_keys``, softmax only): one more key and value, so n_k + 1 in the
      attention, plus 2·2·D² to project the zero state (once per batch; counted whole per sequence)."""
    where = "analytic_layer_flops"
    if hidden % n_heads:
        raise ValueError(f"{where}: hidden {hidden} is not divisible by n_heads {n_heads}")
    if attention not in ("softmax", "linear"):
        raise ValueError(f"{where}: attention must be 'softmax' or 'linear', got {attention!r}")
    if linear_form not in ("kv", "chunked"):
        raise ValueError(f"{where}: linear_form must be 'kv' or 'chunked', got {linear_form!r}")
    if attention == "linear" and linear_form == "chunked" and n_q != n_k:
        raise ValueError(f"{where}: the chunked form is the full causal layer (n_q = n_k), got {n_q}, {n_k}")
    if padding_keys and attention != "softmax":
        raise ValueError(f"{where}: padding keys need softmax attention")
    projections = 2 * 2 * n_q * hidden * hidden + 2 * 2 * (n_k + padding_keys) * hidden * hidden
    d = hidden // n_heads
    if attention == "softmax":
        attn = 2 * 2 * n_q * (n_k + padding_keys) * hidden
    elif linear_form == "chunked":
        size = min(chunk, n_q)
        padded = -(-n_q // size) * size
        attn = 4 * padded * (size * hidden + hidden * d)
    else:
        attn = n_heads * (2 * n_k * d * d + 2 * n_q * d * d)
    ffn = (3 if activation == "swiglu" else 2) * 2 * n_q * hidden * inner
    gates = 2 * 2 * n_q * hidden * hidden if layer == "ligr" else 0
    return {"projections": projections, "attention": attn, "ffn": ffn, "skip_gates": gates,
            "flops": projections + attn + ffn + gates, "unit": UNIT}


def analytic_transformer_flops(seq_len: int, hidden: int, inner: int, n_layers: int, n_heads: int,
                               num_items: int, attention: Literal["softmax", "linear"] = "softmax",
                               score: Literal["last", "all"] = "last",
                               linear_form: Literal["kv", "chunked"] = "kv",
                               last_only: bool = False, layer: str = "post_norm",
                               activation: str = "gelu", padding_keys: bool = False) -> dict:
    """Matmul FLOPs per sequence of a SASRec-style encoder (embedding lookups, LayerNorm, softmax,
    activations and masks are free), N = seq_len positions, tied item table of I+1 rows.

    Every layer computes all N positions (see analytic_layer_flops), except that last_only=True
    makes the final layer compute the last position only (n_q = 1), always in the "kv" form for
    linear attention — what recarch.models.attention.TransformerEncoder(last_only=True) does.
    Scoring against the item table: 2·D·(I+1) for the last position, N times that for "all".
    ``layer`` and ``activation`` as in SeqModelConfig, ``padding_keys`` for ``padding: visible`` (see
    analytic_layer_flops).
    Returns {"projections", "attention", "ffn", "skip_gates", "score", "flops", "unit"}."""
    if score not in ("last", "all"):
        raise ValueError(f"analytic_transformer_flops: score must be 'last' or 'all', got {score!r}")
    if last_only and score == "all":
        raise ValueError("analytic_transformer_flops: last_only=True cannot score all positions")
    if n_layers < 0 or seq_len < 1:
        raise ValueError(f"analytic_transformer_flops: need seq_len >= 1 and n_layers >= 0, "
                         f"got {seq_len}, {n_layers}")
    kind = {"layer": layer, "activation": activation, "padding_keys": padding_keys}
    full = analytic_layer_flops(seq_len, seq_len, hidden, inner, n_heads, attention, linear_form, **kind)
    layers = [full] * n_layers
    if last_only and n_layers:
        layers[-1] = analytic_layer_flops(1, seq_len, hidden, inner, n_heads, attention, "kv", **kind)
    parts = ("projections", "attention", "ffn", "skip_gates")
    out = {key: sum(one[key] for one in layers) for key in parts}
    out["score"] = 2 * hidden * (num_items + 1) * (seq_len if score == "all" else 1)
    out["flops"] = sum(out[key] for key in parts) + out["score"]
    out["unit"] = UNIT
    return out
