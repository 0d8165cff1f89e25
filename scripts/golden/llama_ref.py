"""A small, readable reference of the Hugging Face LlamaForCausalLM forward pass.

Plain torch, written from the documented semantics (eager attention, no dropout, no
KV cache). Parameters are a dict keyed by Hugging Face tensor names; every function
works in whatever floating dtype the parameters have (float32 or float64), and all
derived constants (RoPE angles) are computed in float64 and cast down.

    embed -> [layer]* -> final RMSNorm -> lm_head

    layer:  h = h + o_proj(attn(rope(q_proj(n1(h))), rope(k_proj(n1(h))), v_proj(n1(h))))
            h = h + down_proj(silu(gate_proj(n2(h))) * up_proj(n2(h)))

Qwen 2 (model_type "qwen2") is the same with a bias on q_proj, k_proj and v_proj; Qwen 3
("qwen3") with an RMSNorm over each head of q and k (q_norm, k_norm) before RoPE.
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


def qkv_bias(cfg):
    """Whether q_proj, k_proj and v_proj have biases (Qwen 2)."""
    return cfg.get("model_type") == "qwen2"


def qk_norm(cfg):
    """Whether each q and k head is RMS-normalised before RoPE (Qwen 3)."""
    return cfg.get("model_type") == "qwen3"


def param_names(cfg):
    """Hugging Face tensor names of the checkpoint, in model order."""
    names = ["model.embed_tokens.weight"]
    for i in range(cfg["num_hidden_layers"]):
        p = "model.layers.%d." % i
        names += [p + "input_layernorm.weight"]
        for proj in ("q_proj", "k_proj", "v_proj"):
            names += [p + "self_attn.%s.weight" % proj]
            if qkv_bias(cfg):
                names += [p + "self_attn.%s.bias" % proj]
        if qk_norm(cfg):
            names += [p + "self_attn.q_norm.weight", p + "self_attn.k_norm.weight"]
        names += [
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
        elif name.endswith("q_norm.weight") or name.endswith("k_norm.weight"):
            shapes[name] = [D]
        elif name.endswith("norm.weight"):
            shapes[name] = [hs]
        elif name.endswith("q_proj.weight"):
            shapes[name] = [H * D, hs]
        elif name.endswith("k_proj.weight") or name.endswith("v_proj.weight"):
            shapes[name] = [Hkv * D, hs]
        elif name.endswith("q_proj.bias"):
            shapes[name] = [H * D]
        elif name.endswith("k_proj.bias") or name.endswith("v_proj.bias"):
            shapes[name] = [Hkv * D]
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
    if qkv_bias(cfg):
        q = q + p[prefix + "q_proj.bias"]
        k = k + p[prefix + "k_proj.bias"]
        v = v + p[prefix + "v_proj.bias"]
    q = q.view(B, N, H, D).transpose(1, 2)  # [B, H, N, D]
    k = k.view(B, N, Hkv, D).transpose(1, 2)  # [B, Hkv, N, D]
    v = v.view(B, N, Hkv, D).transpose(1, 2)
    if qk_norm(cfg):
        eps = float(cfg["rms_norm_eps"])
        q = rms_norm(q, p[prefix + "q_norm.weight"], eps)
        k = rms_norm(k, p[prefix + "k_norm.weight"], eps)
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


# ------------------------------------------------------------- LoRA and S²-Attn
#
# Additions for the LongLoRA training fixtures (make_golden_train.py). Nothing above
# this line depends on them. LoRA tensors live in the same dict under Hugging Face-style
# names: "<module>.lora_A.weight" [r, in] and "<module>.lora_B.weight" [out, r] beside
# "<module>.weight", e.g. "model.layers.0.self_attn.q_proj.lora_A.weight".

S2_FORMS = ("dense", "roll", "segmented")


def lora_linear(x, p, prefix, scaling):
    """y = x Wᵀ + scaling · ((x Aᵀ) Bᵀ) (PEFT LoRA, dropout 0); the LoRA term only when
    p holds prefix + "lora_A.weight"."""
    y = x @ p[prefix + "weight"].t()
    a = p.get(prefix + "lora_A.weight")
    if a is not None:
        y = y + ((x @ a.t()) @ p[prefix + "lora_B.weight"].t()) * scaling
    return y


def s2_segments(H, N, G):
    """[H, N] int64: S²-Attn segment id of token i for query head h — floor(i / G) for
    heads [0, H/2), floor((i + G/2) / G) for heads [H/2, H)."""
    if G % 2 != 0 or H % 2 != 0:
        raise ValueError("S²-Attn needs an even group size and an even head count")
    i = torch.arange(N)
    first = i // G
    second = (i + G // 2) // G
    return torch.stack([first if h < H // 2 else second for h in range(H)])


def s2_segment_mask(H, N, G):
    """[H, N, N] bool, True where query i of head h may attend to key j: j <= i and both
    in the same segment (the leak-free 'segmented' S²-Attn)."""
    seg = s2_segments(H, N, G)
    causal = torch.ones(N, N, dtype=torch.bool).tril()
    same = seg[:, :, None] == seg[:, None, :]
    return same & causal[None]


def masked_attention_core(q, k, v, allowed):
    """softmax(q kᵀ / √D, masked by `allowed` [.., N, N] bool) v; q/k/v [B, H, N, D]."""
    D = q.shape[-1]
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(D)
    scores = scores.masked_fill(~allowed, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


def s2_attention_core(q, k, v, form, G):
    """Attention of q, k, v [B, H, N, D] (after RoPE and after repeating kv heads to H).

    form "dense": plain causal attention.
    form "segmented": causal attention with the per-head block mask of s2_segment_mask.
    form "roll": the paper's pseudocode with torch.roll — roll the second half of the
      heads of q, k, v by -G/2 along the sequence, split into N/G groups of G tokens,
      causal attention inside each group, roll those heads' output back by +G/2. The last
      group then holds tokens [N-G/2, N) followed by [0, G/2), so tokens 0..G/2-1 of the
      shifted heads see the last G/2 tokens (the known leak).
    """
    B, H, N, D = q.shape
    if form == "dense":
        causal = torch.ones(N, N, dtype=torch.bool).tril()
        return masked_attention_core(q, k, v, causal)
    if form == "segmented":
        return masked_attention_core(q, k, v, s2_segment_mask(H, N, G))
    if form != "roll":
        raise ValueError("unknown attention form %r" % form)
    if N % G != 0 or G % 2 != 0 or H % 2 != 0:
        raise ValueError("roll form needs N divisible by G, G and H even")
    half, shift = H // 2, G // 2

    def shift_heads(t, amount):
        return torch.cat([t[:, :half], t[:, half:].roll(amount, dims=2)], dim=1)

    qs, ks, vs = (shift_heads(t, -shift).reshape(B, H, N // G, G, D) for t in (q, k, v))
    causal = torch.ones(G, G, dtype=torch.bool).tril()
    out = masked_attention_core(qs, ks, vs, causal)  # [B, H, N/G, G, D]
    out = out.reshape(B, H, N, D)
    return shift_heads(out, shift)


def attention_lora(x, p, prefix, cfg, cos, sin, scaling, form, G):
    """attention() with LoRA on q/k/v/o and the attention core chosen by `form`."""
    B, N, _ = x.shape
    H, Hkv, D = cfg["num_attention_heads"], num_kv_heads(cfg), head_dim(cfg)
    q = lora_linear(x, p, prefix + "q_proj.", scaling)
    k = lora_linear(x, p, prefix + "k_proj.", scaling)
    v = lora_linear(x, p, prefix + "v_proj.", scaling)
    q = q.view(B, N, H, D).transpose(1, 2)
    k = k.view(B, N, Hkv, D).transpose(1, 2)
    v = v.view(B, N, Hkv, D).transpose(1, 2)
    q = apply_rope(q, cos, sin)  # global positions, before any grouping
    k = apply_rope(k, cos, sin)
    kv_of = torch.arange(H) // (H // Hkv)
    k = k[:, kv_of]
    v = v[:, kv_of]
    out = s2_attention_core(q, k, v, form, G)  # [B, H, N, D]
    out = out.transpose(1, 2).reshape(B, N, H * D)
    return lora_linear(out, p, prefix + "o_proj.", scaling)


def forward_lora(p, cfg, input_ids, scaling, form="dense", G=None):
    """forward() with LoRA adapters and S²-Attn; returns logits [B, N, vocab].
    RoPE uses cfg's (linear) rope_scaling, as forward() does."""
    eps = float(cfg["rms_norm_eps"])
    emb = p["model.embed_tokens.weight"]
    h = emb[input_ids]
    cos, sin = rope_cos_sin(cfg, input_ids.shape[1], emb.dtype)
    for i in range(cfg["num_hidden_layers"]):
        pre = "model.layers.%d." % i
        r = h
        x = rms_norm(h, p[pre + "input_layernorm.weight"], eps)
        h = r + attention_lora(x, p, pre + "self_attn.", cfg, cos, sin, scaling, form, G)
        r = h
        x = rms_norm(h, p[pre + "post_attention_layernorm.weight"], eps)
        h = r + mlp(x, p, pre + "mlp.")
    h = rms_norm(h, p["model.norm.weight"], eps)
    head = emb if cfg.get("tie_word_embeddings", False) else p["lm_head.weight"]
    return h @ head.t()
