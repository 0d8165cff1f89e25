#!/usr/bin/env python3
"""Write golden fixtures for the TypeScript engine from a plain-torch Llama reference.

Run from the repository root:

    /usr/bin/python3 scripts/golden/make_golden.py [--out test/fixtures/golden]

Writes five tiny Hugging Face checkpoints (three Llama, one Qwen 2 with q/k/v biases, one
Qwen 3 with q/k head norms) (config.json + model.safetensors) and,
beside each, golden.safetensors with fixed inputs and the float64 logits, loss, gradients
of every checkpoint tensor and the residual stream after layer 0. Only torch, numpy and
the standard library are used. Deterministic: fixed seeds, one CPU thread, byte-identical
output across runs. Exits non-zero if any self-check fails.
"""

import argparse
import hashlib
import json
import math
import os
import sys

sys.dont_write_bytecode = True  # keep scripts/golden free of __pycache__

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import llama_ref as ref  # noqa: E402
import st_io  # noqa: E402

GENERATOR = "scripts/golden/make_golden.py"
B, N = 2, 12

BASE_CONFIG = {
    "model_type": "llama",
    "architectures": ["LlamaForCausalLM"],
    "vocab_size": 96,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 16,
    "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0,
    "rope_scaling": {"type": "linear", "factor": 2.0},
    "tie_word_embeddings": False,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "torch_dtype": "float32",
    "hidden_act": "silu",
    "attention_bias": False,
    "mlp_bias": False,
    "attention_dropout": 0.0,
    "pretraining_tp": 1,
}


