"""A small, readable reference of the Hugging Face LlamaForCausalLM forward pass.

Plain torch, written from the documented semantics (eager attention, no dropout, no
KV cache). Parameters are a dict keyed by Hugging Face tensor names; every function
works in whatever floating dtype the parameters have (float32 or float64), and all
derived constants (RoPE angles) are computed in float64 and cast down.

    embed -> [layer]* -> final RMSNorm -> lm_head

    layer:  h = h + o_proj(attn(rope(q_proj(n1(h))), rope(k_proj(n1(h))), v_proj(n1(h))))
            h = h + down_proj(silu(gate_proj(n2(h))) * up_proj(n2(h)))
"""

import math

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


# ---------------------------------------------------------------------------- config


def head_dim(cfg):
    """D: config head_dim when present, else hidden_size / num_attention_heads."""
    d = cfg.get("head_dim")
    if d is None:
        d = cfg["hidden_size"] // cfg["num_attention_heads"]
    return int(d)


def num_kv_heads(cfg):
    return int(cfg.get("num_key_value_heads") or cfg["num_attention_heads"])


def rope_linear_factor(cfg):
    """Linear position-interpolation factor; reads both `type` and `rope_type`."""
    rs = cfg.get("rope_scaling")
    if not rs:
        return 1.0
    kind = rs.get("rope_type", rs.get("type"))
    if kind in (None, "default"):
        return 1.0
    if kind != "linear":
        raise ValueError("reference only implements linear RoPE scaling, got %r" % kind)
    return float(rs["factor"])


def param_names(cfg):
    """Hugging Face tensor names of the checkpoint, in model order."""
    names = ["model.embed_tokens.weight"]
    for i in range(cfg["num_hidden_layers"]):
        p = "model.layers.%d." % i
        names += [
            p + "input_layernorm.weight",
            p + "self_attn.q_proj.weight",
            p + "self_attn.k_proj.weight",
            p + "self_attn.v_proj.weight",
            p + "self_attn.o_proj.weight",
            p + "post_attention_layernorm.weight",
            p + "mlp.gate_proj.weight",
            p + "mlp.up_proj.weight",
            p + "mlp.down_proj.weight",
        ]
    names.append("model.norm.weight")
    if not cfg.get("tie_word_embeddings", False):
        names.append("lm_head.weight")
    return names


def param_shapes(cfg):
    hs, inter = cfg["hidden_size"], cfg["intermediate_size"]
    H, Hkv, D = cfg["num_attention_heads"], num_kv_heads(cfg), head_dim(cfg)
    shapes = {}
    for name in param_names(cfg):
        if name.endswith("embed_tokens.weight") or name == "lm_head.weight":
            shapes[name] = [cfg["vocab_size"], hs]
        elif name.endswith("norm.weight"):
            shapes[name] = [hs]
        elif name.endswith("q_proj.weight"):
            shapes[name] = [H * D, hs]
        elif name.endswith("k_proj.weight") or name.endswith("v_proj.weight"):
            shapes[name] = [Hkv * D, hs]
        elif name.endswith("o_proj.weight"):
            shapes[name] = [hs, H * D]
        elif name.endswith("gate_proj.weight") or name.endswith("up_proj.weight"):
            shapes[name] = [inter, hs]
        elif name.endswith("down_proj.weight"):
            shapes[name] = [hs, inter]
        else:
            raise AssertionError(name)
    return shapes


# --------------------------------------------------------------------------- pieces