class CheckFailed(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise CheckFailed(msg)
    print("  ok: " + msg)


# ----------------------------------------------------------------------- weights


def table_main(description, generator, filename, note, build):
    """The main of a script that writes one table of cases to <out>/<filename>: runs
    build() -> (tensors, meta) with its self-checks, writes the file with the generator,
    torch version, note and case list in its metadata, and reads it back bit-exact."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--out", default=os.path.join("test", "fixtures", "golden"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    try:
        tensors, meta = build()
    except CheckFailed as e:
        print("SELF-CHECK FAILED: " + str(e), file=sys.stderr)
        return 1
    metadata = {
        "generator": generator,
        "torch": torch.__version__,
        "note": note,
        "cases": json.dumps(meta, sort_keys=True, separators=(",", ":")),
    }
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, filename)
    n = st_io.write(path, tensors, metadata)
    back, back_meta = st_io.read(path)
    if back_meta != metadata or list(back) != list(tensors) or not all(torch.equal(back[k], tensors[k]) for k in tensors):
        print("SELF-CHECK FAILED: %s does not read back bit-exact" % path, file=sys.stderr)
        return 1
    print("wrote %s (%d bytes, %d cases)" % (path, n, len(meta)))
    return 0


def init_weights(cfg, seed):
    """Random float32 weights with non-degenerate activations (logit std ~1-3)."""
    g = torch.Generator().manual_seed(seed)
    shapes = ref.param_shapes(cfg)
    hs = cfg["hidden_size"]

    def normal(shape, std):
        return torch.randn(shape, generator=g, dtype=torch.float32) * std

    std = {
        "embed_tokens": 0.5,
        "q_proj": 1.2 / math.sqrt(hs),
        "k_proj": 1.2 / math.sqrt(hs),
        "v_proj": 1.0 / math.sqrt(hs),
        "o_proj": 0.8 / math.sqrt(cfg["num_attention_heads"] * ref.head_dim(cfg)),
        "gate_proj": 1.0 / math.sqrt(hs),
        "up_proj": 1.0 / math.sqrt(hs),
        "down_proj": 0.8 / math.sqrt(cfg["intermediate_size"]),
        "lm_head": 0.35,
    }
    w = {}
    for name in ref.param_names(cfg):
        shape = shapes[name]
        if name.endswith("norm.weight"):
            w[name] = 1.0 + 0.1 * normal(shape, 1.0)
        elif name.endswith(".bias"):
            w[name] = normal(shape, 0.5)  # large, as Qwen 2's k biases are
        else:
            kind = [k for k in std if k in name]
            assert len(kind) == 1, name
            w[name] = normal(shape, std[kind[0]])
    return w


def fixed_inputs(vocab, seed):
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(0, vocab, (B, N), generator=g, dtype=torch.int64)
    labels = input_ids.clone()
    labels[1, :3] = -100  # first 3 of row 1 (label 0 is never a target anyway)
    labels[0, 7] = -100  # one masked target in the middle of row 0
    return input_ids, labels


def bf16_round_bits(x):
    """float32 -> bfloat16 bit pattern by round-to-nearest-even, with integer arithmetic
    (an independent check of torch's .to(torch.bfloat16); inputs here are finite)."""
    bits = x.contiguous().view(torch.int32).to(torch.int64) & 0xFFFFFFFF
    lsb = (bits >> 16) & 1
    rounded = (bits + 0x7FFF + lsb) >> 16
    return rounded & 0xFFFF


# ----------------------------------------------------------------------- golden


def run_reference(weights, cfg, input_ids, labels, dtype):
    """Forward + backward of the reference in `dtype`; weights are upcast copies."""
    p = {k: v.detach().to(dtype).clone().requires_grad_(True) for k, v in weights.items()}
    logits, hidden = ref.forward(p, cfg, input_ids)
    loss = ref.causal_lm_loss(logits, labels)
    loss.backward()
    grads = {k: v.grad.detach().clone() for k, v in p.items()}
    return logits.detach(), loss.detach(), hidden[0].detach(), grads


def naive_layer0(weights, cfg, input_ids):
    """Independent loop-based layer 0 in float64: per batch, per head, per position,
    RoPE as a rotation of the pairs (i, i + D/2) by angle (p/factor)*theta^(-2i/D)."""
    w = {k: v.to(torch.float64) for k, v in weights.items()}
    eps = cfg["rms_norm_eps"]
    H, Hkv, D = cfg["num_attention_heads"], ref.num_kv_heads(cfg), ref.head_dim(cfg)
    theta, factor = cfg["rope_theta"], ref.rope_linear_factor(cfg)
    pre = "model.layers.0."

    def norm(v, wt):
        return wt * v / math.sqrt(float((v * v).mean()) + eps)

    def rot(vec, pos):
        out = vec.clone()
        for i in range(D // 2):
            a = (pos / factor) * theta ** (-2.0 * i / D)
            c, s = math.cos(a), math.sin(a)
            x1, x2 = vec[i], vec[i + D // 2]
            out[i] = x1 * c - x2 * s
            out[i + D // 2] = x2 * c + x1 * s
        return out

    result = torch.zeros(B, N, cfg["hidden_size"], dtype=torch.float64)
    for b in range(B):
        h = [w["model.embed_tokens.weight"][int(t)] for t in input_ids[b]]
        xs = [norm(v, w[pre + "input_layernorm.weight"]) for v in h]
        bias = {t: w.get(pre + "self_attn.%s_proj.bias" % t, 0.0) for t in "qkv"}
        qs = [w[pre + "self_attn.q_proj.weight"] @ x + bias["q"] for x in xs]
        ks = [w[pre + "self_attn.k_proj.weight"] @ x + bias["k"] for x in xs]
        vs = [w[pre + "self_attn.v_proj.weight"] @ x + bias["v"] for x in xs]
        if ref.qk_norm(cfg):  # each head of q and k normalised on its own
            qs = [torch.cat([norm(q[h * D:(h + 1) * D], w[pre + "self_attn.q_norm.weight"]) for h in range(H)]) for q in qs]
            ks = [torch.cat([norm(k[h * D:(h + 1) * D], w[pre + "self_attn.k_norm.weight"]) for h in range(Hkv)]) for k in ks]
        for i in range(N):
            heads = []
            for hq in range(H):
                hk = hq // (H // Hkv)
                qi = rot(qs[i][hq * D : (hq + 1) * D], i)
                sc = []
                for j in range(i + 1):
                    kj = rot(ks[j][hk * D : (hk + 1) * D], j)
                    sc.append(float(qi @ kj) / math.sqrt(D))
                m = max(sc)
                e = [math.exp(s - m) for s in sc]
                z = sum(e)
                acc = torch.zeros(D, dtype=torch.float64)
                for j in range(i + 1):
                    acc += (e[j] / z) * vs[j][hk * D : (hk + 1) * D]
                heads.append(acc)
            attn = w[pre + "self_attn.o_proj.weight"] @ torch.cat(heads)
            h1 = h[i] + attn
            x2 = norm(h1, w[pre + "post_attention_layernorm.weight"])
            g = w[pre + "mlp.gate_proj.weight"] @ x2
            u = w[pre + "mlp.up_proj.weight"] @ x2
            act = g / (1.0 + torch.exp(-g))
            result[b, i] = h1 + w[pre + "mlp.down_proj.weight"] @ (act * u)
    return result


def finite_difference_checks(weights, cfg, input_ids, labels, grads, probes):
    base = {k: v.detach().to(torch.float64) for k, v in weights.items()}

    def loss_at(p):
        logits, _ = ref.forward(p, cfg, input_ids)
        return float(ref.causal_lm_loss(logits, labels))

    step = 1e-5
    for name, idx in probes:
        p = {k: v.clone() for k, v in base.items()}
        orig = float(p[name][idx])
        p[name][idx] = orig + step
        up = loss_at(p)
        p[name][idx] = orig - step
        down = loss_at(p)
        fd = (up - down) / (2 * step)
        ad = float(grads[name][idx])
        err = abs(fd - ad)
        check(
            err <= 1e-8 + 1e-6 * abs(ad),
            "finite difference %s%s: autograd %.10e fd %.10e (|diff| %.1e)"
            % (name, list(idx), ad, fd, err),
        )


# ------------------------------------------------------------------------ write


def write_json(path, obj):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(json.dumps(obj, indent=2) + "\n")


def make_variant(out_dir, name, cfg, weights, store_dtype, input_ids, labels, probes):
    print("== %s" % name)
    d = os.path.join(out_dir, name)
    os.makedirs(d, exist_ok=True)

    # weights as stored, and the values the golden numbers are computed from
    stored = {k: v.to(store_dtype).contiguous() for k, v in weights.items()}
    effective = {k: v.to(torch.float32) for k, v in stored.items()}  # exact upcast

    logits, loss, hidden0, grads = run_reference(effective, cfg, input_ids, labels, torch.float64)
    l32, loss32, _, g32 = run_reference(effective, cfg, input_ids, labels, torch.float32)

    # ---- self-checks
    check(set(grads) == set(ref.param_names(cfg)), "a gradient for every checkpoint tensor")
    if cfg.get("tie_word_embeddings"):
        check("lm_head.weight" not in stored, "tied: no lm_head.weight tensor")
    std = float(logits.std())
    check(0.8 <= std <= 4.0, "logits not degenerate (std %.3f)" % std)
    rel = float((l32.double() - logits).abs().max() / logits.abs().max())
    check(rel < 2e-5, "float32 vs float64 logits: max rel diff %.2e" % rel)
    dl = abs(float(loss32) - float(loss))
    check(dl < 1e-5 * abs(float(loss)), "float32 vs float64 loss: |diff| %.2e" % dl)
    gmax = max(float((g32[k].double() - grads[k]).abs().max()) for k in grads)
    gscale = max(float(grads[k].abs().max()) for k in grads)
    check(gmax < 1e-4 * gscale, "float32 vs float64 grads: max abs diff %.2e (scale %.2e)" % (gmax, gscale))
    targets = ref.shift_targets(labels)
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100)
    check(abs(float(ce) - float(loss)) < 1e-12, "loss equals torch cross_entropy(ignore_index=-100)")
    naive = naive_layer0(effective, cfg, input_ids)
    err = float((naive - hidden0).abs().max())
    check(err < 1e-12, "layer 0 matches an independent loop implementation (|diff| %.1e)" % err)
    finite_difference_checks(effective, cfg, input_ids, labels, grads, probes)

    # ---- write
    config = dict(cfg)
    write_json(os.path.join(d, "config.json"), config)
    st_io.write(os.path.join(d, "model.safetensors"), stored, {"format": "pt"})
    golden = {"input_ids": input_ids, "labels": labels, "logits": logits, "loss": loss.reshape(())}
    golden["hidden.layer0.out"] = hidden0
    for k in ref.param_names(cfg):
        golden["grad." + k] = grads[k]
    meta = {
        "generator": GENERATOR,
        "torch": torch.__version__,
        "note": "computed in float64",
        "variant": name,
    }
    st_io.write(os.path.join(d, "golden.safetensors"), golden, meta)

    # ---- read back
    rw, rmeta = st_io.read(os.path.join(d, "model.safetensors"))
    check(list(rw) == list(stored) and rmeta == {"format": "pt"}, "model.safetensors reads back (names, metadata)")
    check(all(rw[k].dtype == stored[k].dtype and torch.equal(rw[k], stored[k]) for k in stored),
          "model.safetensors reads back bit-exact")
    rg, gmeta = st_io.read(os.path.join(d, "golden.safetensors"))
    check(gmeta == meta and list(rg) == list(golden), "golden.safetensors reads back (names, metadata)")
    check(all(rg[k].dtype == golden[k].dtype and torch.equal(rg[k], golden[k]) for k in golden),
          "golden.safetensors reads back bit-exact")
    print("  loss = %.17g" % float(loss))
    return float(loss)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join("test", "fixtures", "golden"))
    args = ap.parse_args()

    torch.manual_seed(0)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)

    input_ids, labels = fixed_inputs(BASE_CONFIG["vocab_size"], seed=1234)

    # 1. untied, float32
    cfg1 = dict(BASE_CONFIG)
    w1 = init_weights(cfg1, seed=1)
    probes1 = [
        ("model.embed_tokens.weight", (int(input_ids[0, 3]), 5)),
        ("model.layers.0.self_attn.q_proj.weight", (7, 11)),
        ("model.layers.0.self_attn.k_proj.weight", (3, 2)),
        ("model.layers.1.input_layernorm.weight", (4,)),
        ("model.layers.1.mlp.down_proj.weight", (9, 40)),
        ("model.norm.weight", (17,)),
        ("lm_head.weight", (int(input_ids[1, 6]), 3)),
    ]
    losses = {}
    losses["tiny-llama"] = make_variant(args.out, "tiny-llama", cfg1, w1, torch.float32,
                                        input_ids, labels, probes1)

    # 2. tied, explicit head_dim, rope_type spelling
    cfg2 = {}
    for k, v in BASE_CONFIG.items():
        cfg2[k] = v
        if k == "num_key_value_heads":
            cfg2["head_dim"] = 12
    cfg2["rope_theta"] = 500000.0
    cfg2["rope_scaling"] = {"rope_type": "linear", "factor": 2.0}
    cfg2["tie_word_embeddings"] = True
    w2 = init_weights(cfg2, seed=2)
    seen = set(int(t) for t in input_ids.flatten())
    unseen = min(t for t in range(cfg2["vocab_size"]) if t not in seen)
    probes2 = [
        ("model.embed_tokens.weight", (int(input_ids[0, 2]), 1)),  # both uses
        ("model.embed_tokens.weight", (unseen, 7)),  # only the output-head use
        ("model.layers.0.self_attn.q_proj.weight", (40, 13)),
        ("model.layers.1.self_attn.o_proj.weight", (5, 47)),
        ("model.layers.0.post_attention_layernorm.weight", (30,)),
    ]
    losses["tiny-llama-tied"] = make_variant(args.out, "tiny-llama-tied", cfg2, w2, torch.float32,
                                             input_ids, labels, probes2)

    # 3. variant 1's weights rounded to bfloat16
    cfg3 = dict(BASE_CONFIG)
    cfg3["torch_dtype"] = "bfloat16"
    for k, v in w1.items():
        bits = v.to(torch.bfloat16).view(torch.int16).to(torch.int64) & 0xFFFF
        if not torch.equal(bits, bf16_round_bits(v)):
            raise CheckFailed("torch bf16 rounding differs from round-to-nearest-even for " + k)
    print("  ok: bf16 weights are round-to-nearest-even of the float32 weights")
    losses["tiny-llama-bf16"] = make_variant(args.out, "tiny-llama-bf16", cfg3, w1, torch.bfloat16,
                                             input_ids, labels, probes1)

    # 4. Qwen 2: q/k/v biases, tied embeddings, rope_theta 1e6, no rope scaling
    cfg4 = dict(BASE_CONFIG)
    for k in ("attention_bias", "mlp_bias", "pretraining_tp", "rope_scaling"):
        del cfg4[k]
    cfg4.update({"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], "rope_theta": 1000000.0,
                 "tie_word_embeddings": True, "use_sliding_window": False, "sliding_window": 4096,
                 "max_window_layers": 2, "rms_norm_eps": 1e-6})
    w4 = init_weights(cfg4, seed=4)
    probes4 = [
        ("model.layers.0.self_attn.q_proj.bias", (5,)),
        ("model.layers.1.self_attn.k_proj.bias", (9,)),
        ("model.layers.0.self_attn.v_proj.bias", (2,)),
        ("model.layers.1.self_attn.q_proj.weight", (17, 3)),
        ("model.embed_tokens.weight", (int(input_ids[1, 4]), 8)),
    ]
    losses["tiny-qwen2"] = make_variant(args.out, "tiny-qwen2", cfg4, w4, torch.float32,
                                        input_ids, labels, probes4)

    # 5. Qwen 3: q/k head norms, head_dim 16 (not hidden / heads = 8), untied, no biases
    cfg5 = dict(cfg4)
    cfg5.update({"model_type": "qwen3", "architectures": ["Qwen3ForCausalLM"], "head_dim": 16,
                 "tie_word_embeddings": False, "attention_bias": False})
    w5 = init_weights(cfg5, seed=5)
    probes5 = [
        ("model.layers.0.self_attn.q_norm.weight", (3,)),
        ("model.layers.1.self_attn.k_norm.weight", (11,)),
        ("model.layers.1.self_attn.k_proj.weight", (20, 7)),
        ("model.layers.0.self_attn.o_proj.weight", (4, 50)),
        ("lm_head.weight", (int(input_ids[0, 5]), 2)),
    ]
    losses["tiny-qwen3"] = make_variant(args.out, "tiny-qwen3", cfg5, w5, torch.float32,
                                        input_ids, labels, probes5)

    print("\nfiles:")
    for name in sorted(losses):
        for fn in ("config.json", "model.safetensors", "golden.safetensors"):
            path = os.path.join(args.out, name, fn)
            with open(path, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
            print("  %-50s %8d  %s" % (path, os.path.getsize(path), digest[:16]))
    print("\nlosses: " + ", ".join("%s=%.10f" % kv for kv in losses.items()))


if __name__ == "__main__":
    try:
        main()
    except CheckFailed as e:
        print("SELF-CHECK FAILED: %s" % e, file=sys.stderr)
        sys.exit(1)