def rms_norm(x, w, eps):
    """w * (x * rsqrt(mean(x^2, -1) + eps))."""
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def rope_cos_sin(cfg, n, dtype):
    """cos, sin of shape [n, D], angle[p, i] = (p / factor) * theta^(-2i/D)."""
    D = head_dim(cfg)
    theta = float(cfg.get("rope_theta", 10000.0))
    i = torch.arange(D // 2, dtype=torch.float64)
    inv_freq = 1.0 / (theta ** (2.0 * i / D))
    pos = torch.arange(n, dtype=torch.float64) / rope_linear_factor(cfg)
    freqs = pos[:, None] * inv_freq[None, :]  # [n, D/2]
    emb = torch.cat([freqs, freqs], dim=-1)  # [n, D]
    return emb.cos().to(dtype), emb.sin().to(dtype)


def rotate_half(x):
    d = x.shape[-1] // 2
    return torch.cat([-x[..., d:], x[..., :d]], dim=-1)


def apply_rope(x, cos, sin):
    """x: [B, heads, N, D]; cos/sin: [N, D]."""
    return x * cos + rotate_half(x) * sin


def attention(x, p, prefix, cfg, cos, sin):
    """Causal multi-head attention with GQA. x: [B, N, hidden] -> [B, N, hidden]."""
    B, N, _ = x.shape
    H, Hkv, D = cfg["num_attention_heads"], num_kv_heads(cfg), head_dim(cfg)
    q = x @ p[prefix + "q_proj.weight"].t()  # [B, N, H*D]
    k = x @ p[prefix + "k_proj.weight"].t()  # [B, N, Hkv*D]
    v = x @ p[prefix + "v_proj.weight"].t()
    q = q.view(B, N, H, D).transpose(1, 2)  # [B, H, N, D]
    k = k.view(B, N, Hkv, D).transpose(1, 2)  # [B, Hkv, N, D]
    v = v.view(B, N, Hkv, D).transpose(1, 2)
    q = apply_rope(q, cos, sin)
    k = apply_rope(k, cos, sin)
    # GQA: query head h reads kv head floor(h / (H / Hkv))
    kv_of = torch.arange(H) // (H // Hkv)
    k = k[:, kv_of]
    v = v[:, kv_of]
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(D)  # [B, H, N, N]
    causal = torch.ones(N, N, dtype=torch.bool).tril()  # j <= i
    scores = scores.masked_fill(~causal, float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    out = probs @ v  # [B, H, N, D]
    out = out.transpose(1, 2).reshape(B, N, H * D)
    return out @ p[prefix + "o_proj.weight"].t()


def mlp(x, p, prefix):
    gate = x @ p[prefix + "gate_proj.weight"].t()
    up = x @ p[prefix + "up_proj.weight"].t()
    return (F.silu(gate) * up) @ p[prefix + "down_proj.weight"].t()


# ---------------------------------------------------------------------------- model


def forward(p, cfg, input_ids):
    """Returns (logits [B, N, vocab], list of residual streams after each layer)."""
    eps = float(cfg["rms_norm_eps"])
    emb = p["model.embed_tokens.weight"]
    h = emb[input_ids]  # [B, N, hidden]
    cos, sin = rope_cos_sin(cfg, input_ids.shape[1], emb.dtype)
    hidden = []
    for i in range(cfg["num_hidden_layers"]):
        pre = "model.layers.%d." % i
        r = h
        x = rms_norm(h, p[pre + "input_layernorm.weight"], eps)
        h = r + attention(x, p, pre + "self_attn.", cfg, cos, sin)
        r = h
        x = rms_norm(h, p[pre + "post_attention_layernorm.weight"], eps)
        h = r + mlp(x, p, pre + "mlp.")
        hidden.append(h)
    h = rms_norm(h, p["model.norm.weight"], eps)
    if cfg.get("tie_word_embeddings", False):
        head = emb  # one parameter, used twice
    else:
        head = p["lm_head.weight"]
    logits = h @ head.t()
    return logits, hidden


def shift_targets(labels):
    """HF causal-LM shift: target[b, t] = labels[b, t+1]; the last position is ignored."""
    targets = torch.full_like(labels, IGNORE_INDEX)
    targets[:, :-1] = labels[:, 1:]
    return targets


def causal_lm_loss(logits, labels):
    """Mean cross-entropy over all (b, t) whose shifted target is not -100."""
    targets = shift_targets(labels)
    valid = targets != IGNORE_INDEX
    logp = torch.log_softmax(logits, dim=-1)
    nll = -logp.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (nll * valid).sum() / valid.sum()
